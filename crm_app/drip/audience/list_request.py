"""What the contact list was asked for: its search, type filter, order and where the
page starts, read from a query string and written back into links. No HTTP in here."""

from __future__ import annotations

from dataclasses import dataclass

from crm_app.models import CONTACT_TYPES

SORTS = ("name", "email", "company", "type", "created")
# Without a search the list is in name order; a search lists the newest matches first:
# that order is unrelated to what matches, so reading it until a page is full costs
# about the same for any search and any table size (searched_pages.py).
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
