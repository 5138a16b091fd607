"""Contact validation, creation, editing and deletion (no HTTP in here)."""

from __future__ import annotations

from dataclasses import dataclass, field
from zoneinfo import available_timezones

import sqlalchemy as sa
from email_validator import EmailNotValidError, validate_email
from sqlalchemy.exc import IntegrityError

from crm_app.drip.activity import record_activity
from crm_app.drip.enrollment import auto_enroll, change_contact_type
from crm_app.models import CONTACT_TYPES, Contact, User

TEXT_FIELDS = ("first_name", "last_name", "phone", "company", "title", "industry", "notes")
FIELD_LIMITS = {
    "first_name": 100,
    "last_name": 100,
    "phone": 40,
    "company": 200,
    "title": 200,
    "industry": 100,
}
_TIMEZONES = frozenset(available_timezones())


@dataclass
class ContactInput:
    """What a form, a CSV row or the API hands over: plain strings."""

    email: str = ""
    contact_type: str = ""
    timezone: str = "UTC"
    first_name: str = ""
    last_name: str = ""
    phone: str = ""
    company: str = ""
    title: str = ""
    industry: str = ""
    notes: str = ""
    owner_id: int | None = None
    custom_fields: dict[str, str] = field(default_factory=dict)


class ContactValidationError(Exception):
    def __init__(self, errors: dict[str, str]):
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


def parse_custom_fields(text: str) -> tuple[dict[str, str], str | None]:
    """`key: value` lines -> dict; returns an error message for a malformed line."""
    fields: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        key, sep, value = line.partition(":")
        key = key.strip()
        if not sep or not key.isidentifier():
            return fields, (
                f'Line {number}: write custom fields as "name: value", '
                "with a name of letters, digits and underscores."
            )
        fields[key] = value.strip()
    return fields, None


def validate(session, data: ContactInput, *, existing: Contact | None = None) -> ContactInput:
    """Return the cleaned input or raise ContactValidationError with one message per field."""
    errors: dict[str, str] = {}
    cleaned = ContactInput(**{**data.__dict__})
    for name in TEXT_FIELDS:
        setattr(cleaned, name, (getattr(data, name) or "").strip())
        limit = FIELD_LIMITS.get(name)
        if limit and len(getattr(cleaned, name)) > limit:
            errors[name] = f"At most {limit} characters."

    raw_email = (data.email or "").strip()
    if not raw_email:
        errors["email"] = "An email address is required."
    else:
        try:
            cleaned.email = validate_email(raw_email, check_deliverability=False).normalized
        except EmailNotValidError as invalid:
            errors["email"] = f"Not a valid email address: {invalid}"
    if "email" not in errors:
        clash = session.scalar(
            sa.select(Contact.id).where(sa.func.lower(Contact.email) == cleaned.email.lower())
        )
        if clash is not None and (existing is None or clash != existing.id):
            errors["email"] = "Another contact already has this email address."

    if data.contact_type not in CONTACT_TYPES:
        errors["contact_type"] = f"Choose one of: {', '.join(CONTACT_TYPES)}."
    cleaned.timezone = (data.timezone or "").strip() or "UTC"
    if cleaned.timezone not in _TIMEZONES:
        errors["timezone"] = (
            f"Unknown time zone {cleaned.timezone!r}: use an IANA name such as Europe/Paris."
        )
    if data.owner_id is not None and session.get(User, data.owner_id) is None:
        errors["owner_id"] = "Unknown owner."
    if errors:
        raise ContactValidationError(errors)
    return cleaned


def _apply(contact: Contact, cleaned: ContactInput) -> None:
    for name in (*TEXT_FIELDS, "email", "timezone", "owner_id"):
        setattr(contact, name, getattr(cleaned, name))
    contact.custom_fields = dict(cleaned.custom_fields)


def _flush_or_duplicate(session) -> None:
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError:
        # Two saves raced past validation: the unique index decides.
        raise ContactValidationError(
            {"email": "Another contact already has this email address."}
        ) from None


def create_contact(session, data: ContactInput, *, actor: str) -> Contact:
    """Create, then auto-enrol by type (the product's first rule)."""
    cleaned = validate(session, data)
    contact = Contact(contact_type=cleaned.contact_type)
    _apply(contact, cleaned)
    session.add(contact)
    _flush_or_duplicate(session)
    record_activity(session, contact, "created", "Contact created", actor=actor)
    auto_enroll(session, contact, actor=actor)
    return contact


def update_contact(session, contact: Contact, data: ContactInput, *, actor: str) -> Contact:
    """Save edits; a type change stops the old type's campaign and enrols in the new one."""
    cleaned = validate(session, data, existing=contact)
    _apply(contact, cleaned)
    _flush_or_duplicate(session)
    record_activity(session, contact, "updated", "Contact details edited", actor=actor)
    if cleaned.contact_type != contact.contact_type:
        change_contact_type(session, contact, cleaned.contact_type, actor=actor)
    return contact


def delete_contact(session, contact: Contact) -> None:
    session.delete(contact)
