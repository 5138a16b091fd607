"""The contact list: the contacts a search selects (contact_search.py), in which order,
one page at a time. No HTTP in here. What it was asked for is a ListRequest
(list_request.py); what every page reads is in list_columns.py; the pages of a
substring search are searched_pages.py's.

Built to stay fast at a million contacts: every order has an index that ends in the
id, pages continue from a boundary row (keyset) instead of an OFFSET, the total is
counted up to a cap ("more than 1,000"), and on PostgreSQL a trigram index on the
generated `contacts.search_text` column serves substring search. A page is one
statement; a substring search with many matches reads a second, and a third when its
walk through the newest contacts falls short (bench/pages_bench.py measures it, and
where its time goes).
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa

from crm_app.drip.audience.contact_search import is_substring_search, matching
from crm_app.drip.audience.eligibility import not_mailed_label
from crm_app.drip.audience.list_columns import (
    boundary_keys_of,
    capped_total,
    count_cap,
    count_matches,
    rows_with_total,
    sort_keys,
)
from crm_app.drip.audience.list_request import ListRequest
from crm_app.drip.audience.searched_pages import searched_page_and_total
from crm_app.drip.common.paging import keyset_page
from crm_app.models import CONTACT_TYPES, Contact


@dataclass
class ContactRow:
    """One line of the list (plain values, not a loaded Contact)."""

    id: int
    first_name: str
    last_name: str
    email: str
    company: str
    contact_type: str
    created_at: datetime
    owner: str
    # Why the contact is never mailed ("suppressed by staff", "bounced"...), or None.
    not_mailed: str | None
    # (campaign name, campaign status) of each active enrolment.
    campaigns: list[tuple[str, str]] = field(default_factory=list)

    @property
    def full_name(self) -> str:
        return " ".join(p for p in (self.first_name, self.last_name) if p) or self.email


@dataclass
class ContactListPage:
    request: ListRequest
    rows: list[ContactRow]
    total: int  # up to LIST_COUNT_CAP (SEARCH_COUNT_CAP for a substring search)
    more_than_total: bool  # there are more than `total`
    has_next: bool
    has_prev: bool

    @property
    def next_after(self) -> int | None:
        return self.rows[-1].id if self.has_next and self.rows else None

    @property
    def prev_before(self) -> int | None:
        return self.rows[0].id if self.has_prev and self.rows else None


def _page_statement(request: ListRequest):
    """The page's statement and its order's keys: a list without a search, or searched
    for the start of a name (shorter than a substring search), walking its order's
    index. A list without a search reuses one statement per type filter and cap:
    building one costs more CPU than the database spends answering it."""
    if not request.query:
        contact_type = request.contact_type if request.contact_type in CONTACT_TYPES else ""
        statement = _unsearched_statement(contact_type, count_cap(request))
        return statement, sort_keys(request.sort)
    total = capped_total(request.query, request.contact_type, count_cap(request))
    conditions = matching(request.query, request.contact_type)
    return rows_with_total(Contact, conditions, total), sort_keys(request.sort)


@functools.cache
def _unsearched_statement(contact_type: str, cap: int) -> sa.Select:
    total = capped_total("", contact_type, cap)
    return rows_with_total(Contact, matching("", contact_type), total)


def _row(values) -> ContactRow:
    contact_id, first, last, email, company, kind, created, status, erased_at, owner, reason = (
        values[:11]
    )
    campaigns = sorted(
        tuple(line.split(":", 1)[::-1]) for line in (values[11] or "").split("\n") if line
    )
    return ContactRow(
        id=contact_id, first_name=first, last_name=last, email=email, company=company,
        contact_type=kind, created_at=created, owner=owner or "",
        not_mailed=not_mailed_label(status, reason, erased=erased_at is not None),
        campaigns=campaigns,
    )  # fmt: skip


def contact_list_page(session, request: ListRequest, *, per_page: int) -> ContactListPage:
    """One page of the list in one query (its rows, each one's owner, suppression and
    active campaigns, the capped count of matches, and on later pages the boundary
    row's keys): the same handful of index reads on page 1 and on page 2,000. A
    substring search reads its pages as searched_pages.py says."""
    page, total = _page_and_total(session, request, per_page)
    start = request.after if request.after is not None else request.before
    if not page.rows and start is not None and not _exists(session, start):
        # The contact the page starts from was deleted meanwhile: the first page.
        first = dataclasses.replace(request, after=None, before=None)
        page, total = _page_and_total(session, first, per_page)
    return _list_page(request, page, total)


def _page_and_total(session, request: ListRequest, per_page: int):
    if is_substring_search(request.query):
        return searched_page_and_total(session, request, per_page)
    after = boundary_keys_of(request.sort, request.after)
    before = boundary_keys_of(request.sort, request.before)
    statement, keys = _page_statement(request)
    page = _keyset(session, statement, keys, request, per_page, after, before)
    if page.rows:
        return page, page.rows[0][-1]
    return page, count_matches(session, request)  # past the last row: how many match


def _exists(session, contact_id: int) -> bool:
    return session.scalar(sa.select(Contact.id).where(Contact.id == contact_id)) is not None


def _keyset(session, statement, keys, request: ListRequest, per_page: int, after, before):
    return keyset_page(
        session, statement, keys, per_page=per_page, descending=request.descending,
        after=after, before=before,
    )  # fmt: skip


def _list_page(request: ListRequest, page, total: int) -> ContactListPage:
    cap = count_cap(request)
    rows = [_row(values) for values in page.rows]
    return ContactListPage(
        request, rows, min(total, cap), total > cap, page.has_next, page.has_prev
    )
