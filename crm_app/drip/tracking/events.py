"""SendGrid Event Webhook ingestion: record each event once, apply its consequences.

A batch is processed with a handful of set-based statements (not a query per
event), so thousands of events per request stay cheap. An event seen before
(same sg_event_id) is skipped by the unique index; first-seen timestamps are
kept with MIN semantics, so events arriving out of order change nothing twice.

Reading one event: event_parsing.py; first-seen times: first_seen.py; suppressions and
in-doubt emails: event_consequences.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from typing import Any

import sqlalchemy as sa

from crm_app.drip.audience.eligibility import erased_addresses
from crm_app.drip.common.activity import activity_row, record_activities
from crm_app.drip.common.sql import in_named_values, insert_rows, is_postgres
from crm_app.drip.reporting.daily_counts import count_first_seen_many, move_first_days
from crm_app.drip.tracking.breaker import check_campaigns, tripping_campaigns
from crm_app.drip.tracking.engagement import flag_machine_events
from crm_app.drip.tracking.event_consequences import apply_consequences
from crm_app.drip.tracking.event_parsing import (
    ACTOR,
    MalformedBatch,
    WebhookEvent,
    message_id_of,
    normalize_event,
    provider_id_of,
)
from crm_app.drip.tracking.first_seen import record_first_seen
from crm_app.models import Contact, Message, utcnow
from crm_app.models.tracking import EmailEvent, WebhookBatch

__all__ = ["IngestResult", "MalformedBatch", "ingest_events"]


@dataclass
class IngestResult:
    received: int = 0
    applied: int = 0
    duplicates: int = 0
    rejected: int = 0
    rejections: list[str] = field(default_factory=list)


@cache
def _messages_statement(postgres: bool, by: str) -> sa.Select:
    """What an event needs of its message, by id or by SendGrid's id (built once)."""
    columns = (
        Message.id,
        Message.contact_id,
        Message.campaign_id,
        Message.provider_message_id,
        Message.delivered_at,
        Message.sent_at,
    )
    key = Message.__table__.c[by]
    return sa.select(*columns).where(in_named_values(postgres, key, "wanted"))


def _resolve_messages(session, events: list[WebhookEvent]) -> None:
    """Tie each event to its message: custom_args first, then sg_message_id."""
    custom_ids = [message_id_of(e.raw.get("message_id")) for e in events]
    wanted_ids = {mid for mid in custom_ids if mid is not None}
    postgres = is_postgres(session)
    rows = []
    if wanted_ids:
        by_ids = _messages_statement(postgres, "id")
        rows += session.execute(by_ids, {"wanted": list(wanted_ids)}).all()
    by_id = {r.id: r for r in rows}
    # Only events that custom_args did not tie need the sg_message_id lookup.
    wanted_provider = {
        pid
        for e, custom_id in zip(events, custom_ids, strict=True)
        if custom_id not in by_id and (pid := provider_id_of(e.raw))
    }
    if wanted_provider:
        by_provider_ids = _messages_statement(postgres, "provider_message_id")
        rows += session.execute(by_provider_ids, {"wanted": list(wanted_provider)}).all()
    by_provider = {r.provider_message_id: r for r in rows if r.provider_message_id}
    delivered_at: dict[int, datetime | None] = {}
    sent_at: dict[int, datetime | None] = {}
    for event, custom_id in zip(events, custom_ids, strict=True):
        row = by_id.get(custom_id) or by_provider.get(provider_id_of(event.raw))
        if row is not None:
            event.message_id, event.contact_id, event.campaign_id = (
                row.id,
                row.contact_id,
                row.campaign_id,
            )
            delivered_at[row.id], sent_at[row.id] = row.delivered_at, row.sent_at
    # Opens by Apple's proxy and scanners' clicks, from the times just read (no query).
    flag_machine_events(events, delivered_at, sent_at)


def _store(session, events: list[WebhookEvent], now: datetime) -> set[str]:
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
        # By id: two requests carrying the same events (a retry) insert them in one order.
        for e in sorted(events, key=lambda e: e.sg_event_id)
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


def _record_timeline(session, events: list[WebhookEvent], now: datetime) -> None:
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


@cache
def _erased_statement(postgres: bool) -> sa.Select:
    return sa.select(Contact.id).where(
        in_named_values(postgres, Contact.id, "ids"), Contact.erased_at.is_not(None)
    )


def _mark_erased(session, events: list[WebhookEvent], hash_key: bytes | None) -> None:
    """Events about an erased person (SendGrid reports opens of old emails for months)
    keep nothing personal: stored without address, payload or detail. An event tied to a
    message is theirs when its contact is erased (one query by primary key); only the
    few tied to none (a group unsubscribe) need the address hashed and looked up."""
    contact_ids = list({e.contact_id for e in events if e.contact_id is not None})
    erased_contacts = set(
        session.scalars(_erased_statement(is_postgres(session)), {"ids": contact_ids})
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
    valid: dict[str, WebhookEvent] = {}
    rejected: list[tuple[Any, str]] = []
    for raw in payload:
        normalized = normalize_event(raw)
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
    _record_timeline(session, fresh, now)
    apply_consequences(session, fresh, now)
    # Last, as the locks they take are held until the commit and wanted by concurrent
    # requests (SendGrid posts several batches at once): the messages' first-seen times,
    # the rollup counters every request adds to, and the breaker (it counts bounced_at
    # and spam_reported_at, so after the first-seen times).
    first_seen = record_first_seen(session, fresh)
    count_first_seen_many(session, first_seen.first)
    move_first_days(session, first_seen.moved)
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
