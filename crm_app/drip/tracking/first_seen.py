"""The first time each event happened to a message (delivered_at, opened_at, a person's
first open...), kept with MIN semantics so replays and late events change nothing twice,
and counted in the analytics rollups in the same transaction."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache

import sqlalchemy as sa

from crm_app.drip.common.sql import in_named_values, is_postgres, update_rows
from crm_app.drip.reporting.daily_counts import FirstMoved
from crm_app.drip.tracking.engagement import HUMAN_FIRST_SEEN, human_column
from crm_app.drip.tracking.event_parsing import WebhookEvent
from crm_app.models import Message

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


@cache
def _current_statement(postgres: bool) -> sa.Select:
    """The messages' first-seen times, locked (built once; every webhook batch reads it)."""
    messages = Message.__table__
    query = (
        sa.select(
            messages.c.id,
            messages.c.campaign_id,
            messages.c.sent_at,
            *(messages.c[c] for c in FIRST_SEEN_COLUMNS),
        )
        .where(in_named_values(postgres, messages.c.id, "ids"))
        .order_by(messages.c.id)
    )
    if postgres:
        # NO KEY UPDATE (the update below changes no key), in id order: two requests on
        # the same messages (SendGrid posts several batches at once) wait for each other
        # instead of deadlocking, and neither waits on the KEY SHARE locks that rows
        # referencing a message take (FOR UPDATE would).
        query = query.with_for_update(key_share=True)
    return query


@dataclass
class FirstSeenChanges:
    """What a batch changed of the first-seen times, for the analytics rollups
    (`count_first_seen_many`, `move_first_days`, which the caller runs last: their
    counters are shared by every request, and their row locks are held until the commit)."""

    first: dict[str, set[int]] = field(default_factory=dict)  # column -> messages
    moved: list[FirstMoved] = field(default_factory=list)  # sent messages' earlier times


def record_first_seen(session, events: list[WebhookEvent]) -> FirstSeenChanges:
    """Per message and column keep the earliest time: replays and late events change
    nothing twice. Returns the messages seen for the first time and the sent ones whose
    time moved earlier."""
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
        return FirstSeenChanges()
    # The current first-seen times of these messages, locked (PostgreSQL; SQLite's write
    # lock is ours since the events were stored), then ONE update of every column that
    # moves: first times (the caller counts them in the analytics rollups) and
    # earlier times for events that arrived late.
    messages = Message.__table__
    ids = list({message_id for _, message_id in earliest})
    current, sent = {}, {}
    for row in session.execute(_current_statement(is_postgres(session)), {"ids": ids}).all():
        current[row.id] = dict(zip(FIRST_SEEN_COLUMNS, row[3:], strict=True))
        sent[row.id] = (row.campaign_id, row.sent_at)
    moved: dict[int, dict[str, datetime]] = defaultdict(dict)
    changes = FirstSeenChanges(first=defaultdict(set))
    for (column, message_id), at in earliest.items():
        if message_id not in current:
            continue
        seen = current[message_id][column]
        if seen is None:
            changes.first[column].add(message_id)
        elif at >= seen:
            continue
        elif sent[message_id][1] is not None:
            campaign_id, sent_at = sent[message_id]
            changes.moved.append(FirstMoved(campaign_id, sent_at, column, seen, at))
        moved[message_id][column] = at
    rows = [{"id": i, **(current[i] | times)} for i, times in moved.items()]
    update_rows(
        session,
        messages,
        rows,
        values=lambda r: {name: getattr(r, name) for name in FIRST_SEEN_COLUMNS},
        returning=False,
    )
    return changes
