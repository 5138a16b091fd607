"""One SendGrid Event Webhook event, read from a batch: checked, normalised, and the
identifiers it carries (events.py applies a batch of them)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from crm_app.drip.common.ids import MAX_ID

# Who the timeline, suppressions and marked-sent rows name for what a webhook changed.
ACTOR = "sendgrid:webhook"
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


class MalformedBatch(Exception):
    """The body is not a JSON array of events."""


@dataclass
class WebhookEvent:
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


def message_id_of(value: Any) -> int | None:
    """custom_args' message_id, if it is a number a message can have (1 .. MAX_ID)."""
    number = _int_or_none(value)
    return number if number is not None and 1 <= number <= MAX_ID else None


def _out_of_range_id(value: Any) -> bool:
    # A number no row can have: looked up, it would fail the whole batch (a 500).
    return _int_or_none(value) is not None and message_id_of(value) is None


def normalize_event(raw: Any) -> WebhookEvent | str:
    """An event we can apply, or the reason it is rejected."""
    if not isinstance(raw, dict):
        return "not a JSON object"
    event = raw.get("event")
    if not isinstance(event, str) or event not in KNOWN_EVENTS:  # a list is unhashable
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
    return WebhookEvent(raw, sg_event_id, event, email.strip().lower(), occurred_at, detail=detail)


def provider_id_of(raw: dict) -> str | None:
    # sg_message_id is the X-Message-Id we stored plus ".filter..." routing suffixes.
    value = raw.get("sg_message_id")
    return value.split(".", 1)[0] if isinstance(value, str) and value else None
