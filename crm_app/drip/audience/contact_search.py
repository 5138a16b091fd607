"""Which contacts a search selects: the search box's rule, shared by the contact list
(contact_list.py), its bulk actions, the CSV export, the API and the contact picker.
No HTTP in here.

Three characters or more match anywhere in the lower-cased `contacts.search_text`
(served on PostgreSQL by a trigram index); fewer match the start of a name.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import sqlalchemy as sa

from crm_app.drip.audience.search_trigrams import common_trigrams, index_pattern
from crm_app.drip.common.sql import in_values
from crm_app.models import CONTACT_TYPES, Contact

# Shorter searches match the start of a first or last name: a trigram index needs
# three characters, and "%ab%" would read every contact.
SEARCH_MIN_SUBSTRING = 3
# A substring search first reads its matches, up to this many. With no more, the page
# is sorted from those (one statement): the planner's guess of how many contacts a pattern
# matches comes from a sample (ANALYZE), and one bad guess made it walk the whole
# "newest first" index for a rare name (27 ms at 100,000 contacts, one run in eight).
# With more, matches are dense enough that walking an order mostly finds a page in a
# few thousand rows (searched_pages.SEARCH_WALK_ROWS). Not more than 1,000: every search
# with more matches reads this many first for nothing ("partners", one contact in
# eight at 100,000: 6.1 -> 8.6 ms of the database's time at 2,000).
SEARCH_FEW_MATCHES = 1000


def _like_pattern(text: str, *, prefix_only: bool) -> str:
    escaped = text.replace("/", "//").replace("%", "/%").replace("_", "/_")
    return f"{escaped}%" if prefix_only else f"%{escaped}%"


def _search_words(query: str) -> str:
    return " ".join(query.split()).lower()


def is_substring_search(query: str) -> bool:
    return len(_search_words(query)) >= SEARCH_MIN_SUBSTRING


@dataclass(frozen=True)
class SubstringPatterns:
    """What a substring search gives the database (`contains`' parameters)."""

    index: str  # the LIKE pattern the trigram index reads
    whole: str | None  # the whole search, checked on each row, when `index` is a part of it


def substring_patterns(session, query: str) -> SubstringPatterns:
    """A substring search's patterns: the whole search, or only its pieces that are rare
    among the contacts and the whole search checked on each row (search_trigrams;
    without a session, the whole search)."""
    words = _search_words(query)
    common = frozenset() if session is None else common_trigrams(session)
    narrowed = index_pattern(words, common)
    if narrowed is None:
        return SubstringPatterns(_like_pattern(words, prefix_only=False), None)
    return SubstringPatterns(narrowed, words)


def contains(contact, pattern: sa.BindParameter, whole=None) -> sa.ColumnElement:
    """A substring search: the pattern anywhere in the lower-cased search_text, and
    the `whole` search too when the pattern is only a part of it (strpos: no index
    serves it, so the trigram index reads the pattern alone; PostgreSQL only, as
    search_trigrams narrows nothing elsewhere).

    The pattern is written into the SQL when the statement runs (literal_execute)
    rather than bound: the planner then sees it and estimates from the trigram
    statistics how many contacts match, each time; a prepared statement's generic plan
    would guess the same for "tanaka" and "user777". LIKE, not ILIKE: both sides are
    lower case already, and a case-sensitive recheck of each candidate row costs less."""
    found = contact.search_text.like(pattern, escape="/")
    if whole is None:
        return found
    return sa.and_(found, sa.func.strpos(contact.search_text, whole) > 0)


def search_condition(query: str, contact=Contact, session=None) -> sa.ColumnElement | None:
    """What a search box's text matches (None: everything). Three characters or more:
    anywhere in the name, email, company, title, industry or custom fields (the
    lower-cased search_text); fewer: the start of the first or last name. Given the
    session, the trigram index reads only the search's rare pieces (search_trigrams);
    the same contacts match."""
    words = _search_words(query)
    if not words:
        return None
    if len(words) < SEARCH_MIN_SUBSTRING:
        pattern = _like_pattern(words, prefix_only=True)
        return sa.or_(
            sa.func.lower(contact.last_name).like(pattern, escape="/"),
            sa.func.lower(contact.first_name).like(pattern, escape="/"),
        )
    patterns = substring_patterns(session, query)
    pattern = sa.bindparam(None, patterns.index, sa.Text, literal_execute=True)
    whole = None if patterns.whole is None else sa.bindparam(None, patterns.whole, sa.Text)
    return contains(contact, pattern, whole)


def matching(
    query: str = "", contact_type: str = "", contact=Contact, session=None
) -> list[sa.ColumnElement]:
    """The conditions of a search and a type filter: the list shows these contacts, and
    "all that match" in a bulk action means exactly these. The session lets the trigram
    index read less (search_condition)."""
    search = search_condition(query, contact, session)
    return ([] if search is None else [search]) + of_type(contact_type, contact)


def of_type(contact_type: str, contact=Contact) -> list[sa.ColumnElement]:
    return [contact.contact_type == contact_type] if contact_type in CONTACT_TYPES else []


def _few_matches(session, query: str, contact_type: str) -> list[int] | None:
    """Every id a substring search matches, when there are SEARCH_FEW_MATCHES or fewer
    (one read through the trigram index); None for other searches and for more matches."""
    if not is_substring_search(query):
        return None
    ids = list(
        session.scalars(
            sa.select(Contact.id)
            .where(*matching(query, contact_type, session=session))
            .limit(SEARCH_FEW_MATCHES + 1)
        )
    )
    return ids if len(ids) <= SEARCH_FEW_MATCHES else None


def matching_for_a_page(session, query: str = "", contact_type: str = "") -> list:
    """`matching` for a read that orders and stops after a few rows (a picker, an API
    page): a substring search with few matches becomes those ids, so that no plan walks
    an order's index on a bad guess (SEARCH_FEW_MATCHES)."""
    few = _few_matches(session, query, contact_type)
    if few is None:
        return matching(query, contact_type, session=session)
    return _among(session, few)


def _among(session, ids: list[int]) -> list[sa.ColumnElement]:
    return [in_values(session, Contact.id, ids)]


# --- the same selection for bulk actions ---


def count_matching(session, query: str = "", contact_type: str = "") -> int:
    """The exact number of contacts a search selects (a bulk action's confirmation)."""
    return session.scalar(
        sa.select(sa.func.count(Contact.id)).where(*matching(query, contact_type, session=session))
    )


def matching_ids(
    session, query: str = "", contact_type: str = "", *, chunk_size: int = 1000
) -> Iterator[list[int]]:
    """The ids a search selects, in chunks, in id order (each chunk one indexed query
    continuing after the last id, so contacts deleted meanwhile shift nothing)."""
    conditions = matching(query, contact_type, session=session)
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


def find_contacts(session, query: str, *, limit: int) -> list[Contact]:
    """The first contacts a search finds, newest first (a picker's few results)."""
    return list(
        session.scalars(
            sa.select(Contact)
            .where(*matching_for_a_page(session, query))
            .order_by(Contact.created_at.desc(), Contact.id.desc())
            .limit(limit)
        )
    )
