from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from crm_app.extensions import db
from crm_app.models.types import UTCDateTime, utcnow

ENROLLMENT_STATUSES = ("active", "completed", "stopped")
# How an enrolment began next to the contact's earlier ones in the same campaign:
# the first, resumed after the emails already sent, or restarted from email 1 (confirmed).
ENROLLMENT_ENTRIES = ("first", "resumed", "restarted")
# The rows the tick's due index keeps (migration 0016 creates it with this predicate).
DUE_PREDICATE = "status = 'active' AND next_send_at IS NOT NULL"


class Enrollment(db.Model):
    __tablename__ = "enrollments"

    id: Mapped[int] = mapped_column(primary_key=True)
    contact_id: Mapped[int] = mapped_column(sa.ForeignKey("contacts.id", ondelete="CASCADE"))
    campaign_id: Mapped[int] = mapped_column(sa.ForeignKey("campaigns.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(sa.String(16), default="active")
    # The step it waits for (or whose email is in flight), by identity: inserting,
    # removing or reordering steps never changes which email a contact gets next.
    # NULL when no step is left: completed, or its remaining steps were removed (the
    # tick then completes it). A stopped enrolment keeps the step it stopped at.
    # No ON DELETE: a step cannot vanish under its contacts; removing one moves them
    # first (crm_app/drip/campaigns/steps.py, the live-edit rules in DELIVERY.md).
    current_step_id: Mapped[int | None] = mapped_column(sa.ForeignKey("campaign_steps.id"))
    entry: Mapped[str] = mapped_column(sa.String(16), default="first", server_default="first")
    next_send_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The frequency cap moved next_send_at to this moment (None: not held); kept until
    # the step goes out, so "why?" and the itinerary can say so.
    cap_held_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    source: Mapped[str] = mapped_column(sa.String(20), default="manual")
    enrolled_by: Mapped[str] = mapped_column(sa.String(120), default="")
    enrolled_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    end_reason: Mapped[str] = mapped_column(sa.String(200), default="")
    # Set when an exit goal ended it (status "stopped", end_reason "converted: ..."):
    # what analytics counts as a conversion.
    converted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    contact = relationship("Contact", back_populates="enrollments")
    campaign = relationship("Campaign")
    step = relationship("CampaignStep")

    __table_args__ = (
        sa.CheckConstraint("status IN ('active', 'completed', 'stopped')", name="status"),
        sa.CheckConstraint("entry IN ('first', 'resumed', 'restarted')", name="entry"),
        # Never enrolled twice in the same campaign at once: enforced by the database.
        sa.Index(
            "uq_enrollments_active_contact_campaign",
            "contact_id",
            "campaign_id",
            unique=True,
            sqlite_where=sa.text("status = 'active'"),
            postgresql_where=sa.text("status = 'active'"),
        ),
        # The tick's due query: active enrolments ordered by next_send_at. Not the ones
        # whose email is on the way (NULL): the tick's UPDATE then writes no entry here.
        # It carries the campaign on PostgreSQL: the dashboard counts what is due in
        # active campaigns from the index alone (0.4 ms; 2.4 ms reading the table, at
        # 100,000 contacts).
        sa.Index(
            "ix_enrollments_due",
            "next_send_at",
            sqlite_where=sa.text(DUE_PREDICATE),
            postgresql_where=sa.text(DUE_PREDICATE),
            postgresql_include=["campaign_id"],
        ),
        sa.Index("ix_enrollments_contact_id", "contact_id"),
        # Who waits for a step: live-edit impact notes, and the step's removal.
        sa.Index("ix_enrollments_current_step_id", "current_step_id"),
        # The dashboard's active enrolments per campaign (counted up to a cap).
        sa.Index(
            "ix_enrollments_active_campaign",
            "campaign_id",
            sqlite_where=sa.text("status = 'active'"),
            postgresql_where=sa.text("status = 'active'"),
        ),
        # Analytics: completion by end date, conversion by enrolment date.
        sa.Index("ix_enrollments_enrolled_at", "enrolled_at"),
        sa.Index(
            "ix_enrollments_ended_at",
            "ended_at",
            sqlite_where=sa.text("ended_at IS NOT NULL"),
            postgresql_where=sa.text("ended_at IS NOT NULL"),
        ),
    )

    @property
    def current_step(self) -> int:
        """The 1-based position of the step it waits for, read through the step's
        identity (one past the last step when none is left): for people to read, and
        to compare with Message.step_position."""
        if self.step is not None:
            return self.step.position
        return len(self.campaign.steps) + 1

    @current_step.setter
    def current_step(self, position: int) -> None:
        """Put the enrolment at the step now at `position` (past the last: none left)."""
        steps = self.campaign.steps
        self.step = steps[position - 1] if 1 <= position <= len(steps) else None
