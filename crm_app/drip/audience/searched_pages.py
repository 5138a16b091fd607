"""The pages of a substring search (three characters or more): sorted from its matches
when they are few, counted; with more, walked through the newest contacts or sorted from
all the matches, uncounted ("more than 100"). Each reads the ids and sort keys of the
contacts it looks at first and only the page's rows in full. No HTTP in here."""

from __future__ import annotations

import functools

import sqlalchemy as sa

from crm_app.drip.audience import contact_search
from crm_app.drip.audience.contact_search import (
    SubstringPatterns,
    contains,
    of_type,
    substring_patterns,
)
from crm_app.drip.audience.list_columns import (
    boundary_keys_of,
    count_matches,
    rows_with_total,
    sort_keys,
)
from crm_app.drip.audience.list_request import ListRequest
from crm_app.drip.common.paging import beyond, in_order, page_of_rows
from crm_app.models import Contact

# A search with more matches than SEARCH_FEW_MATCHES (so more than its count's cap: it
# says "more than 100" without counting), newest first, walks the newest contacts and
# keeps those that match, reading at most this many before it reads the matches through
# the trigram index instead. At a million contacts a page of "tanaka" (one contact in a
# hundred) is found in about 2,600 rows read in order (3 ms), where reading all its
# 10,089 matches and sorting them took 26 ms.
SEARCH_WALK_ROWS = 5000


# A substring search reads the ids and sort keys of the contacts it looks at (its
# matches, or the newest contacts it walks), sorts or filters those, and reads in full
# only the page's rows. Carrying two or three columns instead of the list's nine from
# the trigram read to the sort: "tanaka" (990 matches of 100,000) 3.6 -> 2.9 ms of the
# database's CPU a page (bench/pages_bench.py).


def _keys_labelled(sort: str) -> list[sa.Label]:
    return [key.label(f"key{n}") for n, key in enumerate(sort_keys(sort))]


def _boundary_given(sort: str) -> tuple:
    """`boundary_keys_of` of the contact whose id is given when the statement runs."""
    return boundary_keys_of(sort, sa.bindparam("boundary_id", type_=sa.Integer))


def _searched(contact, narrowed: bool) -> sa.ColumnElement:
    """`contains` with the patterns given when the statement runs (`_run`): "pattern",
    and "whole" when the pattern is narrowed to the search's rare pieces."""
    pattern = sa.bindparam("pattern", type_=sa.Text, literal_execute=True)
    whole = sa.bindparam("whole", type_=sa.Text) if narrowed else None
    return contains(contact, pattern, whole)


@functools.cache
def _matches_statement(
    narrowed: bool,
    ascending: bool,
    from_boundary: bool,
    contact_type: str,
    sort: str,
    counted: bool,
) -> sa.Select:
    """A page of a substring search sorted from its matches: the matches' keys read
    through the trigram index first, in a CTE fenced by a limit (`few_limit`, when
    `counted`: the count says whether those were all) or by OFFSET 0, so that no plan
    walks an order's index on a bad guess of how many contacts a pattern matches.
    When `counted`, each row ends with the largest id read and the count
    (`_a_walk_finds_a_page`). Built once per type filter, kind of pattern, order,
    direction and kind of page; the patterns, limits and boundary are given when it
    runs (`_run`)."""
    matches = sa.select(*_keys_labelled(sort)).where(
        _searched(Contact, narrowed), *of_type(contact_type)
    )
    if counted:
        matches = matches.limit(sa.bindparam("few_limit", type_=sa.Integer))
    matches = (matches if counted else matches.offset(0)).cte("matches")
    page = sa.select(*matches.c)
    if from_boundary:
        page = page.where(beyond(tuple(matches.c), _boundary_given(sort), ascending=ascending))
    if not counted:
        return _read_in_full(page, ascending)
    # One pass over the matches for both (two scalar subqueries would read them twice).
    tally = sa.select(
        sa.func.max(tuple(matches.c)[-1]).label("last_id_read"),
        sa.func.count().label("total"),
    ).subquery("counted")
    return _read_in_full(page, ascending, tally)


@functools.cache
def _walk_statement(
    narrowed: bool, ascending: bool, from_boundary: bool, contact_type: str
) -> sa.Select:
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
    page = sa.select(walked.c.key0, walked.c.key1).where(_searched(walked.c, narrowed))
    return _read_in_full(page, ascending)


def _read_in_full(page: sa.Select, ascending: bool, counted=None) -> sa.Select:
    """The list's rows of the contacts whose keys (the id last) `page` selects: ordered
    and cut to `rows_limit` first, then each read by its id, in the same order; the
    columns of `counted` (a one-row subquery) after the list's."""
    keys = tuple(page.selected_columns)
    page = (
        page.order_by(*in_order(keys, ascending=ascending))
        .limit(sa.bindparam("rows_limit", type_=sa.Integer))
        .subquery("page")
    )
    page_keys = tuple(page.c)
    rows = page.join(Contact, Contact.id == page_keys[-1])
    statement = rows_with_total(Contact, [], None)
    if counted is not None:
        rows = rows.join(counted, sa.true())
        statement = statement.add_columns(*counted.c)
    return statement.select_from(rows).order_by(*in_order(page_keys, ascending=ascending))


def _run(
    session,
    statement_for,
    request: ListRequest,
    patterns: SubstringPatterns,
    per_page: int,
    **params,
):
    """One page of a search's statement, built by `statement_for(narrowed, ascending,
    from_boundary)` for its patterns and the way the page reads its rows (after a
    contact, or before)."""
    backwards = request.before is not None
    boundary_id = request.before if backwards else request.after
    ascending = request.descending == backwards  # the direction the rows are read in
    statement = statement_for(patterns.whole is not None, ascending, boundary_id is not None)
    if patterns.whole is not None:
        params["whole"] = patterns.whole
    params |= {
        "pattern": patterns.index,
        "rows_limit": per_page + 1,
        "boundary_id": boundary_id,
    }
    rows = list(session.execute(statement, params))
    return page_of_rows(rows, per_page=per_page, backwards=backwards, after=request.after)


def searched_page_and_total(session, request: ListRequest, per_page: int):
    """A substring search's page: sorted from its matches when they are few (one
    statement, counted); with more, walked or sorted from all of them, uncounted."""
    patterns = substring_patterns(session, request.query)
    few = functools.partial(
        _matches_statement, contact_type=request.contact_type, sort=request.sort, counted=True
    )
    few_limit = contact_search.SEARCH_FEW_MATCHES + 1
    page = _run(session, few, request, patterns, per_page, few_limit=few_limit)
    if page.rows and page.rows[0][-1] <= contact_search.SEARCH_FEW_MATCHES:
        return page, page.rows[0][-1]
    if not page.rows and request.after is None and request.before is None:
        return page, 0  # a first page with no rows: none match
    # More matches than were read; or none beyond the boundary among those read.
    walk = not page.rows or _a_walk_finds_a_page(page.rows[0][-2], per_page)
    page = _many_matches_page(session, request, patterns, per_page, walk=walk)
    if page.rows:
        return page, contact_search.SEARCH_FEW_MATCHES + 1
    return page, count_matches(session, request)


def _a_walk_finds_a_page(last_id_read: int, per_page: int) -> bool:
    """Whether a walk through SEARCH_WALK_ROWS contacts would likely meet a page of
    matches, judged from the statement that read SEARCH_FEW_MATCHES + 1 of them. It
    reads them in the table's order (a bitmap heap scan, or a scan), which follows the
    ids as contacts are added; so about `last_id_read` contacts held those matches,
    and a walk meeting matches as often needs (page + 1) x last_id_read /
    (SEARCH_FEW_MATCHES + 1) rows. At 1,000,000 contacts "user777" (1,111 matches, the
    1,001st read near id 778,000) skips a walk of 5,000 rows that found 7 (9 ms)."""
    rows_needed = (per_page + 1) * last_id_read / (contact_search.SEARCH_FEW_MATCHES + 1)
    return rows_needed <= SEARCH_WALK_ROWS


def _many_matches_page(
    session, request: ListRequest, patterns: SubstringPatterns, per_page: int, *, walk: bool
):
    """The page of a substring search with more than SEARCH_FEW_MATCHES matches: newest
    first (or oldest) and when `walk`, walked from the boundary through at most
    SEARCH_WALK_ROWS contacts; when fewer than a page of them match (the matches sit
    elsewhere), or in any other order, sorted from all the matches."""
    if request.sort == "created" and walk:
        walk_statement = functools.partial(_walk_statement, contact_type=request.contact_type)
        page = _run(
            session, walk_statement, request, patterns, per_page, walk_rows=SEARCH_WALK_ROWS
        )
        if page.has_prev if request.before is not None else page.has_next:
            return page  # a page and one more row matched: the walk found the page
    every = functools.partial(
        _matches_statement, contact_type=request.contact_type, sort=request.sort, counted=False
    )
    return _run(session, every, request, patterns, per_page)
