"""The workspace a team shares: its sender settings, one-time password links, the audit log."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from crm_app.extensions import db
from crm_app.models.types import UTCDateTime, utcnow

WORKSPACE_ROW_ID = 1


class WorkspaceSettings(db.Model):
    """The workspace's own settings, set by an admin on the Settings page: one row.

    `sender_name` NULL means "not set": the environment's MAIL_FROM_NAME speaks."""

    __tablename__ = "workspace_settings"

    id: Mapped[int] = mapped_column(primary_key=True, default=WORKSPACE_ROW_ID)
    sender_name: Mapped[str | None] = mapped_column(sa.String(120))
    sender_signature: Mapped[str] = mapped_column(sa.Text, default="", server_default="")
    # The physical postal address every email's footer carries (CAN-SPAM).
    postal_address: Mapped[str] = mapped_column(sa.Text, default="", server_default="")
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_by_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("users.id", ondelete="SET NULL")
    )

    __table_args__ = (sa.CheckConstraint(f"id = {WORKSPACE_ROW_ID}", name="single_row"),)


class PasswordLink(db.Model):
    """A one-time link that lets a user set their password (shown once to an admin).

    Only the SHA-256 of the link's secret is stored: the database never holds a
    usable link."""

    __tablename__ = "password_links"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"))
    token_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_by_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("users.id", ondelete="SET NULL")
    )

    user = relationship("User", foreign_keys=[user_id])

    __table_args__ = (sa.Index("ix_password_links_user_id", "user_id"),)


class AuditEntry(db.Model):
    """Who did what, and when, across the workspace (the admins' audit log).

    `actor` keeps the name as it was (a user may be renamed or deleted later);
    `user_id` ties the entry to the user for the "by user" filter."""

    __tablename__ = "audit_entries"

    id: Mapped[int] = mapped_column(primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    user_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"))
    actor: Mapped[str] = mapped_column(sa.String(254))
    action: Mapped[str] = mapped_column(sa.String(60))
    target_type: Mapped[str] = mapped_column(sa.String(40))
    target_id: Mapped[int | None] = mapped_column(sa.Integer)
    summary: Mapped[str] = mapped_column(sa.Text, default="")

    user = relationship("User")

    __table_args__ = (
        # The page: newest first, whole log or filtered by user or by kind.
        sa.Index("ix_audit_entries_created_at", "created_at"),
        sa.Index("ix_audit_entries_user_created", "user_id", "created_at"),
        sa.Index("ix_audit_entries_type_created", "target_type", "created_at"),
    )
