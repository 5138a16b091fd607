from __future__ import annotations

import re
from datetime import datetime

import sqlalchemy as sa
from flask_login import UserMixin
from sqlalchemy.orm import Mapped, mapped_column
from werkzeug.security import check_password_hash, generate_password_hash

from crm_app.extensions import db
from crm_app.models.types import UTCDateTime, utcnow

ROLES = ("admin", "staff")
_SESSION_ID = re.compile(r"([0-9]{1,18}):([0-9]{1,18})")
# Werkzeug's default (scrypt). The test suite lowers the cost; production never does.
PASSWORD_HASH_METHOD = "scrypt"


class User(UserMixin, db.Model):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(sa.String(254), unique=True)
    name: Mapped[str] = mapped_column(sa.String(120), default="")
    title: Mapped[str] = mapped_column(sa.String(120), default="")
    phone: Mapped[str] = mapped_column(sa.String(40), default="")
    password_hash: Mapped[str] = mapped_column(sa.String(255))
    role: Mapped[str] = mapped_column(sa.String(16), default="staff")
    timezone: Mapped[str] = mapped_column(sa.String(64), default="UTC")
    is_active_user: Mapped[bool] = mapped_column(sa.Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Sender identity in the emails of this user's contacts (see rendering.sender_context).
    signature: Mapped[str] = mapped_column(sa.Text, default="", server_default="")
    from_name: Mapped[str] = mapped_column(sa.String(120), default="", server_default="")
    # Part of every login session's id: bumping it ends every session of this user.
    session_version: Mapped[int] = mapped_column(sa.Integer, default=1, server_default="1")

    __table_args__ = (sa.CheckConstraint("role IN ('admin', 'staff')", name="role"),)

    def set_password(self, password: str) -> None:
        self.password_hash = generate_password_hash(password, method=PASSWORD_HASH_METHOD)

    def check_password(self, password: str) -> bool:
        return check_password_hash(self.password_hash, password)

    def revoke_sessions(self) -> None:
        """End every login session of this user, on every device (logout, a new
        password, disabling): each session carries the version it was opened with."""
        self.session_version = (self.session_version or 1) + 1

    def get_id(self) -> str:
        """What Flask-Login keeps in the session: the id and the session version, so a
        copied cookie stops working once the version moves on."""
        return f"{self.id}:{self.session_version}"

    @staticmethod
    def parse_session_id(session_id: str) -> tuple[int, int] | None:
        """(user id, session version) from `get_id`'s text; None for anything else
        (such as a session opened before versions existed)."""
        match = _SESSION_ID.fullmatch(session_id or "")
        return (int(match[1]), int(match[2])) if match else None

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @property
    def is_active(self) -> bool:  # Flask-Login refuses inactive users
        return self.is_active_user

    @property
    def display_name(self) -> str:
        return self.name or self.email
