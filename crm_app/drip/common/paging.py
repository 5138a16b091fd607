"""One page of a list: two queries (count, page), whatever the page size."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

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
