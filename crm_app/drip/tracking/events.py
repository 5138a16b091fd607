"""SendGrid Event Webhook ingestion: record each event once, apply its consequences.

A batch is processed with a handful of set-based statements (not a query per
event), so thousands of events per request stay cheap. An event seen before
(same sg_event_id) is skipped by the unique index; first-seen timestamps are
kept with MIN semantics, so events arriving out of order change nothing twice.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from crm_app.drip.audience.eligibility import erased_addresses
from crm_app.drip.audience.suppression import (
    SuppressionRequest,
    lift_suppression,
    suppress,
    suppress_many,
)
from crm_app.drip.common.activity import activity_row, record_activities
from crm_app.drip.common.ids import MAX_ID
from crm_app.drip.common.sql import in_values, insert_rows, is_postgres, update_rows
from crm_app.drip.delivery.admin_actions import mark_sent
from crm_app.drip.delivery.in_doubt import settle_requeued
from crm_app.drip.reporting.daily_counts import count_first_seen_many
from crm_app.drip.tracking.breaker import check_campaigns, tripping_campaigns
from crm_app.drip.tracking.engagement import HUMAN_FIRST_SEEN, flag_machine_events, human_column
from crm_app.models import Contact, Message, utcnow
from crm_app.models.tracking import EmailEvent, WebhookBatch

KNOWN_EVENTS = frozenset(
    {
        "processed",
        "delivered",
        "deferred",
        "open",
        "click",
        "bounce",
        "dropped",
        "spamreport",
        "unsubscribe",
        "group_unsubscribe",
        "group_resubscribe",
    }
)
# Event -> the Message column holding the first time it happened.
FIRST_SEEN_COLUMN = {
    "delivered": "delivered_at",
    "open": "opened_at",
    "click": "clicked_at",
    "bounce": "bounced_at",
    "spamreport": "spam_reported_at",
    "unsubscribe": "unsubscribed_at",
    "group_unsubscribe": "unsubscribed_at",
}
# With a person's first open and click (machine ones are kept apart: engagement.py).
FIRST_SEEN_COLUMNS = tuple(dict.fromkeys([*FIRST_SEEN_COLUMN.values(), *HUMAN_FIRST_SEEN.values()]))
# Drop reasons that say the address itself is bad or unwilling.
SUPPRESSING_DROP_REASONS = {
    "bounced address": "bounce",
    "invalid": "bounce",
    "spam reporting address": "spamreport",
    "unsubscribed address": "unsubscribe",
}
ACTOR = "sendgrid:webhook"


class MalformedBatch(Exception):
    """The body is not a JSON array of events."""


@dataclass
class IngestResult:
    received: int = 0
    applied: int = 0
    duplicates: int = 0
    rejected: int = 0
    rejections: list[str] = field(default_factory=list)


@dataclass
class _Event:
    raw: dict
    sg_event_id: str
    event: str
    email: str
    occurred_at: datetime
    message_id: int | None = None
    contact_id: int | None = None
    campaign_id: int | None = None
    detail: str = ""
    # The address was erased (GDPR): the event is stored without address, payload or detail.
    erased: bool = False
    # Apple's privacy proxy opened it, or a link scanner clicked (engagement.py).
    machine: bool = False


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _message_id(value: Any) -> int | None:
    """custom_args' message_id, if it is a number a message can have (1 .. MAX_ID)."""
    number = _int_or_none(value)
    return number if number is not None and 1 <= number <= MAX_ID else None


def _out_of_range_id(value: Any) -> bool:
    # A number no row can have: looked up, it would fail the whole batch (a 500).
    return _int_or_none(value) is not None and _message_id(value) is None


def _normalize(raw: Any) -> _Event | str:
    """An event we can apply, or the reason it is rejected."""
    if not isinstance(raw, dict):
        return "not a JSON object"
    event = raw.get("event")
    if event not in KNOWN_EVENTS:
        return f"unknown event type {event!r}"
    sg_event_id = raw.get("sg_event_id")
    if not isinstance(sg_event_id, str) or not sg_event_id or len(sg_event_id) > 100:
        return "missing sg_event_id"
    timestamp = raw.get("timestamp")
    if isinstance(timestamp, bool) or not isinstance(timestamp, (int, float)):
        return "missing or non-numeric timestamp"
    try:
        occurred_at = datetime.fromtimestamp(timestamp, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return "timestamp out of range"
    email = raw.get("email")
    if not isinstance(email, str) or "@" not in email:
        return "missing email"
    if _out_of_range_id(raw.get("message_id")):
        return "message_id out of range"
    detail = ""
    if event == "click":
        detail = str(raw.get("url", ""))[:500]
    elif event in ("bounce", "dropped", "deferred"):
        kind = raw.get("type") or ""
        detail = " ".join(p for p in (str(kind), str(raw.get("reason", ""))) if p)[:500]
    return _Event(raw, sg_event_id, event, email.strip().lower(), occurred_at, detail=detail)


def _provider_id(raw: dict) -> str | None:
    # sg_message_id is the X-Message-Id we stored plus ".filter..." routing suffixes.
    value = raw.get("sg_message_id")
    return value.split(".", 1)[0] if isinstance(value, str) and value else None


def _resolve_messages(session, events: list[_Event]) -> None:
    """Tie each event to its message: custom_args first, then sg_message_id."""
    custom_ids = [_message_id(e.raw.get("message_id")) for e in events]
    wanted_ids = {mid for mid in custom_ids if mid is not None}
    columns = (
        Message.id,
        Message.contact_id,
        Message.campaign_id,
        Message.provider_message_id,
        Message.delivered_at,
        Message.sent_at,
    )
    rows = []
    if wanted_ids:
        rows += session.execute(
            sa.select(*columns).where(in_values(session, Message.id, wanted_ids))
        ).all()
    by_id = {r.id: r for r in rows}
    # Only events that custom_args did not tie need the sg_message_id lookup.
    wanted_provider = {
        pid
        for e, custom_id in zip(events, custom_ids, strict=True)
        if custom_id not in by_id and (pid := _provider_id(e.raw))
    }
    if wanted_provider:
        rows += session.execute(
            sa.select(*columns).where(
                in_values(session, Message.provider_message_id, wanted_provider)
            )
        ).all()
    by_provider = {r.provider_message_id: r for r in rows if r.provider_message_id}
    delivered_at: dict[int, datetime | None] = {}
    sent_at: dict[int, datetime | None] = {}
    for event, custom_id in zip(events, custom_ids, strict=True):
        row = by_id.get(custom_id) or by_provider.get(_provider_id(event.raw))
        if row is not None:
            event.message_id, event.contact_id, event.campaign_id = (
                row.id,
                row.contact_id,
                row.campaign_id,
            )
            delivered_at[row.id], sent_at[row.id] = row.delivered_at, row.sent_at
    # Opens by Apple's proxy and scanners' clicks, from the times just read (no query).
    flag_machine_events(events, delivered_at, sent_at)


def _store(session, events: list[_Event], now: datetime) -> set[str]:
    """Insert the events; returns the sg_event_ids that were new."""
    rows = [
        {
            "sg_event_id": e.sg_event_id,
            "event": e.event,
            "email": "" if e.erased else e.email[:254],
            "message_id": e.message_id,
            "occurred_at": e.occurred_at,
            "received_at": now,
            "outcome": "applied",
            "detail": e.detail,
            "payload": {} if e.erased else e.raw,
            "machine": e.machine,
        }
        for e in events
    ]
    table = EmailEvent.__table__
    return set(
        insert_rows(session, table, rows, on_conflict="sg_event_id", returning="sg_event_id")
    )


def _store_rejected(session, rejected: list[tuple[Any, str]], now: datetime) -> None:
    if not rejected:
        return
    rows = []
    for raw, reason in rejected:
        payload = raw if isinstance(raw, dict) else {"value": raw}
        event = payload.get("event") if isinstance(payload.get("event"), str) else "?"
        rows.append(
            {
                "sg_event_id": None,  # a rejected event keeps no claim on its id
                "event": event[:40],
                "email": str(payload.get("email", ""))[:254],
                "received_at": now,
                "outcome": "rejected",
                "detail": reason,
                "payload": payload,
            }
        )
    insert_rows(session, EmailEvent.__table__, rows)


def _record_first_seen(session, events: list[_Event]) -> None:
    """Per message and column keep the earliest time: replays and late events change nothing."""
    earliest: dict[tuple[str, int], datetime] = {}
    for e in events:
        if e.message_id is None:
            continue
        for column in (FIRST_SEEN_COLUMN.get(e.event), human_column(e)):
            if column is None:
                continue
            key = (column, e.message_id)
            if key not in earliest or e.occurred_at < earliest[key]:
                earliest[key] = e.occurred_at
    if not earliest:
        return
    # The current first-seen times of these messages, locked (PostgreSQL; SQLite's write
    # lock is ours since the events were stored), then ONE update of every column that
    # moves: first times (counted in the analytics rollups, same transaction) and
    # earlier times for events that arrived late.
    messages = Message.__table__
    ids = {message_id for _, message_id in earliest}
    query = (
        sa.select(messages.c.id, *(messages.c[c] for c in FIRST_SEEN_COLUMNS))
        .where(in_values(session, messages.c.id, ids))
        .order_by(messages.c.id)
    )
    if is_postgres(session):
        query = query.with_for_update()
    current = {
        row[0]: dict(zip(FIRST_SEEN_COLUMNS, row[1:], strict=True))
        for row in session.execute(query)
    }
    moved: dict[int, dict[str, datetime]] = defaultdict(dict)
    first_by_column: dict[str, set[int]] = defaultdict(set)
    for (column, message_id), at in earliest.items():
        if message_id not in current:
            continue
        seen = current[message_id][column]
        if seen is None:
            first_by_column[column].add(message_id)
        elif at >= seen:
            continue
        moved[message_id][column] = at
    rows = [{"id": i, **(current[i] | changes)} for i, changes in moved.items()]
    update_rows(
        session,
        messages,
        rows,
        values=lambda r: {name: getattr(r, name) for name in FIRST_SEEN_COLUMNS},
        returning=False,
    )
    count_first_seen_many(session, first_by_column)


def _record_timeline(session, events: list[_Event], now: datetime) -> None:
    labels = {
        "processed": "Email accepted by SendGrid",
        "delivered": "Email delivered",
        "deferred": "Delivery deferred",
        "open": "Email opened",
        "click": "Link clicked",
        "bounce": "Email bounced",
        "dropped": "Email dropped by SendGrid",
        "spamreport": "Marked as spam",
        "unsubscribe": "Unsubscribed via SendGrid",
        "group_unsubscribe": "Unsubscribed from a group",
        "group_resubscribe": "Resubscribed to a group",
    }
    rows = [
        activity_row(
            e.contact_id,
            f"email_{e.event}",
            labels[e.event]
            + (" (by a machine, not counted as a person's)" if e.machine else "")
            + (f": {e.detail}" if e.detail else ""),
            actor=ACTOR,
            campaign_id=e.campaign_id,
            enrollment_id=None,
            created_at=e.occurred_at,
        )
        for e in events
        if e.contact_id is not None
    ]
    record_activities(session, rows)


def _suppression_reason(event: _Event) -> str | None:
    if event.event == "bounce":
        # A block is the receiving server's temporary refusal, not a bad address.
        return None if str(event.raw.get("type", "")).lower() == "blocked" else "bounce"
    if event.event == "dropped":
        return SUPPRESSING_DROP_REASONS.get(str(event.raw.get("reason", "")).strip().lower())
    if event.event in ("spamreport", "unsubscribe", "group_unsubscribe"):
        return event.event
    return None


def _latest_group_event(session, email: str, event: str) -> datetime | None:
    return session.scalar(
        sa.select(sa.func.max(EmailEvent.occurred_at)).where(
            EmailEvent.email == email, EmailEvent.event == event, EmailEvent.outcome == "applied"
        )
    )


def _apply_consequences(session, events: list[_Event], now: datetime) -> None:
    bounced: list[SuppressionRequest] = []
    for event in sorted(events, key=lambda e: e.occurred_at):
        reason = _suppression_reason(event)
        if event.event == "group_unsubscribe":
            # Group (un)subscribes are rare and order matters between them: one by one.
            resubscribed = _latest_group_event(session, event.email, "group_resubscribe")
            if resubscribed is None or resubscribed <= event.occurred_at:
                suppress(
                    session, event.email, reason="group_unsubscribe",
                    source="sendgrid group_unsubscribe", actor=ACTOR, note=event.detail, now=now,
                )  # fmt: skip
        elif event.event == "group_resubscribe":
            unsubscribed = _latest_group_event(session, event.email, "group_unsubscribe")
            if unsubscribed is None or unsubscribed <= event.occurred_at:
                lift_suppression(
                    session, event.email, actor=ACTOR, note="group resubscribe",
                    only_reason="group_unsubscribe",
                )  # fmt: skip
        elif reason is not None:
            bounced.append(
                SuppressionRequest(event.email, reason, f"sendgrid {event.event}", event.detail)
            )
    suppress_many(session, bounced, actor=ACTOR, now=now)
    _resolve_in_doubt(session, events)


def _resolve_in_doubt(session, events: list[_Event]) -> None:
    """SendGrid has the message: an in-doubt row was in fact sent (one query to find
    them). So was one the tick queued again for lack of a trace, when any event of it
    arrives before a worker claims it again (delivery/in_doubt.py)."""
    seen: dict[int, datetime] = {}  # any event: the first one's time
    proving: dict[int, datetime] = {}  # processed / delivered: the first one's time
    for e in events:
        if e.message_id is None:
            continue
        seen[e.message_id] = min(e.occurred_at, seen.get(e.message_id, e.occurred_at))
        if e.event in ("processed", "delivered"):
            first = proving.get(e.message_id, e.occurred_at)
            proving[e.message_id] = min(e.occurred_at, first)
    if not seen:
        return
    candidates = session.scalars(
        sa.select(Message).where(
            in_values(session, Message.id, seen),
            sa.or_(
                Message.status == "in_doubt",
                sa.and_(Message.status == "queued", Message.in_doubt_resolution == "requeued"),
            ),
        )
    )
    for message in candidates:
        if message.status == "queued":
            settle_requeued(session, message, at=seen[message.id], actor=ACTOR)
        elif message.id in proving:
            mark_sent(
                session,
                message,
                actor=ACTOR,
                note="SendGrid reported it",
                now=proving[message.id],
                resolution="sendgrid",
            )


def _mark_erased(session, events: list[_Event], hash_key: bytes | None) -> None:
    """Events about an erased person (SendGrid reports opens of old emails for months)
    keep nothing personal: stored without address, payload or detail. An event tied to a
    message is theirs when its contact is erased (one query by primary key); only the
    few tied to none (a group unsubscribe) need the address hashed and looked up."""
    contact_ids = {e.contact_id for e in events if e.contact_id is not None}
    erased_contacts = set(
        session.scalars(
            sa.select(Contact.id).where(
                in_values(session, Contact.id, contact_ids), Contact.erased_at.is_not(None)
            )
        )
        if contact_ids
        else ()
    )
    untied = {e.email for e in events if e.contact_id is None}
    erased_emails = erased_addresses(session, untied, hash_key=hash_key) if untied else set()
    for event in events:
        if event.contact_id in erased_contacts or event.email in erased_emails:
            event.erased, event.detail = True, ""


def ingest_events(
    session, payload: Any, *, now: datetime | None = None, hash_key: bytes | None = None
) -> IngestResult:
    """Record a webhook batch and apply it; the caller commits. `hash_key`: the erasure
    key (address_hash.py), else the running app's."""
    now = now or utcnow()
    if not isinstance(payload, list):
        raise MalformedBatch("the body must be a JSON array of events")
    result = IngestResult(received=len(payload))
    valid: dict[str, _Event] = {}
    rejected: list[tuple[Any, str]] = []
    for raw in payload:
        normalized = _normalize(raw)
        if isinstance(normalized, str):
            rejected.append((raw, normalized))
        elif normalized.sg_event_id in valid:
            result.duplicates += 1  # the same event twice in one batch
        else:
            valid[normalized.sg_event_id] = normalized
    events = list(valid.values())
    _resolve_messages(session, events)
    _mark_erased(session, events, hash_key)
    new_ids = _store(session, events, now)
    fresh = [e for e in events if e.sg_event_id in new_ids]
    result.duplicates += len(events) - len(fresh)
    _store_rejected(session, rejected, now)
    result.rejected = len(rejected)
    result.rejections = [reason for _, reason in rejected[:20]]
    result.applied = len(fresh)
    _record_first_seen(session, fresh)
    _record_timeline(session, fresh, now)
    _apply_consequences(session, fresh, now)
    # After the first-seen times: the breaker counts bounced_at / spam_reported_at.
    check_campaigns(session, tripping_campaigns(fresh), now=now)
    session.add(
        WebhookBatch(
            received_at=now,
            event_count=result.received,
            applied_count=result.applied,
            duplicate_count=result.duplicates,
            rejected_count=result.rejected,
        )
    )
    session.flush()
    return result
