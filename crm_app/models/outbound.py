"""Outbound webhooks: the endpoints admins register, one delivery per (event, endpoint),
and each attempt of a delivery."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from crm_app.extensions import db
from crm_app.models.types import UTCDateTime, utcnow

DELIVERY_STATUSES = ("pending", "delivered", "failed")


class WebhookEndpoint(db.Model):
    __tablename__ = "webhook_endpoints"

    id: Mapped[int] = mapped_column(primary_key=True)
    url: Mapped[str] = mapped_column(sa.String(2000))
    description: Mapped[str] = mapped_column(sa.String(200), default="")
    event_types: Mapped[list] = mapped_column(sa.JSON, default=list)
    # Standard Webhooks secret, "whsec_<base64>": kept, since every signature needs it.
    secret: Mapped[str] = mapped_column(sa.String(100))
    enabled: Mapped[bool] = mapped_column(sa.Boolean, default=True)
    created_by: Mapped[str] = mapped_column(sa.String(120), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    # Since when every attempt has failed (None: the last one succeeded).
    failing_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Set when the endpoint was disabled for failing: the notice its page shows.
    disabled_reason: Mapped[str] = mapped_column(sa.Text, default="")
    # Deleted endpoints are kept (their deliveries reference them) but never sent to.
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    @property
    def is_live(self) -> bool:
        return self.enabled and self.deleted_at is None


class WebhookDelivery(db.Model):
    """One event for one endpoint. Written in the transaction of the change it reports;
    `event_id` (the webhook-id header) is the same on every attempt, for receiver dedupe."""

    __tablename__ = "webhook_deliveries"

    id: Mapped[int] = mapped_column(primary_key=True)
    endpoint_id: Mapped[int] = mapped_column(
        sa.ForeignKey("webhook_endpoints.id", ondelete="CASCADE")
    )
    event_id: Mapped[str] = mapped_column(sa.String(40))
    event_type: Mapped[str] = mapped_column(sa.String(40))
    body: Mapped[str] = mapped_column(sa.Text)  # the JSON sent, byte for byte each time
    status: Mapped[str] = mapped_column(sa.String(16), default="pending")
    attempts: Mapped[int] = mapped_column(sa.Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # When a job was last put on Redis for it, and when a worker last took it: either
    # older than the lease (WEBHOOK_LEASE_SECONDS) means the job or the worker was lost.
    enqueued_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    response_status: Mapped[int | None] = mapped_column(sa.Integer)
    duration_ms: Mapped[int | None] = mapped_column(sa.Integer)
    error: Mapped[str] = mapped_column(sa.Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    endpoint = relationship("WebhookEndpoint")

    __table_args__ = (
        sa.UniqueConstraint("endpoint_id", "event_id", name="uq_webhook_deliveries_endpoint_event"),
        sa.CheckConstraint("status IN ('pending', 'delivered', 'failed')", name="status"),
        # The sweep: pending deliveries by due time.
        sa.Index(
            "ix_webhook_deliveries_due",
            "next_attempt_at",
            sqlite_where=sa.text("status = 'pending'"),
            postgresql_where=sa.text("status = 'pending'"),
        ),
        # An endpoint's delivery log, newest first.
        sa.Index("ix_webhook_deliveries_endpoint_id", "endpoint_id", "id"),
    )


class WebhookAttempt(db.Model):
    """One HTTP attempt of a delivery: the delivery log's history."""

    __tablename__ = "webhook_attempts"

    id: Mapped[int] = mapped_column(primary_key=True)
    delivery_id: Mapped[int] = mapped_column(
        sa.ForeignKey("webhook_deliveries.id", ondelete="CASCADE")
    )
    attempt: Mapped[int] = mapped_column(sa.Integer)
    attempted_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    response_status: Mapped[int | None] = mapped_column(sa.Integer)
    duration_ms: Mapped[int] = mapped_column(sa.Integer, default=0)
    succeeded: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    error: Mapped[str] = mapped_column(sa.Text, default="")

    __table_args__ = (sa.Index("ix_webhook_attempts_delivery_id", "delivery_id"),)
