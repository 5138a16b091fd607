from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from crm_app.extensions import db
from crm_app.models.types import UTCDateTime, sqlite_only, utcnow

EVENT_OUTCOMES = ("applied", "rejected")


class EmailEvent(db.Model):
    """One SendGrid event, kept as received; sg_event_id makes a replay harmless."""

    __tablename__ = "email_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    sg_event_id: Mapped[str | None] = mapped_column(sa.String(100), unique=True)
    event: Mapped[str] = mapped_column(sa.String(40))
    email: Mapped[str] = mapped_column(sa.String(254), default="")
    # Set NULL when its message is deleted: by this key on SQLite, by a trigger on
    # PostgreSQL, where a key checked for every stored event cost 40 % of the INSERT
    # (migration 0017).
    message_id: Mapped[int | None] = mapped_column(sa.Integer)
    occurred_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    outcome: Mapped[str] = mapped_column(sa.String(16), default="applied")
    detail: Mapped[str] = mapped_column(sa.Text, default="")  # reason, url or rejection cause
    # An open by Apple's privacy proxy or a click by a link scanner: kept, counted apart.
    machine: Mapped[bool] = mapped_column(sa.Boolean, default=False, server_default=sa.false())
    payload: Mapped[dict] = mapped_column(sa.JSON, default=dict)

    # Few indexes on purpose: every one is paid on each of thousands of inserts per
    # request. The contact and campaign are reached through message_id.
    __table_args__ = (
        sqlite_only(sa.ForeignKeyConstraint(["message_id"], ["messages.id"], ondelete="SET NULL")),
        sa.Index("ix_email_events_message_id", "message_id"),
        # Only group (un)subscribes are looked up by address (their order matters).
        sa.Index(
            "ix_email_events_group_email",
            "email",
            sqlite_where=sa.text("event IN ('group_unsubscribe', 'group_resubscribe')"),
            postgresql_where=sa.text("event IN ('group_unsubscribe', 'group_resubscribe')"),
        ),
    )


class WebhookBatch(db.Model):
    """One accepted webhook request: the dashboard shows the last one."""

    __tablename__ = "webhook_batches"

    id: Mapped[int] = mapped_column(primary_key=True)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    event_count: Mapped[int] = mapped_column(sa.Integer, default=0)
    applied_count: Mapped[int] = mapped_column(sa.Integer, default=0)
    duplicate_count: Mapped[int] = mapped_column(sa.Integer, default=0)
    rejected_count: Mapped[int] = mapped_column(sa.Integer, default=0)


class ContactGoal(db.Model):
    """A milestone that counts as conversion: a new contact type or a recorded goal event."""

    __tablename__ = "contact_goals"

    id: Mapped[int] = mapped_column(primary_key=True)
    contact_id: Mapped[int] = mapped_column(sa.ForeignKey("contacts.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(sa.String(100))  # "type:client" or "goal:demo_booked"
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    actor: Mapped[str] = mapped_column(sa.String(120), default="system")

    __table_args__ = (sa.Index("ix_contact_goals_contact_name", "contact_id", "name"),)


class EmailReply(db.Model):
    """A reply to one of our emails, received through SendGrid's Inbound Parse and tied
    to its message by the token in the Reply-To address."""

    __tablename__ = "email_replies"

    id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("messages.id", ondelete="SET NULL")
    )
    contact_id: Mapped[int] = mapped_column(sa.ForeignKey("contacts.id", ondelete="CASCADE"))
    campaign_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("campaigns.id", ondelete="SET NULL")
    )
    from_email: Mapped[str] = mapped_column(sa.String(254), default="")
    subject: Mapped[str] = mapped_column(sa.Text, default="")
    first_lines: Mapped[str] = mapped_column(sa.Text, default="")
    # An out-of-office or other machine answer: recorded, but it stops nothing.
    is_automatic: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    automatic_reason: Mapped[str] = mapped_column(sa.String(120), default="")
    # The enrolment this reply ended (None: it stopped nothing).
    stopped_enrollment_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("enrollments.id", ondelete="SET NULL")
    )
    # The reply's own Message-ID header: SendGrid posting the same email twice records it once.
    email_message_id: Mapped[str | None] = mapped_column(sa.String(255), unique=True)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
        sa.Index("ix_email_replies_contact_received", "contact_id", "received_at"),
        sa.Index("ix_email_replies_message_id", "message_id"),
    )
