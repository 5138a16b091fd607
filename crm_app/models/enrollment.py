from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from crm_app.extensions import db
from crm_app.models.types import UTCDateTime, utcnow

ENROLLMENT_STATUSES = ("active", "completed", "stopped")


class Enrollment(db.Model):
    __tablename__ = "enrollments"

    id: Mapped[int] = mapped_column(primary_key=True)
    contact_id: Mapped[int] = mapped_column(sa.ForeignKey("contacts.id", ondelete="CASCADE"))
    campaign_id: Mapped[int] = mapped_column(sa.ForeignKey("campaigns.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(sa.String(16), default="active")
    # Position (1-based) of the next step to send; past the last step when completed.
    current_step: Mapped[int] = mapped_column(sa.Integer, default=1)
    next_send_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    source: Mapped[str] = mapped_column(sa.String(20), default="manual")
    enrolled_by: Mapped[str] = mapped_column(sa.String(120), default="")
    enrolled_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    end_reason: Mapped[str] = mapped_column(sa.String(200), default="")

    contact = relationship("Contact", back_populates="enrollments")
    campaign = relationship("Campaign")

    __table_args__ = (
        sa.CheckConstraint("status IN ('active', 'completed', 'stopped')", name="status"),
        # Never enrolled twice in the same campaign at once: enforced by the database.
        sa.Index(
            "uq_enrollments_active_contact_campaign",
            "contact_id",
            "campaign_id",
            unique=True,
            sqlite_where=sa.text("status = 'active'"),
            postgresql_where=sa.text("status = 'active'"),
        ),
        # The tick's due query: active enrolments ordered by next_send_at.
        sa.Index(
            "ix_enrollments_due",
            "next_send_at",
            sqlite_where=sa.text("status = 'active'"),
            postgresql_where=sa.text("status = 'active'"),
        ),
        sa.Index("ix_enrollments_contact_id", "contact_id"),
        # The dashboard's active enrolments per campaign (counted up to a cap).
        sa.Index(
            "ix_enrollments_active_campaign",
            "campaign_id",
            sqlite_where=sa.text("status = 'active'"),
            postgresql_where=sa.text("status = 'active'"),
        ),
        # Analytics: completion by end date, conversion by enrolment date.
        sa.Index("ix_enrollments_enrolled_at", "enrolled_at"),
        sa.Index("ix_enrollments_ended_at", "ended_at"),
    )
