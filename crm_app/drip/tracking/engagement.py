"""Human versus machine engagement: which opens and clicks a person made.

Apple Mail Privacy Protection fetches every image of every email (SendGrid marks
those opens `sg_machine_open`), and corporate link scanners click every link of an
email seconds after it arrives. Such events are kept (the raw figures stay what
SendGrid reported) but flagged `machine` on their `email_events` row, and only the
others set a message's `human_opened_at` / `human_clicked_at`. Analytics shows both;
A/B verdicts and "send only if" conditions read the human ones.

The flagging runs on a whole webhook batch in memory (the ingest is a hot path): no
query of its own, it reads the send and delivery times the batch's message lookup
already fetched.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Protocol

# A click this soon after delivery (or before it) is a scanner's: nobody reads that fast.
EARLY_CLICK = timedelta(seconds=5)
# Clicks on this many different links of one email within SCAN_SPAN: a scanner
# following every link at once.
SCAN_LINKS = 2
SCAN_SPAN = timedelta(seconds=2)


class EngagementEvent(Protocol):
    """What the flagging reads and writes on each event of a batch."""

    event: str
    raw: dict
    occurred_at: datetime
    message_id: int | None
    detail: str
    machine: bool


def _machine_open(raw: dict) -> bool:
    value = raw.get("sg_machine_open")
    return value is True or str(value).strip().lower() in {"true", "1"}


def flag_machine_events(
    events: Iterable[EngagementEvent],
    delivered_at: dict[int, datetime | None],
    sent_at: dict[int, datetime | None],
) -> None:
    """Set `machine` on the batch's machine opens and scanner clicks.

    A click is measured from the message's delivery: as stored (`delivered_at`), else
    reported in this same batch, else its send (`sent_at`)."""
    events = list(events)
    delivered = {mid: at for mid, at in delivered_at.items() if at is not None}
    for e in events:
        if e.event == "delivered" and e.message_id is not None:
            known = delivered.get(e.message_id)
            delivered[e.message_id] = min(known, e.occurred_at) if known else e.occurred_at
    for mid, at in sent_at.items():
        if at is not None:
            delivered.setdefault(mid, at)
    clicks: dict[int, list[EngagementEvent]] = defaultdict(list)
    for e in events:
        if e.event == "open":
            e.machine = _machine_open(e.raw)
        elif e.event == "click":
            at = delivered.get(e.message_id) if e.message_id is not None else None
            e.machine = at is not None and e.occurred_at - at <= EARLY_CLICK
            if e.message_id is not None:
                clicks[e.message_id].append(e)
    for message_clicks in clicks.values():
        _flag_link_scans(message_clicks)


def _flag_link_scans(clicks: list[EngagementEvent]) -> None:
    """Clicks on SCAN_LINKS or more different links within SCAN_SPAN: all of them."""
    if len(clicks) < SCAN_LINKS:
        return
    clicks.sort(key=lambda e: e.occurred_at)
    start = 0
    for end, click in enumerate(clicks):
        while click.occurred_at - clicks[start].occurred_at > SCAN_SPAN:
            start += 1
        window = clicks[start : end + 1]
        if len({c.detail for c in window}) >= SCAN_LINKS:
            for c in window:
                c.machine = True


HUMAN_FIRST_SEEN = {"open": "human_opened_at", "click": "human_clicked_at"}


def human_column(event: EngagementEvent) -> str | None:
    """The Message column a person's open or click sets (None for a machine's)."""
    return None if event.machine else HUMAN_FIRST_SEEN.get(event.event)
