"""Signed unsubscribe tokens and the one function that unsubscribes an address.

The token is signed (itsdangerous) with SECRET_KEY, so a link cannot be edited
to unsubscribe someone else. The web pages (GET page, RFC 8058 one-click POST)
are thin views over `read_unsubscribe_token` + `unsubscribe`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from itsdangerous import BadSignature, URLSafeSerializer

from crm_app.drip.audience.suppression import suppress
from crm_app.drip.reporting.daily_counts import count_first_seen
from crm_app.models import Contact, Enrollment, Message, Suppression, utcnow

_SALT = "unsubscribe"


class InvalidUnsubscribeToken(Exception):
    """The link was altered or signed with another key; the message is meant for the user."""


def _serializer(secret_key: str) -> URLSafeSerializer:
    return URLSafeSerializer(secret_key, salt=_SALT)


def make_unsubscribe_token(contact_id: int, email: str, *, secret_key: str | None = None) -> str:
    return _serializer(secret_key or _app_secret()).dumps([int(contact_id), email.lower()])


def read_unsubscribe_token(token: str, *, secret_key: str | None = None) -> tuple[int, str]:
    """(contact_id, email) from a token, or InvalidUnsubscribeToken."""
    try:
        data = _serializer(secret_key or _app_secret()).loads(token)
    except BadSignature:
        raise InvalidUnsubscribeToken(
            "This unsubscribe link is not valid: it was altered or is incomplete."
        ) from None
    if (
        not isinstance(data, list)
        or len(data) != 2
        or not isinstance(data[0], int)
        or not isinstance(data[1], str)
    ):
        raise InvalidUnsubscribeToken("This unsubscribe link is not valid.")
    return data[0], data[1]


def unsubscribe_url(base_url: str, contact_id: int, email: str, *, secret_key: str | None = None):
    token = make_unsubscribe_token(contact_id, email, secret_key=secret_key)
    return f"{base_url.rstrip('/')}/unsubscribe/{token}"


def _app_secret() -> str:
    from flask import current_app

    return current_app.config["SECRET_KEY"]


@dataclass
class UnsubscribeResult:
    email: str
    contact: Contact | None
    already: bool  # nothing changed: a second click, or a replayed request
    stopped: int  # enrolments stopped


def unsubscribe(
    session,
    contact_or_email: Contact | str,
    *,
    source: str,
    now: datetime | None = None,
) -> UnsubscribeResult:
    """Suppress the address, mark the contact unsubscribed, stop every enrolment, and
    count it in analytics as SendGrid's unsubscribe events are counted: on the email it
    came from (`unsubscribed_from`).

    Idempotent: a second call changes nothing and records nothing. Callers commit.
    """
    now = now or utcnow()
    if isinstance(contact_or_email, Contact):
        contact: Contact | None = contact_or_email
        email = contact_or_email.email.lower()
    else:
        email = contact_or_email.strip().lower()
        contact = session.scalar(sa.select(Contact).where(sa.func.lower(Contact.email) == email))
    # Read before the suppression stops the enrolments that point at them.
    emails_from = unsubscribed_from(session, contact) if contact is not None else []
    result = suppress(session, email, reason="unsubscribe", source=source, actor=source, now=now)
    if result.changed and emails_from:
        first = session.scalars(
            sa.update(Message)
            .where(Message.id.in_(emails_from), Message.unsubscribed_at.is_(None))
            .values(unsubscribed_at=now)
            .returning(Message.id)
        ).all()
        count_first_seen(session, "unsubscribed_at", first)
    return UnsubscribeResult(
        email=email, contact=contact, already=not result.changed, stopped=result.stopped
    )


def is_suppressed(session, email: str) -> bool:
    """The address gets no more email (unsubscribed, or on the list for another reason):
    the link's page says so instead of asking again."""
    address = email.strip().lower()
    return session.scalar(sa.select(Suppression.id).where(Suppression.email == address)) is not None


def unsubscribed_from(session, contact: Contact) -> list[int]:
    """The emails an unsubscribe through our own link is counted on: the contact's latest
    sent email in each campaign it is walking through (the link does not say which email
    it came from), or, with none active, its latest sent email."""
    active = sa.select(Enrollment.campaign_id).where(
        Enrollment.contact_id == contact.id, Enrollment.status == "active"
    )
    sent = sa.select(Message.id).where(
        Message.contact_id == contact.id, Message.status == "sent", Message.sent_at.is_not(None)
    )
    latest = sent.order_by(Message.sent_at.desc(), Message.id.desc()).limit(1)
    ids = []
    for campaign_id in session.scalars(active):
        ids += session.scalars(latest.where(Message.campaign_id == campaign_id)).all()
    if not ids:
        ids = list(session.scalars(latest))
    return ids
