"""The analytics rollups, maintained on write: campaign_daily_counts (per campaign, step
and UTC day sent: sent, delivered, opened...) and campaign_daily_firsts (first opens and
clicks per day they happened, by the day their email was sent).

A rollup row always equals the GROUP BY over `messages` it stands for (`rebuild` computes
that, and the tests compare). Every write that changes a counted column adds its share in
the same transaction, computed from the rows it just changed:

- a message recorded `sent` (delivery, an admin's "mark sent", the webhook's `processed`
  for an in-doubt one) adds itself with whatever first events it already has;
- a first-seen column set from NULL (the webhook; our own unsubscribe link) adds to the
  day its email was sent, if it was (an event before the send is counted with the send);
- a first open or click moved earlier, to another day, by an event that arrived late
  moves its count in campaign_daily_firsts from the old day to the new one
  (`move_first_days`; campaign_daily_counts is keyed by the day sent, which stays);
- a deleted contact's messages (they go with it, by cascade) take back all they added,
  before they go (`uncount_contact`).

So a range of a year reads a few thousand rollup rows instead of a million messages.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from functools import cache, lru_cache

import sqlalchemy as sa

from crm_app.drip.common.sql import (
    add_count_rows,
    add_counts,
    count_where,
    counts_upsert,
    in_named_values,
)
from crm_app.models import Message
from crm_app.models.daily_counts import CampaignDailyCounts, CampaignDailyFirsts

COUNTS = CampaignDailyCounts.__table__
FIRSTS = CampaignDailyFirsts.__table__
# The rollup's count -> the messages column whose first value it counts (sent: sent_at).
COUNTED_COLUMNS = {
    "sent": "sent_at",
    "delivered": "delivered_at",
    "opened": "opened_at",
    "clicked": "clicked_at",
    "bounced": "bounced_at",
    "spam_reports": "spam_reported_at",
    "unsubscribed": "unsubscribed_at",
    "human_opened": "human_opened_at",
    "human_clicked": "human_clicked_at",
}
FIELD_OF_COLUMN = {column: name for name, column in COUNTED_COLUMNS.items()}
FIRSTS_FIELDS = ("opened", "clicked")


def day_of(column, dialect_name: str):
    """The UTC calendar day of a UTCDateTime column (stored naive UTC on both databases)."""
    if dialect_name == "postgresql":
        return sa.cast(column, sa.Date)
    return sa.func.date(column)  # SQLite: 'YYYY-MM-DD', how its Date columns are stored


def step_key():
    # NULL (a removed step) as 0: a key column cannot be NULL, and on PostgreSQL a GROUP
    # BY over the bare nullable column would not match ON CONFLICT's key.
    return sa.func.coalesce(Message.step_id, sa.literal_column("0"))


def _counts_select(
    dialect: str, fields: Iterable[str], scope: list, tallies: list | None = None
) -> sa.Select:
    fields = list(fields)
    key = (Message.campaign_id, step_key(), day_of(Message.sent_at, dialect))
    columns = tallies or [
        count_where(Message.__table__.c[COUNTED_COLUMNS[name]].is_not(None)) for name in fields
    ]
    return sa.select(*key, *columns).where(Message.sent_at.is_not(None), *scope).group_by(*key)


def _firsts_select(dialect: str, field: str, scope: list, sign: int = 1) -> sa.Select:
    column = Message.__table__.c[COUNTED_COLUMNS[field]]
    key = (Message.campaign_id, day_of(Message.sent_at, dialect), day_of(column, dialect))
    tally = sa.func.count() if sign > 0 else -sa.func.count()
    return (
        sa.select(*key, tally)
        .where(Message.sent_at.is_not(None), column.is_not(None), *scope)
        .group_by(*key)
    )


# The rollups' upserts run for every recorded chunk and webhook batch: each is built once
# per database and columns, its messages bound by name (building one cost more CPU than
# running it).

_COUNTS_KEY = ("campaign_id", "step_id", "day")
_FIRSTS_KEY = ("campaign_id", "sent_day", "day")


@cache
def _add_statements(dialect: str, fields: tuple[str, ...]) -> tuple[sa.Insert, ...]:
    scope = [in_named_values(dialect == "postgresql", Message.id, "message_ids")]
    source = _counts_select(dialect, fields, scope)
    statements = [counts_upsert(dialect, COUNTS, source, key=_COUNTS_KEY, counts=fields)]
    for field in (f for f in fields if f in FIRSTS_FIELDS):
        source = _firsts_select(dialect, field, scope)
        statements.append(counts_upsert(dialect, FIRSTS, source, key=_FIRSTS_KEY, counts=(field,)))
    return tuple(statements)


def _add(session, message_ids: list[int], fields: list[str]) -> None:
    dialect = session.get_bind().dialect.name
    for statement in _add_statements(dialect, tuple(fields)):
        session.execute(statement, {"message_ids": message_ids})


def count_sent(session, message_ids: Iterable[int]) -> None:
    """These messages were just recorded `sent`: each adds itself, with its first events."""
    ids = list(message_ids)
    if ids:
        _add(session, ids, list(COUNTED_COLUMNS))


def count_first_seen(session, column: str, message_ids: Iterable[int]) -> None:
    """`column` (delivered_at, opened_at...) was just set from NULL on these messages."""
    ids = list(message_ids)
    if ids:
        _add(session, ids, [FIELD_OF_COLUMN[column]])


@lru_cache(maxsize=64)
def _first_seen_statements(dialect: str, columns: tuple[str, ...]) -> tuple[sa.Insert, ...]:
    """count_first_seen_many's upserts: every message as `everyone`, each column's as
    `ids_<column>`. One per set of columns (sorted; a batch's own few), at most 64 kept."""
    postgres = dialect == "postgresql"
    ids_of = {column: in_named_values(postgres, Message.id, f"ids_{column}") for column in columns}
    fields = tuple(FIELD_OF_COLUMN[column] for column in columns)
    tallies = [count_where(ids_of[column]) for column in columns]
    everyone = [in_named_values(postgres, Message.id, "everyone")]
    source = _counts_select(dialect, fields, everyone, tallies)
    statements = [counts_upsert(dialect, COUNTS, source, key=_COUNTS_KEY, counts=fields)]
    for column, field in zip(columns, fields, strict=True):
        if field in FIRSTS_FIELDS:
            source = _firsts_select(dialect, field, [ids_of[column]])
            statements.append(
                counts_upsert(dialect, FIRSTS, source, key=_FIRSTS_KEY, counts=(field,))
            )
    return tuple(statements)


def count_first_seen_many(session, first: dict[str, Iterable[int]]) -> None:
    """count_first_seen for several columns at once (a webhook batch): one statement for
    campaign_daily_counts whatever the columns, one per first opens / first clicks."""
    first = {column: list(ids) for column, ids in first.items() if ids}
    if not first:
        return
    dialect = session.get_bind().dialect.name
    values = {f"ids_{column}": ids for column, ids in first.items()}
    values["everyone"] = list({i for ids in first.values() for i in ids})
    for statement in _first_seen_statements(dialect, tuple(sorted(first))):
        session.execute(statement, values)


@cache
def _subtract_statements(dialect: str) -> tuple[sa.Insert, ...]:
    """_add_statements' inverse over every count: the messages bound as `message_ids`
    take back what they added (the same GROUP BY, negated)."""
    scope = [in_named_values(dialect == "postgresql", Message.id, "message_ids")]
    fields = tuple(COUNTED_COLUMNS)
    tallies = [
        -count_where(Message.__table__.c[COUNTED_COLUMNS[name]].is_not(None)) for name in fields
    ]
    source = _counts_select(dialect, fields, scope, tallies)
    statements = [counts_upsert(dialect, COUNTS, source, key=_COUNTS_KEY, counts=fields)]
    for field in FIRSTS_FIELDS:
        source = _firsts_select(dialect, field, scope, sign=-1)
        statements.append(counts_upsert(dialect, FIRSTS, source, key=_FIRSTS_KEY, counts=(field,)))
    return tuple(statements)


def uncount_contact(session, contact_id: int) -> None:
    """The contact is about to be deleted, and its messages with it (by cascade, which
    no count follows): each takes back its share of both rollups first. Rows left at
    zero stay, as a moved first open leaves them."""
    # Locked first, in id order (as the webhook locks them): a write counting one of them
    # meanwhile (recorded sent, a first event) commits before the subtraction reads it,
    # so it is taken back too, or waits for the delete and then updates, so counts, none.
    ids = list(
        session.scalars(
            sa.select(Message.id)
            .where(Message.contact_id == contact_id)
            .order_by(Message.id)
            .with_for_update()
        )
    )
    if not ids:
        return
    for statement in _subtract_statements(session.get_bind().dialect.name):
        session.execute(statement, {"message_ids": ids})


@dataclass(frozen=True)
class FirstMoved:
    """A sent message's first-seen `column` moved from `before` to the earlier `after`."""

    campaign_id: int
    sent_at: datetime
    column: str
    before: datetime
    after: datetime


def move_first_days(session, moves: Iterable[FirstMoved]) -> None:
    """First opens and clicks seen earlier than before, on another UTC day: one count
    each leaves the old day's campaign_daily_firsts row for the new day's (one statement)."""
    deltas: dict[tuple, dict[str, int]] = defaultdict(lambda: dict.fromkeys(FIRSTS_FIELDS, 0))
    for move in moves:
        field = FIELD_OF_COLUMN[move.column]
        if field not in FIRSTS_FIELDS or move.before.date() == move.after.date():
            continue
        sent_day = move.sent_at.date()
        deltas[(move.campaign_id, sent_day, move.before.date())][field] -= 1
        deltas[(move.campaign_id, sent_day, move.after.date())][field] += 1
    rows = [dict(zip(_FIRSTS_KEY, key, strict=True)) | counts for key, counts in deltas.items()]
    add_count_rows(session, FIRSTS, rows, key=_FIRSTS_KEY, counts=FIRSTS_FIELDS)


def rebuild(session) -> None:
    """Both rollups again from `messages` (after data was written behind the app's back)."""
    dialect = session.get_bind().dialect.name
    session.execute(sa.delete(COUNTS))
    session.execute(sa.delete(FIRSTS))
    fields = list(COUNTED_COLUMNS)
    session.execute(
        COUNTS.insert().from_select(
            ["campaign_id", "step_id", "day", *fields], _counts_select(dialect, fields, [])
        )
    )
    for field in FIRSTS_FIELDS:
        add_counts(
            session, FIRSTS, _firsts_select(dialect, field, []), key=_FIRSTS_KEY, counts=(field,)
        )
