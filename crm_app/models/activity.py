from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from crm_app.extensions import db
from crm_app.models.types import UTCDateTime, utcnow


class Activity(db.Model):
    """One row of a contact's timeline: what happened, and who or what caused it."""

    __tablename__ = "activities"

    id: Mapped[int] = mapped_column(primary_key=True)
    contact_id: Mapped[int] = mapped_column(sa.ForeignKey("contacts.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(sa.String(40))
    detail: Mapped[str] = mapped_column(sa.Text, default="")
    actor: Mapped[str] = mapped_column(sa.String(120), default="system")
    campaign_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("campaigns.id", ondelete="SET NULL")
    )
    enrollment_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("enrollments.id", ondelete="SET NULL")
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
        sa.Index("ix_activities_contact_created", "contact_id", "created_at"),
        # Contacts whose enrolment by type a paused (or archived) campaign refused: enrolled
        # when it resumes (crm_app/drip/campaigns/manage.py). Few rows, so a small index.
        sa.Index(
            "ix_activities_not_enrolled",
            "campaign_id",
            "contact_id",
            sqlite_where=sa.text("kind = 'not_enrolled'"),
            postgresql_where=sa.text("kind = 'not_enrolled'"),
        ),
    )
