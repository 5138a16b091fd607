"""Passwords and login sessions: everyone changes their own password, an admin sets
one or hands out a one-time set-password link, and every login session can be
revoked. Callers commit.

Sessions: Flask-Login keeps `User.get_id()` ("<id>:<session version>") in the signed
session cookie; `user_for_session` accepts it only while the user is active and the
version is current. Logout, a new password and disabling bump the version
(`User.revoke_sessions`), so every earlier cookie, copied or not, stops working.

Links: 32 random bytes, shown once to the admin as a URL; only their SHA-256 is
stored. A link works once, until it expires, and a newer link for the same user
replaces it.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

import sqlalchemy as sa

from crm_app.drip.team.audit import record_audit
from crm_app.drip.team.passwords import new_password_errors
from crm_app.drip.team.users import UserEditError, keep_an_admin
from crm_app.models import PasswordLink, User, utcnow

WRONG_CURRENT_PASSWORD = "This is not your current password."


def user_for_session(session, session_id: str) -> User | None:
    """The user a login session belongs to, while that session still stands."""
    parsed = User.parse_session_id(session_id)
    if parsed is None:
        return None
    user = session.get(User, parsed[0])
    if user is None or not user.is_active_user or user.session_version != parsed[1]:
        return None
    return user


def _new_password(user: User, values) -> str:
    password = values.get("password") or ""
    errors = new_password_errors(
        password, values.get("password_confirm") or "", email=user.email, name=user.name
    )
    if errors:
        raise UserEditError(errors)
    return password


def _set_password(user: User, password: str) -> None:
    user.set_password(password)
    user.revoke_sessions()  # whoever knew the old password is logged out everywhere


def change_own_password(session, user: User, values) -> None:
    """The user's own change: their current password, then the new one twice. Every
    session ends, this one too: the caller logs the user in again on a new session."""
    if not user.check_password(values.get("current_password") or ""):
        raise UserEditError({"current_password": WRONG_CURRENT_PASSWORD})
    _set_password(user, _new_password(user, values))
    _drop_links(session, user)  # a link handed out earlier must not reset the new password
    record_audit(session, user, "user.password", "user", user.id, "Changed own password")


def set_password_by_admin(session, user: User, values, *, actor: User) -> None:
    """An admin sets someone's password (to hand over in person)."""
    _set_password(user, _new_password(user, values))
    _drop_links(session, user)
    summary = f"Set a password for {user.email}"
    record_audit(session, actor, "user.password", "user", user.id, summary)


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _drop_links(session, user: User) -> None:
    session.execute(sa.delete(PasswordLink).where(PasswordLink.user_id == user.id))


def issue_password_link(
    session, user: User, *, actor: User, hours: int, now: datetime | None = None
) -> str:
    """A new one-time link's secret (to put in the URL); earlier links of `user` stop working."""
    if not user.is_active_user:
        raise UserEditError({"link": f"{user.email} is disabled: re-enable the account first."})
    now = now or utcnow()
    token = secrets.token_urlsafe(32)
    _drop_links(session, user)
    session.add(
        PasswordLink(
            user_id=user.id,
            token_hash=_hash(token),
            created_at=now,
            expires_at=now + timedelta(hours=hours),
            created_by_id=actor.id,
        )
    )
    summary = f"Created a one-time set-password link for {user.email} (valid {hours} h)"
    record_audit(session, actor, "user.password_link", "user", user.id, summary)
    return token


def password_link(session, token: str, now: datetime | None = None) -> PasswordLink | None:
    """The link for this secret while it can still be used, else None."""
    link = session.scalar(sa.select(PasswordLink).where(PasswordLink.token_hash == _hash(token)))
    if link is None or link.used_at is not None or link.expires_at <= (now or utcnow()):
        return None
    return link if link.user.is_active_user else None


def redeem_password_link(session, token: str, values, now: datetime | None = None) -> User:
    """Set the password through a link; raises UserEditError ("link" when it is no good)."""
    now = now or utcnow()
    link = password_link(session, token, now)
    if link is None:
        raise UserEditError({"link": "This link has expired or was already used."})
    user = link.user
    password = _new_password(user, values)
    # Conditional: of two submits of the same link at once, one wins.
    used = session.execute(
        sa.update(PasswordLink)
        .where(PasswordLink.id == link.id, PasswordLink.used_at.is_(None))
        .values(used_at=now)
    )
    if used.rowcount != 1:
        raise UserEditError({"link": "This link has expired or was already used."})
    _set_password(user, password)
    record_audit(session, user, "user.password", "user", user.id, "Set own password from a link")
    return user


def set_active(session, user: User, active: bool, *, actor: User) -> None:
    """Disable (every session ends at once, logging in is refused) or re-enable."""
    if user.is_active_user == active:
        return
    if not active:
        if user.id == actor.id:
            message = "You cannot disable your own account: ask another admin."
            raise UserEditError({"active": message})
        keep_an_admin(session, user, field="active", is_active_user=False)
    user.is_active_user = active
    if not active:
        user.revoke_sessions()
        _drop_links(session, user)
    action, verb = ("user.enabled", "Re-enabled") if active else ("user.disabled", "Disabled")
    record_audit(session, actor, action, "user", user.id, f"{verb} {user.email}")


def reenable_admin(session, user: User, password: str, *, actor: str) -> None:
    """`flask ensure-admin` when every admin is disabled: `user` (a disabled admin) can
    log in again, with `password` (generated, shown once to the operator)."""
    user.is_active_user = True
    _set_password(user, password)
    _drop_links(session, user)
    record_audit(session, actor, "user.enabled", "user", user.id, f"Re-enabled {user.email}")
