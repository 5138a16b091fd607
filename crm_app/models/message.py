from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from crm_app.extensions import db
from crm_app.models.types import UTCDateTime, sqlite_only, utcnow

# The delivery state machine (crm_app/drip/DELIVERY.md):
# queued -> sending -> sent | queued (transient, retry) | failed | skipped
# sending -> in_doubt (worker vanished past the lease); failed/in_doubt -> queued (admin).
MESSAGE_STATUSES = ("queued", "sending", "sent", "failed", "in_doubt", "skipped")
# The states of an email that may have reached its contact (sent, on its way, or sent
# for all we know): re-entry treats it as received, the frequency cap counts it, and a
# campaign with one has a history (it cannot be deleted).
REACHED_STATUSES = ("sent", "sending", "in_doubt")


class Message(db.Model):
    """One email for one (enrolment, step): the unique key makes a second one impossible."""

    __tablename__ = "messages"

    id: Mapped[int] = mapped_column(primary_key=True)
    # A deleted enrolment takes its messages (CASCADE); a removed step leaves them tied to
    # no step (SET NULL: removing a step from a campaign must not erase what was sent).
    # On PostgreSQL a statement trigger on each parent does that instead of a foreign key
    # (migration 0020): the tick checked both keys for each message it created.
    enrollment_id: Mapped[int] = mapped_column(sa.Integer)
    step_id: Mapped[int | None] = mapped_column(sa.Integer)
    # The enrolment's contact and campaign, copied: deleting either deletes the enrolment,
    # and the enrolment's cascade its messages. PostgreSQL has no foreign key of their
    # own (migration 0015): checking one locked a random contact row per new message,
    # a third of the tick's INSERT at 1,000,000 contacts (bench/delivery_bench.py).
    contact_id: Mapped[int] = mapped_column(sa.Integer)
    campaign_id: Mapped[int] = mapped_column(sa.Integer)
    status: Mapped[str] = mapped_column(sa.String(16), default="queued")
    attempts: Mapped[int] = mapped_column(sa.Integer, default=0)
    # The step's version this email was rendered from (set at send): with step_id, the
    # StepVersion row (campaign_step_versions) the message page links to.
    template_version: Mapped[int | None] = mapped_column(sa.Integer)
    # The A/B variant it was rendered from, chosen once (the first claim) and kept on
    # every retry; NULL: the email had no test running. A plain id, not a foreign key:
    # SQLite's ALTER TABLE cannot add one with ON DELETE, and rebuilding `messages` is
    # not an option; a variant row goes only with its removed step.
    variant_id: Mapped[int | None] = mapped_column(sa.Integer)
    to_email: Mapped[str] = mapped_column(sa.String(254), default="")
    subject: Mapped[str] = mapped_column(sa.Text, default="")
    html: Mapped[str] = mapped_column(sa.Text, default="")
    text: Mapped[str] = mapped_column(sa.Text, default="")
    headers: Mapped[dict] = mapped_column(sa.JSON, default=dict)
    provider_message_id: Mapped[str | None] = mapped_column(sa.String(200), index=True)
    # Why it failed, was skipped or is being retried (SendGrid's own text when it answered).
    error: Mapped[str] = mapped_column(sa.Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Lease start: a `queued` row older than the lease was lost by Redis and is enqueued again.
    enqueued_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # When a worker took it; a `sending` row older than the lease becomes `in_doubt`.
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # First time SendGrid reported each event (NULL: never). Analytics aggregates these,
    # so unique opens/clicks never need a scan of the raw events.
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    opened_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    clicked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    bounced_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    spam_reported_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The first open / click a person made (not Apple's privacy proxy, not a link
    # scanner: tracking/engagement.py): analytics shows them beside the raw ones.
    human_opened_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    human_clicked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # How an in-doubt email was settled: "sendgrid" (an event proved it went),
    # "requeued" (no trace while the webhook was healthy: sent again), "admin".
    in_doubt_resolution: Mapped[str | None] = mapped_column(sa.String(16))
    unsubscribed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    enrollment = relationship("Enrollment")
    contact = relationship("Contact")
    campaign = relationship("Campaign")
    step = relationship("CampaignStep")
    # Read-only (variant_id is a plain id, see above): lists load it with their query.
    variant = relationship(
        "StepVariant",
        primaryjoin="foreign(Message.variant_id) == StepVariant.id",
        viewonly=True,
    )

    __table_args__ = (
        sqlite_only(
            sa.ForeignKeyConstraint(["enrollment_id"], ["enrollments.id"], ondelete="CASCADE")
        ),
        sqlite_only(
            sa.ForeignKeyConstraint(["step_id"], ["campaign_steps.id"], ondelete="SET NULL")
        ),
        sqlite_only(sa.ForeignKeyConstraint(["contact_id"], ["contacts.id"], ondelete="CASCADE")),
        sqlite_only(sa.ForeignKeyConstraint(["campaign_id"], ["campaigns.id"], ondelete="CASCADE")),
        sa.UniqueConstraint("enrollment_id", "step_id", name="uq_messages_enrollment_step"),
        sa.CheckConstraint(
            "status IN ('queued', 'sending', 'sent', 'failed', 'in_doubt', 'skipped')",
            name="status",
        ),
        # The tick's lease queries and the admin lists: by status, oldest first.
        sa.Index("ix_messages_status_enqueued", "status", "enqueued_at"),
        sa.Index("ix_messages_contact_id", "contact_id"),
        # Analytics: one campaign's messages over a date range.
        sa.Index("ix_messages_campaign_sent", "campaign_id", "sent_at"),
        # The dashboard's "sent today/this week" and the all-campaigns table.
        sa.Index("ix_messages_sent_at", "sent_at"),
        # Per-variant results.
        sa.Index("ix_messages_variant_id", "variant_id"),
        # The dashboard's "in doubt, resolved each way" (empty for most messages).
        sa.Index(
            "ix_messages_in_doubt_resolution",
            "in_doubt_resolution",
            sqlite_where=sa.text("in_doubt_resolution IS NOT NULL"),
            postgresql_where=sa.text("in_doubt_resolution IS NOT NULL"),
        ),
    )

    @property
    def step_position(self) -> int | None:
        """Where this email's step stands in its campaign now (None once removed): the
        step's identity is what delivery compares; its position is for people to read."""
        return self.step.position if self.step is not None else None


class SystemState(db.Model):
    """Small facts the processes share with the health check (last tick, auth failure)."""

    __tablename__ = "system_state"

    key: Mapped[str] = mapped_column(sa.String(60), primary_key=True)
    value: Mapped[str] = mapped_column(sa.Text, default="")
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
