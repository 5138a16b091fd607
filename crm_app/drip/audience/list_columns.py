"""What every page of the contact list reads, whichever way it finds its contacts: the
count's caps, the keys of each order (each served by an index), the boundary row a page
continues from, and the listed columns with each contact's owner, suppression and active
campaigns. No HTTP in here."""

from __future__ import annotations

import functools

import sqlalchemy as sa
import sqlalchemy.orm

from crm_app.drip.audience.contact_search import is_substring_search, matching
from crm_app.drip.audience.list_request import ListRequest
from crm_app.drip.common.paging import count_up_to
from crm_app.models import Campaign, Contact, Enrollment, Suppression, User

# Beyond this many matches the list says "more than 1,000": an exact total would read
# every matching row, on every page, for a figure nobody needs exactly.
LIST_COUNT_CAP = 1000
# A substring search's count stops sooner: each match it counts is a row to read (the
# trigram index only says which rows may match), and "more than 100 found" already
# says to narrow the search. "All that match" counts exactly, on its confirmation.
SEARCH_COUNT_CAP = 100


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


# The contact a page starts after (or ends before), read under its own name so that it
# does not correlate with the page's rows.
_BOUNDARY = sa.orm.aliased(Contact, name="boundary")


@functools.cache
def _boundary_keys(sort: str) -> tuple[sa.ColumnElement, ...]:
    return sort_keys(sort, _BOUNDARY)


def boundary_keys_of(sort: str, contact_id: int | None) -> tuple | None:
    """The sort key values of the contact a page starts after (or ends before), as
    scalar subqueries that the page's own statement reads once (an index lookup each)
    before it walks its order's index: no statement of their own. The id, the last key,
    is the value itself."""
    if contact_id is None:
        return None
    *keys, _ = _boundary_keys(sort)
    looked_up = (sa.select(key).where(_BOUNDARY.id == contact_id).scalar_subquery() for key in keys)
    return (*looked_up, contact_id)


# The count reads the table under its own name, so that it does not correlate with the
# page's rows (made once: an alias costs more to build than the rest of the statement).
_COUNTED = sa.orm.aliased(Contact, name="counted")


def count_cap(request: ListRequest) -> int:
    return SEARCH_COUNT_CAP if is_substring_search(request.query) else LIST_COUNT_CAP


def capped_total(query: str, contact_type: str, cap: int, session=None) -> sa.ScalarSelect:
    """How many contacts match, counted up to the cap + 1 (the session: as `matching`)."""
    matches = sa.select(_COUNTED.id).where(*matching(query, contact_type, _COUNTED, session))
    return count_up_to(matches, cap + 1)


def count_matches(session, request: ListRequest) -> int:
    """How many contacts match, up to the request's cap + 1: a statement of its own."""
    cap = count_cap(request)
    total = capped_total(request.query, request.contact_type, cap, session)
    return session.scalar(sa.select(total))


def rows_with_total(contact, conditions: list, total) -> sa.Select:
    """The list's columns, and the capped count last (unless `total` is None). The
    owner, suppression and campaigns are scalar subqueries, not joins: PostgreSQL looks
    them up for the page's rows only, after the sort, where a join would be made for
    every match a search sorts (up to a thousand)."""
    counted = () if total is None else (total,)
    return sa.select(
        contact.id, contact.first_name, contact.last_name, contact.email, contact.company,
        contact.contact_type, contact.created_at, contact.email_status, contact.erased_at,
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
