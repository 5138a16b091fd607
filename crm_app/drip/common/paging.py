"""Pages of a list: by number (count, then OFFSET) for short lists, or from a boundary
row (keyset) with a capped count for lists that grow without limit."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import sqlalchemy as sa

T = TypeVar("T")


@dataclass
class Page(Generic[T]):
    items: list[T]
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


def paginate(session, statement: sa.Select, *, page: int, per_page: int) -> Page:
    """Run `statement` (ordered) for one page; an out-of-range page shows the nearest one."""
    per_page = max(1, per_page)
    counted = (
        statement.order_by(None)
        .with_only_columns(sa.literal(1), maintain_column_froms=True)
        .subquery()
    )
    total = session.scalar(sa.select(sa.func.count()).select_from(counted)) or 0
    page = min(max(1, page), max(1, -(-total // per_page)))
    items = list(session.scalars(statement.offset((page - 1) * per_page).limit(per_page)))
    return Page(items, total, page, per_page)


def count_up_to(statement: sa.Select, limit: int) -> sa.ScalarSelect:
    """The number of rows of `statement`, counted up to `limit` (a scalar subquery, to
    select on its own or beside other columns). "More than 1,000" costs 1,001 index
    entries; an exact total would read every row."""
    limited = (
        statement.order_by(None)
        .with_only_columns(sa.literal(1), maintain_column_froms=True)
        .limit(limit)
        .subquery()
    )
    return sa.select(sa.func.count()).select_from(limited).scalar_subquery()


@dataclass
class KeysetPage:
    """One page read from a boundary row on (keyset paging): rows, and whether there
    are pages on either side."""

    rows: list[sa.Row]
    has_next: bool
    has_prev: bool


def keyset_page(
    session,
    statement: sa.Select,
    keys: Sequence[sa.ColumnElement],
    *,
    per_page: int,
    descending: bool = False,
    after: Sequence | None = None,
    before: Sequence | None = None,
) -> KeysetPage:
    """The page of `statement` in the order of `keys` (the last key unique: an id) that
    follows the row whose key values are `after`, or precedes `before` (the first page
    with neither). A key value is a value, or an SQL expression that gives it (such as
    a scalar subquery reading the boundary row). Reads per_page + 1 rows from an index
    on `keys`, however deep the page: OFFSET would read and drop every row before it."""
    backwards = before is not None
    ascending = descending == backwards  # the direction the rows are read in
    statement = statement.order_by(*in_order(keys, ascending=ascending))
    boundary = before if backwards else after
    if boundary is not None:
        statement = statement.where(beyond(keys, boundary, ascending=ascending))
    rows = list(session.execute(statement.limit(per_page + 1)))
    return page_of_rows(rows, per_page=per_page, backwards=backwards, after=after)


def page_of_rows(
    rows: list[sa.Row], *, per_page: int, backwards: bool, after: Sequence | None
) -> KeysetPage:
    """A page from the per_page + 1 rows read from its boundary on (read in reverse
    when `backwards`, that is before a row): one more than a page says there is more."""
    more = len(rows) > per_page
    rows = rows[:per_page]
    if backwards:
        rows.reverse()
        return KeysetPage(rows, has_next=True, has_prev=more)
    return KeysetPage(rows, has_next=more, has_prev=after is not None)


def in_order(keys: Sequence[sa.ColumnElement], *, ascending: bool) -> list[sa.ColumnElement]:
    """The ORDER BY of `keys` read in one direction."""
    return [key.asc() if ascending else key.desc() for key in keys]


def beyond(
    keys: Sequence[sa.ColumnElement], boundary: Sequence, *, ascending: bool
) -> sa.ColumnElement:
    """The rows that come after the boundary's key values when read in that direction."""
    row = sa.tuple_(*keys)
    values = sa.tuple_(*(_value(v, k) for k, v in zip(keys, boundary, strict=True)))
    return row > values if ascending else row < values


def _value(value: Any, key: sa.ColumnElement) -> sa.ColumnElement:
    return value if isinstance(value, sa.ColumnElement) else sa.literal(value, key.type)
