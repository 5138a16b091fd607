"""The first time each event happened to a message (delivered_at, opened_at, a person's
first open...), kept with MIN semantics so replays and late events change nothing twice,
and counted in the analytics rollups in the same transaction."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime

import sqlalchemy as sa

from crm_app.drip.common.sql import in_values, is_postgres, update_rows
from crm_app.drip.reporting.daily_counts import count_first_seen_many
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


def record_first_seen(session, events: list[WebhookEvent]) -> None:
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
