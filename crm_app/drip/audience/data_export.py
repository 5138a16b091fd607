"""Everything the CRM holds about one contact, as one JSON document (GDPR articles 15
and 20: the person's copy of their data): the contact's fields and custom fields, its
enrolments, the emails sent to it with their content, SendGrid's events about them,
its replies, goals, suppressions and its timeline. Exporting is recorded in the audit
log (kind "gdpr"): it hands personal data to someone.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from crm_app.drip.audience.address_hash import normalize_email
from crm_app.drip.audience.eligibility import ERASED_REASON, erased_addresses
from crm_app.drip.team.audit import record_audit
from crm_app.models import (
    Activity,
    Campaign,
    Contact,
    ContactGoal,
    EmailEvent,
    EmailReply,
    Enrollment,
    Message,
    Suppression,
    utcnow,
)

EXPORT_FORMAT = "drip-crm contact export, version 1"
CONTACT_FIELDS = (
    "id", "first_name", "last_name", "email", "phone", "company", "title", "industry",
    "contact_type", "timezone", "notes", "email_status", "created_at", "updated_at", "erased_at",
)  # fmt: skip
ENROLLMENT_FIELDS = (
    "id", "status", "current_step", "source", "enrolled_by", "enrolled_at", "next_send_at",
    "last_sent_at", "ended_at", "end_reason",
)  # fmt: skip
MESSAGE_FIELDS = (
    "id", "step_position", "status", "template_version", "to_email", "subject", "text",
    "html", "created_at", "sent_at", "delivered_at", "opened_at", "clicked_at", "bounced_at",
    "spam_reported_at", "unsubscribed_at", "error",
)  # fmt: skip
EVENT_FIELDS = ("message_id", "event", "email", "occurred_at", "received_at", "detail", "payload")
REPLY_FIELDS = (
    "message_id", "from_email", "subject", "first_lines", "is_automatic", "automatic_reason",
    "received_at",
)  # fmt: skip


def _plain(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def _fields(row: Any, names: tuple[str, ...], **extra: Any) -> dict[str, Any]:
    return {name: _plain(getattr(row, name)) for name in names} | extra


def _campaign_names(session) -> dict[int, str]:
    return dict(session.execute(sa.select(Campaign.id, Campaign.name)).all())


def _events(session, contact: Contact, message_ids: list[int]) -> list[EmailEvent]:
    tied = EmailEvent.message_id.in_(message_ids) if message_ids else sa.false()
    about = sa.or_(tied, EmailEvent.email == normalize_email(contact.email))
    return list(session.scalars(sa.select(EmailEvent).where(about).order_by(EmailEvent.id)))


def _rows(session, model, contact: Contact, order) -> list:
    return list(
        session.scalars(sa.select(model).where(model.contact_id == contact.id).order_by(order))
    )


def _suppressions(session, contact: Contact) -> list[dict[str, Any]]:
    address = normalize_email(contact.email)
    listed = [
        {"reason": s.reason, "source": s.source, "note": s.note, "since": _plain(s.created_at)}
        for s in session.scalars(sa.select(Suppression).where(Suppression.email == address))
    ]
    if erased_addresses(session, [address]):
        listed.append({"reason": ERASED_REASON, "source": "an erasure of this address"})
    return listed


def export_contact(session, contact: Contact, *, actor: str) -> dict[str, Any]:
    """The contact's data as JSON-ready values; records the export in the audit log
    (the caller commits)."""
    campaigns = _campaign_names(session)
    messages = _rows(session, Message, contact, Message.id)
    owner = contact.owner
    document = {
        "format": EXPORT_FORMAT,
        "exported_at": _plain(utcnow()),
        "contact": _fields(
            contact,
            CONTACT_FIELDS,
            owner={"name": owner.name, "email": owner.email} if owner else None,
        ),
        "custom_fields": dict(contact.custom_fields or {}),
        "enrollments": [
            _fields(e, ENROLLMENT_FIELDS, campaign=campaigns.get(e.campaign_id))
            for e in _rows(session, Enrollment, contact, Enrollment.enrolled_at)
        ],
        "messages": [
            _fields(m, MESSAGE_FIELDS, campaign=campaigns.get(m.campaign_id)) for m in messages
        ],
        "events": [
            _fields(e, EVENT_FIELDS) for e in _events(session, contact, [m.id for m in messages])
        ],
        "replies": [
            _fields(r, REPLY_FIELDS) for r in _rows(session, EmailReply, contact, EmailReply.id)
        ],
        "goals": [
            {"name": g.name, "occurred_at": _plain(g.occurred_at), "by": g.actor}
            for g in _rows(session, ContactGoal, contact, ContactGoal.occurred_at)
        ],
        "suppressions": _suppressions(session, contact),
        "timeline": [
            _fields(
                a, ("kind", "detail", "actor", "created_at"), campaign=campaigns.get(a.campaign_id)
            )
            for a in _rows(session, Activity, contact, Activity.id)
        ],
    }
    summary = f"Exported the data of contact #{contact.id} ({len(messages)} email(s))"
    record_audit(session, actor, "gdpr.exported", "gdpr", contact.id, summary)
    return document
