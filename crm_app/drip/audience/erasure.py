"""Erasing a contact's personal data (GDPR article 17), in one transaction:

- the person is never mailed again: the address is kept only as a keyed hash
  (address_hash.py), which the suppression check matches at enrolment and at send,
  and any plain suppression entry for it is deleted;
- the contact row stays, anonymised (a placeholder name and address, every other
  personal field emptied), so the campaign figures keep their counts;
- its enrolments are stopped and its queued emails skipped (each with its timeline row);
- its messages keep their state and dates but lose address, subject and bodies; its
  SendGrid events lose address, payload and detail; its replies lose sender, subject and
  text; its timeline and the audit log lose its name and address; the outbound webhook
  events kept about it keep only its id;
- the erasure itself goes on the timeline and into the audit log (kind "gdpr").

Creating a contact with an erased address later works, but that contact is never
mailed: the hash blocks it (eligibility.mailing_block_reason says why).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from crm_app.drip.audience.address_hash import (
    address_hash,
    app_erasure_key,
    key_id,
    normalize_email,
)
from crm_app.drip.audience.eligibility import ERASED_REASON
from crm_app.drip.audience.ending import stop_all
from crm_app.drip.common.activity import record_activity
from crm_app.drip.common.sql import dialect_insert
from crm_app.drip.delivery import transitions
from crm_app.drip.delivery.compose import email_label
from crm_app.drip.outbound.events import scrub_contact_from_events
from crm_app.drip.team.audit import record_audit
from crm_app.models import (
    Activity,
    AuditEntry,
    Contact,
    EmailEvent,
    EmailReply,
    Enrollment,
    HashedSuppression,
    Message,
    Suppression,
    utcnow,
)

ERASED_DOMAIN = "erased.invalid"  # RFC 2606: can never be a real mailbox
ERASURE_REASON = "personal data erased (GDPR)"
REPLY_ERASED = "Reply received (its content was erased)"
CONTACTS = Contact.__table__


class ErasureError(Exception):
    """A refused erasure; the message is meant for the user."""


@dataclass(frozen=True)
class ErasureResult:
    contact: Contact
    stopped: int  # enrolments
    skipped: int  # queued emails that will not go
    messages: int  # emails blanked
    events: int  # SendGrid events scrubbed
    replies: int


def placeholder_name(contact_id: int) -> str:
    return f"Erased contact #{contact_id}"


def check_erasure_confirmation(contact: Contact, typed: str) -> None:
    """The confirmation page asks for the contact's address, typed: an erasure cannot be
    undone, so it is never one click away."""
    if normalize_email(typed) != normalize_email(contact.email):
        raise ErasureError("Type the contact's email address exactly to confirm.")


def _claim(session, contact: Contact, now: datetime) -> None:
    """Mark the row erased, conditionally: of two erasures at once, one does the work."""
    claimed = session.execute(
        sa.update(CONTACTS)
        .where(CONTACTS.c.id == contact.id, CONTACTS.c.erased_at.is_(None))
        .values(erased_at=now)
    )
    if claimed.rowcount != 1:
        raise ErasureError("This contact's personal data was already erased.")


def _anonymise(contact: Contact, now: datetime) -> None:
    contact.first_name, contact.last_name = "Erased", f"contact #{contact.id}"
    contact.email = f"erased-{contact.id}@{ERASED_DOMAIN}"
    contact.phone = contact.company = contact.title = contact.industry = contact.notes = ""
    contact.custom_fields = {}
    contact.timezone = "UTC"
    contact.erased_at = now


def _scrubber(contact: Contact):
    """Text -> text without the person's address, name, phone, company, title or custom
    field values (whole words, any case): a subject on the timeline may carry any of
    them. Scrubbing a word too many in an erased contact's texts costs nothing."""
    values = [contact.full_name, contact.first_name, contact.last_name, contact.phone,
              contact.company, contact.title, *(contact.custom_fields or {}).values()]  # fmt: skip
    words = {str(value).strip() for value in values if len(str(value).strip()) > 1}
    alternatives = [re.escape(normalize_email(contact.email))] + [
        rf"(?<!\w){re.escape(word)}(?!\w)" for word in sorted(words, key=len, reverse=True)
    ]
    pattern = re.compile("|".join(alternatives), re.IGNORECASE)
    replacement = placeholder_name(contact.id)
    return lambda text: pattern.sub(replacement, text or "")


def _skip_queued(session, contact: Contact, actor: str) -> int:
    """Queued emails of the contact -> skipped, each with its timeline row (conditional:
    one a worker claimed meanwhile is already on its way, and keeps its own state)."""
    queued = transitions.MESSAGES.c.status == "queued"
    skipped = 0
    for message in session.scalars(
        sa.select(Message).where(Message.contact_id == contact.id, Message.status == "queued")
    ):
        if transitions.update_if(
            session, message.id, queued, status="skipped", error=ERASURE_REASON
        ):
            detail = f"{email_label(message)} skipped: {ERASURE_REASON}"
            transitions.record_message_activity(session, message, "email_skipped", detail, actor)
            skipped += 1
    return skipped


def _blank_messages(session, contact: Contact, scrub) -> list[int]:
    """The contact's messages keep their state and dates (what was sent stays counted)
    but not their address, subject or bodies; returns their ids."""
    messages = Message.__table__
    ids = list(session.scalars(sa.select(messages.c.id).where(messages.c.contact_id == contact.id)))
    for message_id, error in session.execute(
        sa.select(messages.c.id, messages.c.error).where(
            messages.c.contact_id == contact.id, messages.c.error != ""
        )
    ):
        session.execute(
            sa.update(messages).where(messages.c.id == message_id).values(error=scrub(error))
        )
    session.execute(
        sa.update(messages)
        .where(messages.c.contact_id == contact.id)
        .values(to_email="", subject="", html="", text="", headers={})
    )
    return ids


def _scrub_events(session, message_ids: list[int], address: str) -> int:
    """SendGrid's events of these messages, or about this address, keep their kind and
    time only. (Events tied to no message, such as a rejected one or a group unsubscribe,
    are found by address: a scan, paid once per erasure.)"""
    events = EmailEvent.__table__
    tied = events.c.message_id.in_(message_ids) if message_ids else sa.false()
    by_address = events.c.email == address
    return session.execute(
        sa.update(events).where(sa.or_(tied, by_address)).values(email="", payload={}, detail="")
    ).rowcount


def _scrub_texts(session, contact: Contact, enrollment_ids: list[int], address: str, scrub):
    """The timeline (a reply's words go whole) and the audit log (entries about the
    contact, its enrolments, or naming its address) without the person's name or address."""
    for activity in session.scalars(sa.select(Activity).where(Activity.contact_id == contact.id)):
        if activity.kind in ("replied", "auto_replied"):
            activity.detail = REPLY_ERASED
        else:
            activity.detail = scrub(activity.detail)
    about = sa.or_(
        sa.and_(AuditEntry.target_type == "contact", AuditEntry.target_id == contact.id),
        sa.and_(AuditEntry.target_type == "enrollment", AuditEntry.target_id.in_(enrollment_ids)),
        sa.func.lower(AuditEntry.summary).contains(address, autoescape=True),
    )
    for entry in session.scalars(sa.select(AuditEntry).where(about)):
        entry.summary = scrub(entry.summary)


def _keep_only_the_hash(session, address: str, key: bytes, now: datetime) -> None:
    row = {"email_hash": address_hash(address, key), "key_id": key_id(key)}
    session.execute(
        dialect_insert(session)(HashedSuppression)
        .values(**row, reason=ERASED_REASON, created_at=now)
        .on_conflict_do_nothing(index_elements=["email_hash"])
    )
    session.execute(sa.delete(Suppression).where(Suppression.email == address))


def erase_contact(
    session,
    contact: Contact,
    *,
    actor: str,
    hash_key: bytes | None = None,
    now: datetime | None = None,
) -> ErasureResult:
    """Erase the contact's personal data (see the module's docstring); the caller commits.
    Raises ErasureError when it was erased already."""
    now = now or utcnow()
    key = hash_key or app_erasure_key()
    address, scrub = normalize_email(contact.email), _scrubber(contact)
    _claim(session, contact, now)
    _keep_only_the_hash(session, address, key, now)
    _anonymise(contact, now)
    session.flush()
    # Before stop_all: its events carry the anonymised contact already.
    scrub_contact_from_events(session, contact.id, scrub)
    stopped = stop_all(session, contact, reason=ERASURE_REASON, actor=actor, now=now)
    skipped = _skip_queued(session, contact, actor)
    message_ids = _blank_messages(session, contact, scrub)
    events = _scrub_events(session, message_ids, address)
    replies = session.execute(
        sa.update(EmailReply)
        .where(EmailReply.contact_id == contact.id)
        .values(from_email="", subject="", first_lines="", email_message_id=None)
    ).rowcount
    enrollment_ids = list(
        session.scalars(sa.select(Enrollment.id).where(Enrollment.contact_id == contact.id))
    )
    _scrub_texts(session, contact, enrollment_ids, address, scrub)
    counts = (
        f"{stopped} enrolment(s) stopped, {len(message_ids)} email(s) and {replies} "
        "reply(ies) blanked"
    )
    record_activity(
        session, contact, "erased", f"Personal data erased (GDPR): {counts}", actor=actor
    )
    summary = f"Erased the personal data of contact #{contact.id}: {counts}"
    record_audit(session, actor, "gdpr.erased", "gdpr", contact.id, summary)
    return ErasureResult(contact, stopped, skipped, len(message_ids), events, replies)
