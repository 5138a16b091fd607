"""Which timeline rows become outbound webhook events, and their delivery rows.

Every change a webhook reports already writes its timeline row through
common/activity.py, in the change's own transaction; that module hands the rows here,
so each event's delivery rows are written in that same transaction (never lost:
committed together, or not at all). After the commit, crm_app/outbound_dispatch.py puts
them on Redis; the sweep finds any that did not get there.

Nothing subscribes most of the time, and the delivery worker records a chunk of
`email_sent` rows at a time: `subscribed_types` answers from a per-process cache
(SUBSCRIPTION_CACHE_SECONDS), so the no-endpoint case costs a dict lookup.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from crm_app.drip.common.sql import in_values, insert_rows
from crm_app.models import Campaign, Contact, WebhookDelivery, WebhookEndpoint, utcnow

EVENT_TYPES = (
    "contact.created",
    "contact.updated",
    "contact.enrolled",
    "enrollment.stopped",
    "enrollment.completed",
    "email.sent",
    "email.delivered",
    "email.opened",
    "email.clicked",
    "email.bounced",
    "contact.unsubscribed",
)
# Timeline kind -> event type. A type change is an update of the contact; an email an
# admin (or SendGrid, for one in doubt) marks sent was sent.
EVENT_FOR_KIND = {
    "created": "contact.created",
    "updated": "contact.updated",
    "type_changed": "contact.updated",
    "enrolled": "contact.enrolled",
    "stopped": "enrollment.stopped",
    "converted": "enrollment.stopped",  # an exit goal ended it (experiments/goals.py)
    "completed": "enrollment.completed",
    "email_sent": "email.sent",
    "email_marked_sent": "email.sent",
    "email_delivered": "email.delivered",
    "email_open": "email.opened",
    "email_click": "email.clicked",
    "email_bounce": "email.bounced",
    "unsubscribed": "contact.unsubscribed",
}
CONTACT_FIELDS = (
    "id", "email", "first_name", "last_name", "company", "title", "phone", "industry",
    "contact_type", "timezone", "owner_id", "email_status", "custom_fields",
)  # fmt: skip
# Delivery ids written in a session's transaction, put on Redis after its commit.
PENDING_KEY = "outbound_webhook_deliveries"
# Another process sees a new endpoint within this long (this process at once).
SUBSCRIPTION_CACHE_SECONDS = 5.0
DELIVERIES = WebhookDelivery.__table__

_subscriptions: dict[str, tuple[float, frozenset[str]]] = {}


def invalidate_subscriptions() -> None:
    """An endpoint changed: this process reads the subscriptions afresh."""
    _subscriptions.clear()


def _live_endpoints(session) -> list[tuple[int, list[str]]]:
    with session.no_autoflush:  # never flush the caller's half-made change from here
        return [
            (row.id, list(row.event_types or []))
            for row in session.execute(
                sa.select(WebhookEndpoint.id, WebhookEndpoint.event_types).where(
                    WebhookEndpoint.enabled.is_(True), WebhookEndpoint.deleted_at.is_(None)
                )
            )
        ]


def subscribed_types(session) -> frozenset[str]:
    """The event types some live endpoint subscribes to (cached per database)."""
    key = str(session.get_bind().engine.url)
    cached = _subscriptions.get(key)
    if cached is not None and cached[0] > time.monotonic():
        return cached[1]
    types = frozenset(t for _, event_types in _live_endpoints(session) for t in event_types)
    _subscriptions[key] = (time.monotonic() + SUBSCRIPTION_CACHE_SECONDS, types)
    return types


def mark_for_dispatch(session, delivery_ids: Iterable[int]) -> None:
    """These deliveries go onto Redis once the session commits."""
    session.info.setdefault(PENDING_KEY, []).extend(delivery_ids)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def contact_snapshot(contact: Any) -> dict:
    """The contact as events carry it (an ORM object or a row with the same names)."""
    return {name: getattr(contact, name) for name in CONTACT_FIELDS}


def _contacts(session, rows: list[dict], known: Mapping[int, Any]) -> dict[int, Any]:
    missing = {r["contact_id"] for r in rows} - set(known)
    found = dict(known)
    if missing:
        table = Contact.__table__
        with session.no_autoflush:
            for row in session.execute(
                sa.select(*(table.c[name] for name in CONTACT_FIELDS)).where(
                    in_values(session, table.c.id, missing)
                )
            ):
                found[row.id] = row
    return found


def _campaign_names(session, rows: list[dict], known: Mapping[int, str]) -> dict[int, str]:
    missing = {r["campaign_id"] for r in rows if r["campaign_id"]} - set(known)
    names = dict(known)
    if missing:
        with session.no_autoflush:
            rows = session.execute(
                sa.select(Campaign.id, Campaign.name).where(
                    in_values(session, Campaign.id, missing)
                )
            )
            names.update((campaign_id, name) for campaign_id, name in rows)
    return names


def event_body(event_type: str, row: dict, contact: Any, campaign_name: str | None) -> str:
    """The JSON a receiver gets: the Standard Webhooks shape (type, timestamp, data)."""
    campaign_id = row.get("campaign_id")
    data = {
        "contact": contact_snapshot(contact) if contact is not None else {"id": row["contact_id"]},
        "campaign": {"id": campaign_id, "name": campaign_name} if campaign_id else None,
        "enrollment_id": row.get("enrollment_id"),
        "detail": row.get("detail", ""),
        "actor": row.get("actor", ""),
    }
    created_at = row.get("created_at") or utcnow()
    return json.dumps({"type": event_type, "timestamp": _iso(created_at), "data": data})


def scrub_contact_from_events(session, contact_id: int, scrub: Callable[[str], str]) -> int:
    """GDPR erasure: the kept events about this contact (sent, pending or failed) keep
    only its id, and their detail goes through `scrub`; otherwise a redelivery or a
    retry would send the erased person's name and address again. Returns the count."""
    # The body starts {"type": ..., "timestamp": ..., "data": {"contact": {"id": N, ...
    # (event_body); a quote inside a field's value is escaped, so cannot fake it.
    opening = '"data": ' + json.dumps({"contact": {"id": contact_id}})[:-2]
    about = sa.or_(
        DELIVERIES.c.body.like(f"%{opening},%"), DELIVERIES.c.body.like(f"%{opening}}}%")
    )
    scrubbed = 0
    for delivery_id, body in session.execute(
        sa.select(DELIVERIES.c.id, DELIVERIES.c.body).where(about)
    ).all():
        event = json.loads(body)
        data = event.get("data") or {}
        if (data.get("contact") or {}).get("id") != contact_id:
            continue
        data["contact"] = {"id": contact_id}
        data["detail"] = scrub(data.get("detail") or "")
        session.execute(
            sa.update(DELIVERIES)
            .where(DELIVERIES.c.id == delivery_id)
            .values(body=json.dumps(event))
        )
        scrubbed += 1
    return scrubbed


def emit_for_activities(
    session,
    rows: list[dict],
    *,
    contacts: Mapping[int, Any] | None = None,
    campaign_names: Mapping[int, str] | None = None,
) -> list[int]:
    """Write the deliveries of the events these timeline rows (`activity_row` dicts)
    stand for, for every live endpoint subscribed; returns their ids. `contacts` and
    `campaign_names` the caller already holds save the queries for them."""
    subscribed = subscribed_types(session)
    if not subscribed:
        return []
    events = [
        (EVENT_FOR_KIND[row["kind"]], row)
        for row in rows
        if EVENT_FOR_KIND.get(row["kind"]) in subscribed
    ]
    if not events:
        return []
    endpoints = _live_endpoints(session)
    known = _contacts(session, [row for _, row in events], contacts or {})
    names = _campaign_names(session, [row for _, row in events], campaign_names or {})
    deliveries = []
    for event_type, row in events:
        targets = [endpoint_id for endpoint_id, types in endpoints if event_type in types]
        if not targets:
            continue
        body = event_body(
            event_type, row, known.get(row["contact_id"]), names.get(row["campaign_id"])
        )
        event_id = f"evt_{uuid.uuid4().hex}"
        deliveries += [
            {
                "endpoint_id": endpoint_id,
                "event_id": event_id,
                "event_type": event_type,
                "body": body,
            }
            for endpoint_id in targets
        ]
    now = utcnow()
    ids = insert_rows(
        session,
        DELIVERIES,
        deliveries,
        constants={
            "status": "pending", "attempts": 0, "error": "", "created_at": now,
            # Due now; "enqueued" now, as the commit's dispatch is about to enqueue it.
            "next_attempt_at": now, "enqueued_at": now,
        },
        returning="id",
    )  # fmt: skip
    mark_for_dispatch(session, ids)
    return ids
