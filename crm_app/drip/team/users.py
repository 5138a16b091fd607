"""Users of the workspace: admins add, edit, disable and re-enable them and set their
roles; everyone edits their own profile (name, title, signature, time zone, From name).
Passwords and sessions are in accounts.py. Callers commit.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass

import sqlalchemy as sa
from email_validator import EmailNotValidError, validate_email
from sqlalchemy.orm import aliased

from crm_app.drip.common.errors import FieldErrors
from crm_app.drip.common.sql import saved_unless_taken
from crm_app.drip.common.timezones import is_known_timezone
from crm_app.drip.team.audit import record_audit
from crm_app.drip.team.passwords import PasswordError, check_password
from crm_app.models import ROLES, User

# Field -> (label in the audit log, longest value); one-line fields lose line breaks.
PROFILE_FIELDS: dict[str, tuple[str, int]] = {
    "name": ("name", 120),
    "title": ("title", 120),
    "phone": ("phone", 40),
    "from_name": ("From name", 120),
    "timezone": ("time zone", 64),
    "signature": ("signature", 1000),
}
ROLE_LABELS = {"admin": "Admin", "staff": "Staff"}
EMAIL_TAKEN = "A user with this email address already exists."


class UserEditError(FieldErrors):
    """A user form that cannot be saved; a message per field, nothing saved."""


@dataclass(frozen=True)
class NewUser:
    email: str
    name: str
    role: str
    password: str | None = None  # None: the user sets it from a one-time link


def _check_name(name: str, errors: dict[str, str]) -> None:
    """The rule for a user's name (already on one line), wherever one is entered."""
    if not name:
        errors["name"] = "Enter a name: it signs the emails of this user's contacts."


def _cleaned_profile(values: Mapping[str, str], errors: dict[str, str]) -> dict[str, str]:
    cleaned = {}
    for name, (_label, longest) in PROFILE_FIELDS.items():
        raw = values.get(name) or ""
        if name == "signature":
            value = raw.replace("\r\n", "\n").strip()
        else:
            value = " ".join(raw.split())  # names reach email headers: one line
        if len(value) > longest:
            errors[name] = f"At most {longest} characters."
        cleaned[name] = value
    _check_name(cleaned["name"], errors)
    cleaned["timezone"] = cleaned["timezone"] or "UTC"
    if not is_known_timezone(cleaned["timezone"]):
        errors["timezone"] = "Choose a time zone from the list, such as Europe/Paris."
    return cleaned


def normalized_email(raw: str) -> str:
    """A user's address as it is stored: Unicode NFC, an IDN domain in Unicode, lower
    case. Raises EmailNotValidError."""
    return validate_email(raw.strip(), check_deliverability=False).normalized.lower()


def login_email(raw: str) -> str:
    """The stored spelling of the address typed at login: browsers send an IDN domain
    as xn--... punycode, and some keyboards a decomposed é. Not an address: lower case."""
    try:
        return normalized_email(raw)
    except EmailNotValidError:
        return raw.strip().lower()


def _cleaned_email(session, raw: str, errors: dict[str, str], *, existing: User | None) -> str:
    try:
        email = normalized_email(raw)
    except EmailNotValidError as invalid:
        errors["email"] = str(invalid)
        return raw.strip()
    taken = sa.select(User.id).where(sa.func.lower(User.email) == email)
    if existing is not None:
        taken = taken.where(User.id != existing.id)
    if session.scalar(taken) is not None:
        errors["email"] = EMAIL_TAKEN
    return email


def _check_role(role: str, errors: dict[str, str]) -> None:
    if role not in ROLES:
        errors["role"] = "Choose Admin or Staff."


def create_user(session, new: NewUser, *, actor: User | str, name_required: bool = True) -> User:
    """Add a user (the CLI and the Users page); raises UserEditError. Only the CLI
    leaves the name to the user's profile (`name_required=False`): it makes the first
    admin, whose name it does not know."""
    errors: dict[str, str] = {}
    email = _cleaned_email(session, new.email, errors, existing=None)
    name = " ".join(new.name.split())
    if name_required:
        _check_name(name, errors)
    if len(name) > PROFILE_FIELDS["name"][1]:
        errors["name"] = f"At most {PROFILE_FIELDS['name'][1]} characters."
    _check_role(new.role, errors)
    if new.password is not None:
        try:
            check_password(new.password, email=email, name=name)
        except PasswordError as refused:
            errors["password"] = str(refused)
    if errors:
        raise UserEditError(errors)
    user = User(email=email, name=name, role=new.role, session_version=1)
    # Without a password the account cannot be logged into until its link is used.
    user.set_password(new.password if new.password is not None else secrets.token_urlsafe(32))
    if not saved_unless_taken(session, lambda: session.add(user)):  # added twice at once
        raise UserEditError({"email": EMAIL_TAKEN})
    record_audit(
        session, actor, "user.created", "user", user.id, f"Added {ROLE_LABELS[user.role]} {email}"
    )
    return user


def profile_values(user: User) -> dict[str, str]:
    """What a profile form starts with."""
    return {name: getattr(user, name) or "" for name in PROFILE_FIELDS} | {
        "email": user.email,
        "role": user.role,
    }


def _apply(session, user: User, cleaned: dict[str, str], *, actor: User, verb: str) -> list[str]:
    changed = [name for name, value in cleaned.items() if getattr(user, name) != value]
    for name in changed:
        setattr(user, name, cleaned[name])
    if changed:
        labels = [PROFILE_FIELDS[n][0] if n in PROFILE_FIELDS else n for n in changed]
        summary = f"{verb} {user.email}: {', '.join(labels)}"
        if "role" in changed:
            summary += f" (now {ROLE_LABELS[user.role]})"
        record_audit(session, actor, "user.edited", "user", user.id, summary)
    return changed


def update_profile(session, user: User, values: Mapping[str, str], *, actor: User) -> list[str]:
    """A user's own profile (or an admin's edit of it): the fields that changed."""
    errors: dict[str, str] = {}
    cleaned = _cleaned_profile(values, errors)
    if errors:
        raise UserEditError(errors)
    verb = "Edited own profile," if actor.id == user.id else "Edited profile of"
    return _apply(session, user, cleaned, actor=actor, verb=verb)


def update_user(session, user: User, values: Mapping[str, str], *, actor: User) -> list[str]:
    """An admin's edit: the profile plus email and role (an admin must remain)."""
    errors: dict[str, str] = {}
    cleaned = _cleaned_profile(values, errors)
    cleaned["email"] = _cleaned_email(session, values.get("email") or "", errors, existing=user)
    cleaned["role"] = (values.get("role") or "").strip()
    _check_role(cleaned["role"], errors)
    if errors:
        raise UserEditError(errors)
    if cleaned["role"] != "admin":
        keep_an_admin(session, user, field="role", role=cleaned["role"])
    return _apply(session, user, cleaned, actor=actor, verb="Edited")


def keep_an_admin(session, user: User, *, field: str, **change: object) -> None:
    """Write `change` (a role or is_active_user that takes `user` out of the active
    admins) only while another active admin remains, else raise UserEditError: the
    workspace keeps one (else nobody can manage users).

    Check and write are one conditional UPDATE, so two admins disabling or demoting each
    other at once cannot both succeed. SQLite runs writes one at a time; PostgreSQL's
    READ COMMITTED would let each UPDATE see the other admin as still active, so the
    active admins' rows are locked first (the second caller waits, then sees the first's
    change). FOR UPDATE is left out on SQLite."""
    if not (user.is_admin and user.is_active_user):
        return
    active_admin = (User.role == "admin", User.is_active_user.is_(True))
    session.execute(sa.select(User.id).where(*active_admin).order_by(User.id).with_for_update())
    other = aliased(User)
    another_active_admin = sa.exists().where(
        other.role == "admin", other.is_active_user.is_(True), other.id != user.id
    )
    written = session.execute(
        sa.update(User)
        .where(User.id == user.id, another_active_admin)
        .values(**change)
        .execution_options(synchronize_session=False)
    )
    if written.rowcount != 1:
        message = f"{user.display_name} is the only active admin: make another admin first."
        raise UserEditError({field: message})


def list_users(session) -> list[User]:
    """The Users page: active users first, then by name."""
    return list(
        session.scalars(sa.select(User).order_by(User.is_active_user.desc(), User.name, User.email))
    )
