"""The contact list: the contacts a search selects (contact_search.py), in which order,
one page at a time. No HTTP in here.

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
import sqlalchemy.orm

from crm_app.drip.audience import contact_search
from crm_app.drip.audience.contact_search import (
    contains,
    is_substring_search,
    matching,
    of_type,
    substring_pattern,
)
from crm_app.drip.audience.eligibility import not_mailed_label
from crm_app.drip.common.paging import beyond, count_up_to, in_order, keyset_page, page_of_rows
from crm_app.models import CONTACT_TYPES, Campaign, Contact, Enrollment, Suppression, User

# Beyond this many matches the list says "more than 1,000": an exact total would read
# every matching row, on every page, for a figure nobody needs exactly.
LIST_COUNT_CAP = 1000
# A substring search's count stops sooner: each match it counts is a row to read (the
# trigram index only says which rows may match), and "more than 100 found" already
# says to narrow the search. "All that match" counts exactly, on its confirmation.
SEARCH_COUNT_CAP = 100
# A search with more matches than SEARCH_FEW_MATCHES (so more than its count's cap: it
# says "more than 100" without counting), newest first, walks the newest contacts and
# keeps those that match, reading at most this many before it reads the matches through
# the trigram index instead. At a million contacts a page of "tanaka" (one contact in a
# hundred) is found in about 2,600 rows read in order (3 ms), where reading all its
# 10,089 matches and sorting them took 26 ms.
SEARCH_WALK_ROWS = 5000


_SORT_KEYS = {
    "name": lambda c: (sa.func.lower(c.last_name), sa.func.lower(c.first_name), c.id),
    "email": lambda c: (sa.func.lower(c.email), c.id),
    "company": lambda c: (
        sa.func.lower(c.company), sa.func.lower(c.last_name), sa.func.lower(c.first_name), c.id
    ),
    "type": lambda c: (
        c.contact_type, sa.func.lower(c.last_name), sa.func.lower(c.first_name), c.id
    ),
    "created": lambda c: (c.created_at, c.id),
}  # fmt: skip


@functools.cache
def _contact_sort_keys(sort: str) -> tuple[sa.ColumnElement, ...]:
    return _SORT_KEYS[sort](Contact)


def sort_keys(sort: str, contact=Contact) -> tuple[sa.ColumnElement, ...]:
    """The key columns of an order of the list, each order with an index of the same
    columns (crm_app/models/contact.py), the id last so that the order is total. Built
    once per order for the table itself (SQL expressions are immutable and shared)."""
    return _contact_sort_keys(sort) if contact is Contact else _SORT_KEYS[sort](contact)


SORTS = ("name", "email", "company", "type", "created")
# Without a search the list is in name order; a search lists the newest matches first:
# that order is unrelated to what matches, so reading it until a page is full costs
# about the same for any search and any table size (see _many_matches_page).
DEFAULT_SORT, DEFAULT_SEARCH_SORT = "name", "created"
# Orders that start with the newest or largest.
DESCENDING_BY_DEFAULT = frozenset({"created"})


@dataclass(frozen=True)
class ListRequest:
    """What the list was asked for: the filters, the order and where the page starts
    (after or before the contact with that id; neither: the first page)."""

    query: str = ""
    contact_type: str = ""
    sort: str = DEFAULT_SORT
    descending: bool = False
    after: int | None = None
    before: int | None = None

    @classmethod
    def parse(cls, args) -> ListRequest:
        """From a query string's values (a dict-like of strings); unknown values fall
        back to the defaults rather than failing."""
        query = args.get("q", "")[:200]
        sort = args.get("sort", "")
        sort = sort if sort in SORTS else default_sort(query)
        direction = args.get("dir", "")
        descending = direction == "desc" if direction else sort in DESCENDING_BY_DEFAULT
        return cls(
            query=query,
            contact_type=args.get("type", "") if args.get("type") in CONTACT_TYPES else "",
            sort=sort,
            descending=descending,
            after=_positive_int(args.get("after")),
            before=_positive_int(args.get("before")),
        )

    def filters(self) -> dict[str, str]:
        """The query string of the search, filter and order (no page position)."""
        values = {"q": self.query, "type": self.contact_type}
        if self.sort != default_sort(self.query):
            values["sort"] = self.sort
        if self.descending != (self.sort in DESCENDING_BY_DEFAULT):
            values["dir"] = "desc" if self.descending else "asc"
        return {key: value for key, value in values.items() if value}

    def sorted_by(self, sort: str) -> dict[str, str]:
        """The query string for a column heading: that order, or the same one reversed."""
        descending = sort in DESCENDING_BY_DEFAULT
        if sort == self.sort:
            descending = not self.descending
        values = {"q": self.query, "type": self.contact_type, "sort": sort}
        values["dir"] = "desc" if descending else "asc"
        return {key: value for key, value in values.items() if value}


def default_sort(query: str) -> str:
    return DEFAULT_SEARCH_SORT if query.strip() else DEFAULT_SORT


def _positive_int(value: str | None) -> int | None:
    return int(value) if value and value.isdigit() and 0 < int(value) < 2**63 else None


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


# The contact a page starts after (or ends before), read under its own name so that it
# does not correlate with the page's rows.
_BOUNDARY = sa.orm.aliased(Contact, name="boundary")


@functools.cache
def _boundary_keys(sort: str) -> tuple[sa.ColumnElement, ...]:
    return sort_keys(sort, _BOUNDARY)


def _boundary(sort: str, contact_id: int | None) -> tuple | None:
    """The sort key values of the contact a page starts after (or ends before), as
    scalar subqueries that the page's own statement reads once (an index lookup each)
    before it walks its order's index: no statement of their own. The id, the last key,
    is the value itself."""
    if contact_id is None:
        return None
    *keys, _ = _boundary_keys(sort)
    looked_up = (sa.select(key).where(_BOUNDARY.id == contact_id).scalar_subquery() for key in keys)
    return (*looked_up, contact_id)


def _campaigns_of(contact) -> sa.ScalarSelect:
    """The contact's active campaigns as "status:name" lines (one column, no extra query)."""
    return (
        sa.select(sa.func.aggregate_strings(Campaign.status + ":" + Campaign.name, "\n"))
        .select_from(Enrollment)
        .join(Campaign, Campaign.id == Enrollment.campaign_id)
        .where(Enrollment.contact_id == contact.id, Enrollment.status == "active")
        .correlate_except(Enrollment, Campaign)
        .scalar_subquery()
    )


# The count reads the table under its own name, so that it does not correlate with the
# page's rows (made once: an alias costs more to build than the rest of the statement).
_COUNTED = sa.orm.aliased(Contact, name="counted")


def count_cap(request: ListRequest) -> int:
    return SEARCH_COUNT_CAP if is_substring_search(request.query) else LIST_COUNT_CAP


def _capped_total(query: str, contact_type: str, cap: int) -> sa.ScalarSelect:
    """How many contacts match, counted up to the cap + 1."""
    matches = sa.select(_COUNTED.id).where(*matching(query, contact_type, _COUNTED))
    return count_up_to(matches, cap + 1)


def _page_statement(request: ListRequest):
    """The page's statement and its order's keys: a list without a search, or searched
    for the start of a name (shorter than a substring search), walking its order's
    index. A list without a search reuses one statement per type filter and cap:
    building one costs more CPU than the database spends answering it."""
    if not request.query:
        contact_type = request.contact_type if request.contact_type in CONTACT_TYPES else ""
        statement = _unsearched_statement(contact_type, count_cap(request))
        return statement, sort_keys(request.sort)
    total = _capped_total(request.query, request.contact_type, count_cap(request))
    conditions = matching(request.query, request.contact_type)
    return _rows_with_total(Contact, conditions, total), sort_keys(request.sort)


@functools.cache
def _unsearched_statement(contact_type: str, cap: int) -> sa.Select:
    total = _capped_total("", contact_type, cap)
    return _rows_with_total(Contact, matching("", contact_type), total)


# A substring search reads the ids and sort keys of the contacts it looks at (its
# matches, or the newest contacts it walks), sorts or filters those, and reads in full
# only the page's rows. Carrying two or three columns instead of the list's nine from
# the trigram read to the sort: "tanaka" (990 matches of 100,000) 3.6 -> 2.9 ms of the
# database's CPU a page (bench/pages_bench.py).


def _keys_labelled(sort: str) -> list[sa.Label]:
    return [key.label(f"key{n}") for n, key in enumerate(sort_keys(sort))]


def _boundary_given(sort: str) -> tuple:
    """`_boundary` of the contact whose id is given when the statement runs."""
    return _boundary(sort, sa.bindparam("boundary_id", type_=sa.Integer))


@functools.cache
def _matches_statement(
    contact_type: str, sort: str, ascending: bool, from_boundary: bool, counted: bool
) -> sa.Select:
    """A page of a substring search sorted from its matches: the matches' keys read
    through the trigram index first, in a CTE fenced by a limit (`few_limit`, when
    `counted`: the count says whether those were all) or by OFFSET 0, so that no plan
    walks an order's index on a bad guess of how many contacts a pattern matches.
    Built once per type filter, order, direction and kind of page; the pattern, limits
    and boundary are given when it runs (`_run`)."""
    pattern = sa.bindparam("pattern", type_=sa.Text, literal_execute=True)
    matches = sa.select(*_keys_labelled(sort)).where(
        contains(Contact, pattern), *of_type(contact_type)
    )
    if counted:
        matches = matches.limit(sa.bindparam("few_limit", type_=sa.Integer))
    matches = (matches if counted else matches.offset(0)).cte("matches")
    page = sa.select(*matches.c)
    if from_boundary:
        page = page.where(beyond(tuple(matches.c), _boundary_given(sort), ascending=ascending))
    total = sa.select(sa.func.count()).select_from(matches).scalar_subquery()
    return _read_in_full(page, ascending, total if counted else None)


@functools.cache
def _walk_statement(contact_type: str, ascending: bool, from_boundary: bool) -> sa.Select:
    """A page of a substring search in the order contacts were added: at most
    `walk_rows` contacts from the boundary on in that order (their keys and search
    text), and of those the ones that match. The same order outside: PostgreSQL knows
    the walk's rows come in it, sorts nothing and stops the walk once a page matched."""
    keys = sort_keys("created")
    walked = sa.select(*_keys_labelled("created"), Contact.search_text)
    walked = walked.where(*of_type(contact_type))
    if from_boundary:
        walked = walked.where(beyond(keys, _boundary_given("created"), ascending=ascending))
    walked = (
        walked.order_by(*in_order(keys, ascending=ascending))
        .limit(sa.bindparam("walk_rows", type_=sa.Integer))
        .subquery("walked")
    )
    pattern = sa.bindparam("pattern", type_=sa.Text, literal_execute=True)
    page = sa.select(walked.c.key0, walked.c.key1).where(contains(walked.c, pattern))
    return _read_in_full(page, ascending)


def _read_in_full(page: sa.Select, ascending: bool, total=None) -> sa.Select:
    """The list's rows of the contacts whose keys (the id last) `page` selects: ordered
    and cut to `rows_limit` first, then each read by its id, in the same order."""
    keys = tuple(page.selected_columns)
    page = (
        page.order_by(*in_order(keys, ascending=ascending))
        .limit(sa.bindparam("rows_limit", type_=sa.Integer))
        .subquery("page")
    )
    page_keys = tuple(page.c)
    return (
        _rows_with_total(Contact, [], total)
        .select_from(page.join(Contact, Contact.id == page_keys[-1]))
        .order_by(*in_order(page_keys, ascending=ascending))
    )


def _run(session, statement_for, request: ListRequest, per_page: int, **params):
    """One page of a search's statement, built by `statement_for(ascending,
    from_boundary)` for the way the page reads its rows (after a contact, or before)."""
    backwards = request.before is not None
    boundary_id = request.before if backwards else request.after
    ascending = request.descending == backwards  # the direction the rows are read in
    statement = statement_for(ascending, boundary_id is not None)
    params |= {
        "pattern": substring_pattern(request.query),
        "rows_limit": per_page + 1,
        "boundary_id": boundary_id,
    }
    rows = list(session.execute(statement, params))
    return page_of_rows(rows, per_page=per_page, backwards=backwards, after=request.after)


def _rows_with_total(contact, conditions: list, total) -> sa.Select:
    """The list's columns, and the capped count last (unless `total` is None). The
    owner, suppression and campaigns are scalar subqueries, not joins: PostgreSQL looks
    them up for the page's rows only, after the sort, where a join would be made for
    every match a search sorts (up to a thousand)."""
    counted = () if total is None else (total,)
    return sa.select(
        contact.id, contact.first_name, contact.last_name, contact.email, contact.company,
        contact.contact_type, contact.created_at, contact.email_status,
        _owner_of(contact), _suppression_of(contact), _campaigns_of(contact), *counted,
    ).where(*conditions)  # fmt: skip


def _owner_of(contact) -> sa.ScalarSelect:
    return (
        sa.select(sa.func.coalesce(sa.func.nullif(User.name, ""), User.email))
        .where(User.id == contact.owner_id)
        .correlate_except(User)
        .scalar_subquery()
    )


def _suppression_of(contact) -> sa.ScalarSelect:
    return (
        sa.select(Suppression.reason)
        .where(Suppression.email == sa.func.lower(contact.email))
        .correlate_except(Suppression)
        .scalar_subquery()
    )


def _row(values) -> ContactRow:
    contact_id, first, last, email, company, kind, created, status, owner, reason = values[:10]
    campaigns = sorted(
        tuple(line.split(":", 1)[::-1]) for line in (values[10] or "").split("\n") if line
    )
    return ContactRow(
        id=contact_id, first_name=first, last_name=last, email=email, company=company,
        contact_type=kind, created_at=created, owner=owner or "",
        not_mailed=not_mailed_label(status, reason), campaigns=campaigns,
    )  # fmt: skip


def contact_list_page(session, request: ListRequest, *, per_page: int) -> ContactListPage:
    """One page of the list in one query (its rows, each one's owner, suppression and
    active campaigns, the capped count of matches, and on later pages the boundary
    row's keys): the same handful of index reads on page 1 and on page 2,000. A
    substring search first tries its few matches (`_matches_statement`, counted); with more,
    it reads `_many_matches_page`."""
    page, total = _page_and_total(session, request, per_page)
    start = request.after if request.after is not None else request.before
    if not page.rows and start is not None and not _exists(session, start):
        # The contact the page starts from was deleted meanwhile: the first page.
        first = dataclasses.replace(request, after=None, before=None)
        page, total = _page_and_total(session, first, per_page)
    return _list_page(request, page, total)


def _page_and_total(session, request: ListRequest, per_page: int):
    if is_substring_search(request.query):
        return _searched_page_and_total(session, request, per_page)
    after = _boundary(request.sort, request.after)
    before = _boundary(request.sort, request.before)
    statement, keys = _page_statement(request)
    page = _keyset(session, statement, keys, request, per_page, after, before)
    if page.rows:
        return page, page.rows[0][-1]
    return page, _count(session, request)  # past the last row: how many match


def _searched_page_and_total(session, request: ListRequest, per_page: int):
    """A substring search's page: sorted from its matches when they are few (one
    statement, counted); with more, walked or sorted from all of them, uncounted."""
    few = functools.partial(_matches_statement, request.contact_type, request.sort, counted=True)
    page = _run(session, few, request, per_page, few_limit=contact_search.SEARCH_FEW_MATCHES + 1)
    if page.rows and page.rows[0][-1] <= contact_search.SEARCH_FEW_MATCHES:
        return page, page.rows[0][-1]
    if not page.rows and request.after is None and request.before is None:
        return page, 0  # a first page with no rows: none match
    # More matches than were read; or none beyond the boundary among those read.
    page = _many_matches_page(session, request, per_page)
    if page.rows:
        return page, contact_search.SEARCH_FEW_MATCHES + 1
    return page, _count(session, request)


def _count(session, request: ListRequest) -> int:
    cap = count_cap(request)
    return session.scalar(sa.select(_capped_total(request.query, request.contact_type, cap)))


def _many_matches_page(session, request: ListRequest, per_page: int):
    """The page of a substring search with more than SEARCH_FEW_MATCHES matches: newest
    first (or oldest), walked from the boundary through at most SEARCH_WALK_ROWS
    contacts; when fewer than a page of them match (the matches sit elsewhere), or in
    any other order, sorted from all the matches."""
    if request.sort == "created":
        walk = functools.partial(_walk_statement, request.contact_type)
        page = _run(session, walk, request, per_page, walk_rows=SEARCH_WALK_ROWS)
        if page.has_prev if request.before is not None else page.has_next:
            return page  # a page and one more row matched: the walk found the page
    every = functools.partial(_matches_statement, request.contact_type, request.sort, counted=False)
    return _run(session, every, request, per_page)


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
