from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from crm_app.extensions import db
from crm_app.models.types import UTCDateTime, utcnow


class Suppression(db.Model):
    """An address that is never mailed, whatever contact row carries it."""

    __tablename__ = "suppressions"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(sa.String(254), unique=True)  # stored lower-case
    reason: Mapped[str] = mapped_column(sa.String(40))
    source: Mapped[str] = mapped_column(sa.String(120), default="")
    note: Mapped[str] = mapped_column(sa.Text, default="", server_default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class HashedSuppression(db.Model):
    """An address never mailed again, kept only as a keyed hash: what is left of an
    erased contact's address (GDPR), so it is recognised without being stored."""

    __tablename__ = "hashed_suppressions"

    id: Mapped[int] = mapped_column(primary_key=True)
    # HMAC-SHA256 (hex) of the normalised address, under the erasure key.
    email_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    # Which key made it (a fingerprint, not the key): a changed key shows up in health.
    key_id: Mapped[str] = mapped_column(sa.String(16))
    reason: Mapped[str] = mapped_column(sa.String(40), default="erased")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
