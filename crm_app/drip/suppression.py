"""The suppression list: addresses never mailed, with why and by whom.

Suppressing also marks matching contacts and stops their enrolments, in the
caller's transaction, so no tick can pick them up afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from email_validator import EmailNotValidError, validate_email
from sqlalchemy.exc import IntegrityError

from crm_app.drip.activity import record_activity
from crm_app.drip.enrollment import stop_all
from crm_app.models import Contact, Suppression, utcnow

# Suppression reason -> the contact's email_status it implies.
REASON_STATUS = {
    "unsubscribe": "unsubscribed",
    "group_unsubscribe": "unsubscribed",
    "bounce": "bounced",
    "dropped": "bounced",
    "spamreport": "complained",
    "manual": "unsubscribed",
}
REASON_LABELS = {
    "unsubscribe": "unsubscribed",
    "group_unsubscribe": "unsubscribed from a group",
    "bounce": "bounced",
    "dropped": "dropped by SendGrid",
    "spamreport": "reported as spam",
    "manual": "suppressed by staff",
}


class SuppressionError(Exception):
    """A refused suppression change; the message is meant for the user."""


def normalize_email(email: str) -> str:
    return (email or "").strip().lower()


def contacts_with_email(session, email: str) -> list[Contact]:
    return list(session.scalars(sa.select(Contact).where(sa.func.lower(Contact.email) == email)))


@dataclass
class SuppressionResult:
    entry: Suppression
    changed: bool  # False: a replay, nothing was added, marked or stopped
    stopped: int  # enrolments stopped


# Timeline kind per reason: an unsubscribe reads as one on the contact's timeline.
ACTIVITY_KIND = {"unsubscribe": "unsubscribed", "group_unsubscribe": "unsubscribed"}


def suppress(
    session,
    email: str,
    *,
    reason: str,
    source: str,
    actor: str,
    note: str = "",
    now: datetime | None = None,
) -> SuppressionResult:
    """Add the address (idempotent), mark its contacts and stop all their enrolments."""
    if reason not in REASON_STATUS:
        raise SuppressionError(f"Unknown suppression reason {reason!r}.")
    address = normalize_email(email)
    if "@" not in address:
        raise SuppressionError("Enter a full email address.")
    now = now or utcnow()
    entry = session.scalar(sa.select(Suppression).where(Suppression.email == address))
    added = False
    if entry is None:
        session.flush()
        try:
            # Two requests racing: the unique email decides, the loser changes nothing.
            with session.begin_nested():
                entry = Suppression(
                    email=address, reason=reason, source=source, note=note, created_at=now
                )
                session.add(entry)
            added = True
        except IntegrityError:
            entry = session.scalar(sa.select(Suppression).where(Suppression.email == address))
    label = REASON_LABELS[reason]
    any_change, total_stopped = added, 0
    for contact in contacts_with_email(session, address):
        changed = added
        if contact.email_status == "ok":
            contact.email_status = REASON_STATUS[reason]
            changed = True
        stopped = stop_all(session, contact, reason=label, actor=actor, now=now)
        if changed or stopped:
            detail = f"Address {label} ({source})" + (f": {note}" if note else "")
            kind = ACTIVITY_KIND.get(reason, "suppressed")
            record_activity(session, contact, kind, detail, actor=actor)
        any_change = any_change or changed or bool(stopped)
        total_stopped += stopped
    session.flush()
    return SuppressionResult(entry, any_change, total_stopped)


def lift_suppression(
    session,
    email: str,
    *,
    actor: str,
    note: str = "",
    only_reason: str | None = None,
) -> bool:
    """Remove the address from the list; `only_reason` lifts only what that reason set."""
    address = normalize_email(email)
    entry = session.scalar(sa.select(Suppression).where(Suppression.email == address))
    if entry is None or (only_reason is not None and entry.reason != only_reason):
        return False
    session.delete(entry)
    for contact in contacts_with_email(session, address):
        if contact.email_status == REASON_STATUS[entry.reason]:
            contact.email_status = "ok"
        detail = "Removed from the suppression list" + (f": {note}" if note else "")
        record_activity(session, contact, "unsuppressed", detail, actor=actor)
    session.flush()
    return True


PER_PAGE = 50
NOTE_MAX = 500


@dataclass
class SuppressionPage:
    entries: list[Suppression]
    total: int
    page: int
    per_page: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))

    @property
    def has_prev(self) -> bool:
        return self.page > 1

    @property
    def has_next(self) -> bool:
        return self.page < self.pages


def search_suppressions(
    session, *, query: str = "", page: int = 1, per_page: int = PER_PAGE
) -> SuppressionPage:
    """Newest first; the search matches the address or its source. Two queries."""
    conditions = []
    words = query.strip()
    if words:
        conditions.append(
            sa.or_(
                Suppression.email.icontains(words, autoescape=True),
                Suppression.source.icontains(words, autoescape=True),
            )
        )
    total = session.scalar(sa.select(sa.func.count(Suppression.id)).where(*conditions)) or 0
    pages = max(1, -(-total // per_page))
    page = min(max(1, page), pages)
    entries = list(
        session.scalars(
            sa.select(Suppression)
            .where(*conditions)
            .order_by(Suppression.created_at.desc(), Suppression.id.desc())
            .offset((page - 1) * per_page)
            .limit(per_page)
        )
    )
    return SuppressionPage(entries, total, page, per_page)


def add_manual_suppression(
    session, email: str, *, note: str, actor: str
) -> tuple[Suppression, bool]:
    """Validate the address and suppress it; (entry, False) when it was already listed."""
    try:
        address = validate_email(email.strip(), check_deliverability=False).normalized
    except EmailNotValidError as invalid:
        raise SuppressionError(f"Not a valid email address: {invalid}") from None
    if len(note) > NOTE_MAX:
        raise SuppressionError(f"Keep the note under {NOTE_MAX} characters.")
    address = normalize_email(address)
    existing = session.scalar(sa.select(Suppression).where(Suppression.email == address))
    if existing is not None:
        return existing, False
    result = suppress(session, address, reason="manual", source=actor, actor=actor, note=note)
    return result.entry, True
