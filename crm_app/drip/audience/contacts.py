"""Contact validation, creation, editing and deletion (no HTTP in here)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime

import sqlalchemy as sa
from email_validator import EmailNotValidError, validate_email

from crm_app.drip.audience.enrollment import auto_enroll, change_contact_type
from crm_app.drip.audience.suppression import follow_suppression, mark_suppressed_address
from crm_app.drip.campaigns.schedule import reschedule_contact
from crm_app.drip.common.activity import record_activity
from crm_app.drip.common.errors import FieldErrors
from crm_app.drip.common.ids import id_or_none
from crm_app.drip.common.sql import saved_unless_taken
from crm_app.drip.common.timezones import is_known_timezone
from crm_app.drip.reporting.daily_counts import uncount_contact
from crm_app.drip.team.audit import record_audit
from crm_app.drip.tracking.forgetting import forget_contact_events
from crm_app.models import CONTACT_TYPES, Contact, User, utcnow


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


# The one list of a contact's fields: the form, the parser and the validation use it.
CONTACT_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(ContactInput))
# Free text, stripped, with its length limit.
TEXT_FIELDS: dict[str, int] = {
    "first_name": 100,
    "last_name": 100,
    "phone": 40,
    "company": 200,
    "title": 200,
    "industry": 100,
    "notes": 10_000,
}
# What the contact form shows in one-line inputs, which drop a line break (a browser
# strips CR and LF from an input's value): "Ann\nMarie" from the API or a CSV cell was
# saved back as "AnnMarie" by the next edit of any field.
ONE_LINE_FIELDS = tuple(name for name in TEXT_FIELDS if name != "notes")
EMAIL_TAKEN = "Another contact already has this email address."
# Custom fields are merged into every email and shown on every contact page: bounded, so
# one contact cannot carry megabytes (an audit stored 5,000 fields and a 1 MB note).
MAX_CUSTOM_FIELDS = 50
CUSTOM_FIELD_NAME_MAX = 50
CUSTOM_FIELD_VALUE_MAX = 1_000
# Fields submitted as text that must be parsed first (the rest stay strings).
_PARSED_FIELDS = ("owner_id", "custom_fields")


class ContactValidationError(FieldErrors):
    """A contact form, CSV row or API call that cannot be saved as it is."""


def line_break_error(name: str, text: str) -> str | None:
    """Why `text` cannot be this field's value because of a line break, or None: the one
    rule for the form, the API and the CSV import."""
    if name in ONE_LINE_FIELDS and ("\n" in text or "\r" in text):
        return "One line only: remove the line break."
    return None


def parse_custom_fields(text: str) -> tuple[dict[str, str], str | None]:
    """`key: value` lines -> dict; returns an error message for a malformed line or a
    name given twice (keeping the last one silently lost the other value)."""
    fields: dict[str, str] = {}
    first_line: dict[str, int] = {}
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
        if key in first_line:
            return fields, (
                f'Line {number}: the field "{key}" is given twice (also on line '
                f"{first_line[key]}): keep one."
            )
        first_line[key] = number
        fields[key] = value.strip()
    return fields, None


def normalized_email(raw: str | None) -> str:
    """The address as stored, or ValueError with the message for the user: the one rule
    for the form, the API and the CSV import."""
    raw_email = (raw or "").strip()
    if not raw_email:
        raise ValueError("An email address is required.")
    try:
        return validate_email(raw_email, check_deliverability=False).normalized
    except EmailNotValidError as invalid:
        raise ValueError(f"Not a valid email address: {invalid}") from None


def validate(session, data: ContactInput, *, existing: Contact | None = None) -> ContactInput:
    """Return the cleaned input or raise ContactValidationError with one message per field."""
    errors: dict[str, str] = {}
    cleaned = ContactInput(**{**data.__dict__})
    for name, limit in TEXT_FIELDS.items():
        # A browser sends a textarea's line breaks as CRLF: the notes keep "\n", as the
        # API and the import give them, and a line break counts once against the limit.
        text = (getattr(data, name) or "").replace("\r\n", "\n").strip()
        setattr(cleaned, name, text)
        if len(text) > limit:
            errors[name] = f"At most {limit:,} characters (this has {len(text):,})."
        elif line_break := line_break_error(name, text):
            errors[name] = line_break
    if custom_error := custom_fields_error(data.custom_fields):
        errors["custom_fields"] = custom_error

    try:
        cleaned.email = normalized_email(data.email)
    except ValueError as invalid:
        errors["email"] = str(invalid)
    if "email" not in errors:
        clash = session.scalar(
            sa.select(Contact.id).where(sa.func.lower(Contact.email) == cleaned.email.lower())
        )
        if clash is not None and (existing is None or clash != existing.id):
            errors["email"] = EMAIL_TAKEN

    if data.contact_type not in CONTACT_TYPES:
        errors["contact_type"] = f"Choose one of: {', '.join(CONTACT_TYPES)}."
    cleaned.timezone = (data.timezone or "").strip() or "UTC"
    if not is_known_timezone(cleaned.timezone):
        errors["timezone"] = (
            f"Unknown time zone {cleaned.timezone!r}: use an IANA name such as Europe/Paris."
        )
    if owner_error := _owner_error(session, data.owner_id, existing):
        errors["owner_id"] = owner_error
    if errors:
        raise ContactValidationError(errors)
    return cleaned


def _owner_error(session, owner_id: int | None, existing: Contact | None) -> str | None:
    if owner_id is None:
        return None
    # An id no row can have (past the database's integers, the API's) is no owner either.
    owner = session.get(User, owner_id) if id_or_none(owner_id) is not None else None
    if owner is None:
        return "Unknown owner."
    # A disabled user (someone who left) keeps the contacts they own, but gets no new ones.
    if not owner.is_active_user and (existing is None or existing.owner_id != owner.id):
        return f"{owner.display_name} is disabled: choose an active user."
    return None


def custom_fields_error(custom: Mapping[str, str]) -> str | None:
    """Why these custom fields cannot be saved, or None: the one rule for the form, the
    API and the CSV import (a contact past it could no longer be edited)."""
    if len(custom) > MAX_CUSTOM_FIELDS:
        return f"At most {MAX_CUSTOM_FIELDS} custom fields (this has {len(custom):,})."
    for name, value in custom.items():
        if len(name) > CUSTOM_FIELD_NAME_MAX:
            limit = CUSTOM_FIELD_NAME_MAX
            return f'The name "{name[:20]}..." is too long: at most {limit} characters.'
        # The form's "name: value" lines (parse_custom_fields) must read the field back as
        # it is: a name such as "my plan" or "a:b", or a value over two lines, could not be
        # saved again from the form (or came back changed).
        if not name.isidentifier():
            return f'The name "{name}" is not a field name: use letters, digits and underscores.'
        if str(value).splitlines() not in ([], [str(value)]):
            return f'The value of "{name}" holds a line break: a custom field is one line.'
        if len(str(value)) > CUSTOM_FIELD_VALUE_MAX:
            limit, size = CUSTOM_FIELD_VALUE_MAX, len(str(value))
            return f'The value of "{name}" is too long: at most {limit:,} characters ({size:,}).'
    return None


def contact_input(values: Mapping[str, str]) -> tuple[ContactInput, dict[str, str]]:
    """Submitted strings (a form, a CSV row) -> ContactInput, plus a message for each
    field that does not even parse (validate() cannot see those)."""
    errors: dict[str, str] = {}
    custom, custom_error = parse_custom_fields(values.get("custom_fields") or "")
    if custom_error:
        errors["custom_fields"] = custom_error
    owner_raw = (values.get("owner_id") or "").strip()
    owner_id = None
    if owner_raw:
        owner_id = id_or_none(owner_raw)
        if owner_id is None:  # not a number, or one no row can have (past MAX_ID)
            errors["owner_id"] = "Unknown owner."
    plain = {name: values.get(name) or "" for name in CONTACT_FIELDS if name not in _PARSED_FIELDS}
    return ContactInput(**plain, owner_id=owner_id, custom_fields=custom), errors


def contact_form_values(contact: Contact | None, *, owner_id: int | None) -> dict[str, str]:
    """What the contact form shows: the contact's values, or a new contact's defaults
    (a lead in UTC, owned by `owner_id`)."""
    if contact is None:
        return {"contact_type": "lead", "timezone": "UTC", "owner_id": str(owner_id or "")}
    values = {
        name: getattr(contact, name) or "" for name in CONTACT_FIELDS if name not in _PARSED_FIELDS
    }
    values["owner_id"] = str(contact.owner_id or "")
    values["custom_fields"] = custom_fields_text(contact.custom_fields)
    return values


def save_contact(
    session, values: Mapping[str, str], *, contact: Contact | None = None, actor: str
) -> Contact:
    """Create (contact None) or update from submitted strings, or raise
    ContactValidationError with every bad field at once; nothing is saved then."""
    data, errors = contact_input(values)
    if errors:
        # Still validate the rest, so the user fixes everything in one go.
        try:
            validate(session, data, existing=contact)
        except ContactValidationError as invalid:
            errors = {**invalid.errors, **errors}
        raise ContactValidationError(errors)
    if contact is None:
        return create_contact(session, data, actor=actor)
    return update_contact(session, contact, data, actor=actor)


_EDITABLE = (*TEXT_FIELDS, "email", "timezone", "owner_id", "contact_type", "custom_fields")
# How an edited field is named on the timeline and in the audit log (else: its name, spaced).
_FIELD_LABELS = {"owner_id": "owner", "timezone": "time zone", "contact_type": "type"}


def _apply(contact: Contact, cleaned: ContactInput) -> None:
    for name in (*TEXT_FIELDS, "email", "timezone", "owner_id"):
        setattr(contact, name, getattr(cleaned, name))
    contact.custom_fields = dict(cleaned.custom_fields)


def _flush_or_duplicate(session) -> None:
    if not saved_unless_taken(session):  # two saves raced past validation
        raise ContactValidationError({"email": EMAIL_TAKEN})


def create_contact(session, data: ContactInput, *, actor: str) -> Contact:
    """Create, then auto-enrol by type (the product's first rule)."""
    cleaned = validate(session, data)
    contact = Contact(contact_type=cleaned.contact_type)
    _apply(contact, cleaned)
    session.add(contact)
    _flush_or_duplicate(session)
    mark_suppressed_address(session, contact)  # auto_enroll then refuses, saying why
    record_activity(session, contact, "created", "Contact created", actor=actor)
    summary = f"Created contact {contact.full_name} ({contact.email})"
    record_audit(session, actor, "contact.created", "contact", contact.id, summary)
    auto_enroll(session, contact, actor=actor)
    return contact


def update_contact(session, contact: Contact, data: ContactInput, *, actor: str) -> Contact:
    """Save edits; a type change stops the old type's campaign and enrols in the new one;
    a new address that is suppressed stops every campaign (follow_suppression)."""
    if contact.erased_at is not None:
        raise ContactValidationError(
            {"email": "This contact's data was erased: it stays as it is."}
        )
    cleaned = validate(session, data, existing=contact)
    changed = [name for name in _EDITABLE if getattr(contact, name) != getattr(cleaned, name)]
    _apply(contact, cleaned)
    _flush_or_duplicate(session)
    if changed:
        # Names only: the timeline and the audit log outlive values that are personal data.
        names = ", ".join(_FIELD_LABELS.get(name, name.replace("_", " ")) for name in changed)
        record_activity(
            session, contact, "updated", f"Contact details edited: {names}", actor=actor
        )
        summary = f"Edited contact {contact.full_name}: {names}"
        record_audit(session, actor, "contact.edited", "contact", contact.id, summary)
    if "email" in changed:  # a suppressed address is never mailed: stop what would mail it
        follow_suppression(session, contact, actor=actor)
    if "timezone" in changed:
        follow_timezone(session, contact, actor=actor)
    if cleaned.contact_type != contact.contact_type:
        change_contact_type(session, contact, cleaned.contact_type, actor=actor)
    return contact


def follow_timezone(session, contact: Contact, *, actor: str, now: datetime | None = None) -> int:
    """The contact's time zone changed: its next emails move into their send windows on
    the new clock (schedule.reschedule_contact), each with a timeline row. Returns how
    many moved."""
    moved = reschedule_contact(contact, now or utcnow())
    for enrollment in moved:
        record_activity(
            session,
            contact,
            "rescheduled",
            f"Time zone changed to {contact.timezone}: the next email of "
            f"{enrollment.campaign.name} moved into its send window on that clock",
            actor=actor,
            campaign=enrollment.campaign,
            enrollment=enrollment,
        )
    return len(moved)


def delete_contact(session, contact: Contact, *, actor: str) -> None:
    """Delete the contact with its enrolments, emails, replies and timeline; SendGrid's
    events of its emails stay, without its address or their payload (forgetting.py), and
    the analytics rollups no longer count its emails."""
    summary = f"Deleted contact {contact.full_name} ({contact.email})"
    record_audit(session, actor, "contact.deleted", "contact", contact.id, summary)
    forget_contact_events(session, contact.id)
    uncount_contact(session, contact.id)
    session.delete(contact)


# --- Read helpers for the contact pages (queries only, nothing written) ---


def owner_choices(session, contact: Contact | None = None) -> list[User]:
    """Users a contact may be assigned to, for the owner dropdown: the active ones, and
    the contact's own owner even when disabled (or saving the form unchanged would
    drop it; validate() keeps a disabled owner only for the contact it already owns)."""
    active = User.is_active_user.is_(True)
    if contact is not None and contact.owner_id is not None:
        active = active | (User.id == contact.owner_id)
    return list(session.scalars(sa.select(User).where(active).order_by(User.name, User.email)))


def custom_fields_text(custom_fields: dict[str, str] | None) -> str:
    """The inverse of parse_custom_fields, for the edit form."""
    return "\n".join(f"{key}: {value}" for key, value in (custom_fields or {}).items())
