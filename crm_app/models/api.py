"""API tokens and the Idempotency-Key answers kept for them."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from crm_app.extensions import db
from crm_app.models.types import UTCDateTime, utcnow

TOKEN_SCOPES = ("read", "read_write")


class ApiToken(db.Model):
    """A token another system calls the API with. Only a hash of the secret is kept:
    the secret is shown once, when the token is created."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(120))
    scope: Mapped[str] = mapped_column(sa.String(16), default="read")
    # sha256 of the secret: the secret is high-entropy, so a fast hash is enough.
    token_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    # The first characters of the secret, so admins can tell tokens apart.
    token_prefix: Mapped[str] = mapped_column(sa.String(16))
    created_by: Mapped[str] = mapped_column(sa.String(120), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (sa.CheckConstraint("scope IN ('read', 'read_write')", name="scope"),)

    @property
    def can_write(self) -> bool:
        return self.scope == "read_write"

    @property
    def actor(self) -> str:
        """Who the timeline says did what this token did."""
        return f"api:{self.name}"


class IdempotencyKey(db.Model):
    """A POST's Idempotency-Key: claimed before the request runs (the unique key makes a
    second request with the same key wait its turn), then holding the first answer."""

    __tablename__ = "api_idempotency_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_id: Mapped[int] = mapped_column(sa.ForeignKey("api_tokens.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(sa.String(255))
    # sha256 of method, path and body: the same key with another request is refused.
    fingerprint: Mapped[str] = mapped_column(sa.String(64))
    status: Mapped[str] = mapped_column(sa.String(16), default="in_progress")
    response_status: Mapped[int | None] = mapped_column(sa.Integer)
    response_body: Mapped[str | None] = mapped_column(sa.Text)
    response_headers: Mapped[dict] = mapped_column(sa.JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # When the request holding the key started: an old lock is a crashed request's.
    locked_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
        sa.UniqueConstraint("token_id", "key", name="uq_api_idempotency_keys_token_key"),
        sa.CheckConstraint("status IN ('in_progress', 'done')", name="status"),
        # The hourly clean-up deletes by age.
        sa.Index("ix_api_idempotency_keys_created_at", "created_at"),
    )
