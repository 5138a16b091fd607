"""The contact list: which contacts match a search, in which order, one page at a time.
No HTTP in here; the bulk actions select contacts by the same rule (`matching`).

Built to stay fast at a million contacts: every order has an index that ends in the
id, pages continue from a boundary row (keyset) instead of an OFFSET, the total is
counted up to LIST_COUNT_CAP, and on PostgreSQL a trigram index on the generated
`contacts.search_text` column serves substring search (bench/pages_bench.py measures).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa

from crm_app.drip.audience.eligibility import not_mailed_label
from crm_app.drip.common.paging import count_up_to, keyset_page
from crm_app.models import CONTACT_TYPES, Campaign, Contact, Enrollment, Suppression, User

# Beyond this many matches the list says "more than 1,000": an exact total would read
# every matching row, on every page, for a figure nobody needs exactly.
LIST_COUNT_CAP = 1000
# Shorter searches match the start of a first or last name: a trigram index needs
# three characters, and "%ab%" would read every contact.
SEARCH_MIN_SUBSTRING = 3

_LAST = sa.func.lower(Contact.last_name)
_FIRST = sa.func.lower(Contact.first_name)
# Each order of the list: its key columns, each with an index of the same columns
# (crm_app/models/contact.py), the id last so that the order is total.
SORT_KEYS: dict[str, tuple[sa.ColumnElement, ...]] = {
    "name": (_LAST, _FIRST, Contact.id),
    "email": (sa.func.lower(Contact.email), Contact.id),
    "company": (sa.func.lower(Contact.company), _LAST, _FIRST, Contact.id),
    "type": (Contact.contact_type, _LAST, _FIRST, Contact.id),
    "created": (Contact.created_at, Contact.id),
}
DEFAULT_SORT = "name"
# Orders that start with the newest or largest.
DESCENDING_BY_DEFAULT = frozenset({"created"})


def _like_pattern(text: str, *, prefix_only: bool) -> str:
    escaped = text.replace("/", "//").replace("%", "/%").replace("_", "/_")
    return f"{escaped}%" if prefix_only else f"%{escaped}%"


def search_condition(query: str) -> sa.ColumnElement | None:
    """What a search box's text matches (None: everything). Three characters or more:
    anywhere in the name, email, company, title, industry or custom fields; fewer:
    the start of the first or last name."""
    words = " ".join(query.split()).lower()
    if not words:
        return None
    if len(words) < SEARCH_MIN_SUBSTRING:
        pattern = _like_pattern(words, prefix_only=True)
        return sa.or_(_LAST.like(pattern, escape="/"), _FIRST.like(pattern, escape="/"))
    # ILIKE on PostgreSQL (the trigram index serves it), lower() LIKE lower() on SQLite.
    return Contact.search_text.ilike(_like_pattern(words, prefix_only=False), escape="/")


def matching(query: str = "", contact_type: str = "") -> list[sa.ColumnElement]:
    """The conditions of a search and a type filter: the list shows these contacts, and
    "all that match" in a bulk action means exactly these."""
    conditions = []
    search = search_condition(query)
    if search is not None:
        conditions.append(search)
    if contact_type in CONTACT_TYPES:
        conditions.append(Contact.contact_type == contact_type)
    return conditions


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
        sort = args.get("sort", "")
        sort = sort if sort in SORT_KEYS else DEFAULT_SORT
        direction = args.get("dir", "")
        descending = direction == "desc" if direction else sort in DESCENDING_BY_DEFAULT
        return cls(
            query=args.get("q", "")[:200],
            contact_type=args.get("type", "") if args.get("type") in CONTACT_TYPES else "",
            sort=sort,
            descending=descending,
            after=_positive_int(args.get("after")),
            before=_positive_int(args.get("before")),
        )

    def filters(self) -> dict[str, str]:
        """The query string of the search, filter and order (no page position)."""
        values = {"q": self.query, "type": self.contact_type}
        if self.sort != DEFAULT_SORT:
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
    total: int  # up to LIST_COUNT_CAP
    more_than_total: bool  # there are more than `total`
    has_next: bool
    has_prev: bool

    @property
    def next_after(self) -> int | None:
        return self.rows[-1].id if self.has_next and self.rows else None

    @property
    def prev_before(self) -> int | None:
        return self.rows[0].id if self.has_prev and self.rows else None


def _boundary(session, keys, contact_id: int | None) -> tuple | None:
    """The sort key values of the contact a page starts after (or ends before)."""
    if contact_id is None:
        return None
    row = session.execute(sa.select(*keys).where(Contact.id == contact_id)).first()
    return tuple(row) if row is not None else None


def _rows_query(conditions) -> sa.Select:
    return (
        sa.select(
            Contact.id,
            Contact.first_name,
            Contact.last_name,
            Contact.email,
            Contact.company,
            Contact.contact_type,
            Contact.created_at,
            Contact.email_status,
            sa.func.coalesce(sa.func.nullif(User.name, ""), User.email),
            Suppression.reason,
        )
        .outerjoin(User, User.id == Contact.owner_id)
        .outerjoin(Suppression, Suppression.email == sa.func.lower(Contact.email))
        .where(*conditions)
    )


def _active_campaigns(session, ids: list[int]) -> dict[int, list[tuple[str, str]]]:
    campaigns: dict[int, list[tuple[str, str]]] = {contact_id: [] for contact_id in ids}
    if ids:
        for contact_id, name, status in session.execute(
            sa.select(Enrollment.contact_id, Campaign.name, Campaign.status)
            .join(Campaign, Enrollment.campaign_id == Campaign.id)
            .where(Enrollment.contact_id.in_(ids), Enrollment.status == "active")
            .order_by(Enrollment.enrolled_at)
        ):
            campaigns[contact_id].append((name, status))
    return campaigns


def contact_list_page(session, request: ListRequest, *, per_page: int) -> ContactListPage:
    """One page of the list: four small queries (the boundary row, the capped count, the
    page with owners and suppressions joined, the active campaigns), whatever the depth."""
    conditions = matching(request.query, request.contact_type)
    keys = SORT_KEYS[request.sort]
    total, more = count_up_to(session, sa.select(Contact.id).where(*conditions), LIST_COUNT_CAP)
    page = keyset_page(
        session,
        _rows_query(conditions),
        keys,
        per_page=per_page,
        descending=request.descending,
        after=_boundary(session, keys, request.after),
        before=_boundary(session, keys, request.before),
    )
    campaigns = _active_campaigns(session, [row[0] for row in page.rows])
    rows = [
        ContactRow(
            id=contact_id, first_name=first, last_name=last, email=email, company=company,
            contact_type=kind, created_at=created, owner=owner or "",
            not_mailed=not_mailed_label(status, reason), campaigns=campaigns[contact_id],
        )
        for contact_id, first, last, email, company, kind, created, status, owner, reason
        in page.rows
    ]  # fmt: skip
    return ContactListPage(request, rows, total, more, page.has_next, page.has_prev)


# --- the same selection for bulk actions ---


def count_matching(session, query: str = "", contact_type: str = "") -> int:
    """The exact number of contacts a search selects (a bulk action's confirmation)."""
    return session.scalar(
        sa.select(sa.func.count(Contact.id)).where(*matching(query, contact_type))
    )


def matching_ids(
    session, query: str = "", contact_type: str = "", *, chunk_size: int = 1000
) -> Iterator[list[int]]:
    """The ids a search selects, in chunks, in id order (each chunk one indexed query
    continuing after the last id, so contacts deleted meanwhile shift nothing)."""
    conditions = matching(query, contact_type)
    last_id = 0
    while True:
        ids = list(
            session.scalars(
                sa.select(Contact.id)
                .where(*conditions, Contact.id > last_id)
                .order_by(Contact.id)
                .limit(chunk_size)
            )
        )
        if not ids:
            return
        yield ids
        last_id = ids[-1]
