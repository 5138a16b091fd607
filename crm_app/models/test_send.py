from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from crm_app.extensions import db
from crm_app.models.types import UTCDateTime, utcnow


class TestSend(db.Model):
    """A test of one email sent to a person who asked for it: not a message of any
    enrolment, so it never counts in analytics and never moves a contact on."""

    __test__ = False  # a model, not a pytest test class
    __tablename__ = "test_sends"

    id: Mapped[int] = mapped_column(primary_key=True)
    step_id: Mapped[int] = mapped_column(sa.ForeignKey("campaign_steps.id", ondelete="CASCADE"))
    template_version: Mapped[int] = mapped_column(sa.Integer)
    # The contact whose merge fields filled it; NULL: the sample contact.
    contact_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("contacts.id", ondelete="SET NULL")
    )
    to_email: Mapped[str] = mapped_column(sa.String(254))
    subject: Mapped[str] = mapped_column(sa.Text, default="")
    # The running A/B variant it sent ("" for the base text).
    variant_key: Mapped[str] = mapped_column(sa.String(1), default="", server_default="")
    html: Mapped[str] = mapped_column(sa.Text, default="")
    text: Mapped[str] = mapped_column(sa.Text, default="")
    backend: Mapped[str] = mapped_column(sa.String(20), default="")
    status: Mapped[str] = mapped_column(sa.String(16), default="sent")
    provider_message_id: Mapped[str | None] = mapped_column(sa.String(200))
    error: Mapped[str] = mapped_column(sa.Text, default="")
    sent_by: Mapped[str] = mapped_column(sa.String(120), default="")
    sent_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    step = relationship("CampaignStep")
    contact = relationship("Contact")

    __table_args__ = (
        sa.CheckConstraint("status IN ('sent', 'failed')", name="status"),
        # A step's recent tests (its preview page) and the Outbox's list.
        sa.Index("ix_test_sends_step_sent", "step_id", "sent_at"),
        sa.Index("ix_test_sends_sent_at", "sent_at"),
    )
