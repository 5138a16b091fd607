"""The suppression list: addresses never mailed, with why and by whom.

Suppressing also marks matching contacts and stops their enrolments, in the
caller's transaction, so no tick can pick them up afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from email_validator import EmailNotValidError, validate_email

from crm_app.drip.audience.address_hash import normalize_email
from crm_app.drip.audience.eligibility import (
    SUPPRESSION_REASON_LABELS,
    describe_suppression,
    erased_addresses,
    suppression_reasons,
)
from crm_app.drip.audience.ending import active_stop_orders, stop_many
from crm_app.drip.common.activity import activity_row, record_activities, record_activity
from crm_app.drip.common.labels import actor_label
from crm_app.drip.common.paging import Page, paginate
from crm_app.drip.common.sql import expire_updated, in_values, insert_rows, update_rows
from crm_app.drip.team.audit import record_audit
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
REASON_LABELS = SUPPRESSION_REASON_LABELS
CONTACTS = Contact.__table__
SUPPRESSIONS = Suppression.__table__


class SuppressionError(Exception):
    """A refused suppression change; the message is meant for the user."""


def contacts_with_email(session, email: str) -> list[Contact]:
    return list(session.scalars(sa.select(Contact).where(sa.func.lower(Contact.email) == email)))


@dataclass
class SuppressionResult:
    # None: the address was erased (GDPR); its hash already suppresses it, and it is
    # not written down again.
    entry: Suppression | None
    changed: bool  # False: a replay, nothing was added, marked or stopped
    stopped: int  # enrolments stopped


# Timeline kind per reason: an unsubscribe reads as one on the contact's timeline.
ACTIVITY_KIND = {"unsubscribe": "unsubscribed", "group_unsubscribe": "unsubscribed"}


@dataclass(frozen=True)
class SuppressionRequest:
    email: str
    reason: str
    source: str
    note: str = ""


def _by_address(requests: list[SuppressionRequest]) -> dict[str, SuppressionRequest]:
    """Checked requests by normalised address; the first request for an address wins."""
    wanted: dict[str, SuppressionRequest] = {}
    for request in requests:
        if request.reason not in REASON_STATUS:
            raise SuppressionError(f"Unknown suppression reason {request.reason!r}.")
        address = normalize_email(request.email)
        if "@" not in address:
            raise SuppressionError("Enter a full email address.")
        wanted.setdefault(address, request)
    return wanted


def _insert_new(session, wanted: dict[str, SuppressionRequest], now: datetime) -> set[str]:
    """Add the addresses not yet listed; returns those added by this call."""
    # ON CONFLICT: two requests racing for an address, the unique email decides. One
    # statement whatever the count (a webhook batch's bounces vary from batch to batch).
    rows = [
        {"email": address, "reason": r.reason, "source": r.source[:120], "note": r.note,
         "created_at": now}
        for address, r in sorted(wanted.items())  # one order for concurrent writers
    ]  # fmt: skip
    return set(insert_rows(session, SUPPRESSIONS, rows, on_conflict="email", returning="email"))


def _mark_contacts(
    session, wanted: dict[str, SuppressionRequest], added: set[str], *, actor: str, now: datetime
) -> tuple[dict[str, bool], dict[str, int]]:
    """Mark the contacts of `wanted` and stop their active enrolments, a few statements
    for the whole batch; (changed anything, enrolments stopped) by address."""
    contacts = session.execute(
        sa.select(Contact.id, Contact.email, Contact.email_status, Contact.first_name,
                  Contact.last_name)
        .where(in_values(session, sa.func.lower(Contact.email, type_=sa.String), wanted))
    ).all()  # fmt: skip
    address_of = {c.id: c.email.lower() for c in contacts}
    marked = {c.id: REASON_STATUS[wanted[address_of[c.id]].reason] for c in contacts
              if c.email_status == "ok"}  # fmt: skip
    update_rows(
        session,
        CONTACTS,
        [{"id": cid, "email_status": status, "updated_at": now} for cid, status in marked.items()],
        where=lambda r: [CONTACTS.c.email_status == "ok"],
        values=lambda r: {"email_status": r.email_status, "updated_at": r.updated_at},
        returning=False,
    )
    expire_updated(session, Contact, marked)
    orders = active_stop_orders(
        session,
        {c.id: Contact.full_name.fget(c) for c in contacts},
        {cid: REASON_LABELS[wanted[address].reason] for cid, address in address_of.items()},
    )
    stopped = stop_many(session, orders, actor=actor, now=now)
    stopped_by_address = dict.fromkeys(wanted, 0)
    for order in orders:
        if order.enrollment_id in stopped:
            stopped_by_address[address_of[order.contact_id]] += 1
    changed = {address: address in added for address in wanted}
    rows = []
    for cid, address in address_of.items():
        if not (address in added or cid in marked or stopped_by_address[address]):
            continue
        changed[address] = True
        request = wanted[address]
        detail = f"Address {REASON_LABELS[request.reason]} ({actor_label(request.source)})" + (
            f": {request.note}" if request.note else ""
        )
        kind = ACTIVITY_KIND.get(request.reason, "suppressed")
        rows.append(activity_row(cid, kind, detail, actor=actor, campaign_id=None,
                                 enrollment_id=None, created_at=now))  # fmt: skip
    record_activities(session, rows)
    return changed, stopped_by_address


def suppress_many(
    session,
    requests: list[SuppressionRequest],
    *,
    actor: str,
    now: datetime | None = None,
    hash_key: bytes | None = None,
) -> dict[str, SuppressionResult]:
    """Suppress many addresses with a fixed number of queries (a webhook batch carries
    dozens of bounces): add the new ones, mark their contacts, stop their enrolments.
    Idempotent; the first request for an address wins. Returns results by address.

    An erased address (its hash is listed) is already suppressed: it is left out, so a
    late bounce never writes it down again in plain text."""
    now = now or utcnow()
    wanted = _by_address(requests)
    if wanted:
        for address in erased_addresses(session, wanted, hash_key=hash_key):
            del wanted[address]
    if not wanted:
        return {}
    session.flush()
    added = _insert_new(session, wanted, now)
    entries = {
        e.email: e
        for e in session.scalars(
            sa.select(Suppression).where(in_values(session, Suppression.email, wanted))
        )
    }
    changed, stopped_by_address = _mark_contacts(session, wanted, added, actor=actor, now=now)
    return {
        address: SuppressionResult(entries[address], changed[address], stopped_by_address[address])
        for address in wanted
    }


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
    request = SuppressionRequest(email, reason, source, note)
    results = suppress_many(session, [request], actor=actor, now=now)
    return results.get(normalize_email(email)) or SuppressionResult(None, False, 0)


def suppressed_status(reason: str) -> str:
    """The email status a suppression reason implies. An erased address (a hash, with
    no reason of its own) reads as unsubscribed: the person asked not to be mailed."""
    return REASON_STATUS.get(reason, "unsubscribed")


def mark_suppressed_address(session, contact: Contact) -> str | None:
    """The reason the contact's address is suppressed (plain or erased), or None. Its
    email status is set to match while it is "ok": the contact list reads the status
    and plain suppressions only (an erased address is a keyed hash SQL cannot make)."""
    address = normalize_email(contact.email)
    reason = suppression_reasons(session, [address]).get(address)
    if reason is not None and contact.email_status == "ok":
        contact.email_status = suppressed_status(reason)
    return reason


def follow_suppression(
    session, contact: Contact, *, actor: str, now: datetime | None = None
) -> int:
    """A contact whose address was just changed (an edit, the API) to a suppressed one,
    plain or erased (hashed), is treated as if the suppression came now: its email
    status set, its active enrolments stopped with the reason, a timeline row. Returns
    the enrolments stopped (0 when the address is not suppressed)."""
    reason = mark_suppressed_address(session, contact)
    if reason is None:
        return 0
    now = now or utcnow()
    why = describe_suppression(reason)
    record_activity(
        session, contact, "suppressed", f"Email changed to an address not mailed: {why}",
        actor=actor,
    )  # fmt: skip
    session.flush()
    orders = active_stop_orders(
        session, {contact.id: contact.full_name}, {contact.id: f"email changed: {why}"}
    )
    return len(stop_many(session, orders, actor=actor, now=now))


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


def search_suppressions(
    session, *, query: str = "", page: int = 1, per_page: int = PER_PAGE
) -> Page[Suppression]:
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
    return paginate(
        session,
        sa.select(Suppression)
        .where(*conditions)
        .order_by(Suppression.created_at.desc(), Suppression.id.desc()),
        page=page,
        per_page=per_page,
    )


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
    if erased_addresses(session, [address]):
        raise SuppressionError(
            "This address was erased at the person's request (GDPR): it is never mailed "
            "already, and it is not stored again."
        )
    existing = session.scalar(sa.select(Suppression).where(Suppression.email == address))
    if existing is not None:
        return existing, False
    result = suppress(session, address, reason="manual", source=actor, actor=actor, note=note)
    summary = f"Suppressed {address}" + (f": {note}" if note else "")
    record_audit(session, actor, "suppression.added", "suppression", result.entry.id, summary)
    return result.entry, True


def remove_manual_suppression(session, email: str, *, note: str, actor: str) -> bool:
    """Staff lifting a suppression; False when the address is not on the list.

    Mailing an address again is a compliance decision: it needs a reason, which goes
    on the contacts' timelines."""
    note = (note or "").strip()
    if not note:
        raise SuppressionError("Give a reason for removing this address.")
    if len(note) > NOTE_MAX:
        raise SuppressionError(f"Keep the reason under {NOTE_MAX} characters.")
    lifted = lift_suppression(session, email, actor=actor, note=note)
    if lifted:
        summary = f"Removed {normalize_email(email)} from the suppression list: {note}"
        record_audit(session, actor, "suppression.removed", "suppression", None, summary)
    return lifted
