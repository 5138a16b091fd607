"""Which parts of a substring search the trigram index reads (PostgreSQL). No HTTP in
here.

pg_trgm answers `search_text LIKE '%user777@example27.com%'` by intersecting, for each
trigram of the pattern, the list of contacts that hold it. A trigram that most contacts
hold ("com", or "exa" of a domain every contact shares) brings a list as long as the
table and narrows almost nothing: at 1,000,000 contacts a page searching for that
address spent 45.7 ms of the database's CPU, nearly all in the index, and 3.1 ms
reading "%er777%le27%" instead (bench/pages_bench.py). So when a search holds common
trigrams, the index reads only its pieces made of the others (`index_pattern`), and
each row it finds is checked for the whole search as well (contact_search.contains).
Which contacts match never depends on this: every piece is part of the search, so
every match holds it.

Common means held by at least COMMON_SHARE of the contacts in PostgreSQL's own sample
of the column (the bounds of its histogram, which ANALYZE keeps), read again every
REFRESH_SECONDS by each process for each database. Before the first ANALYZE there is
no sample, and the whole search is read.
"""

from __future__ import annotations

import math
import re
import time
from collections import Counter

import sqlalchemy as sa

from crm_app.drip.common.sql import is_postgres

# Leaving a trigram out lets in the candidates that lack it, each read and checked in the
# table (about 4 us); reading its list costs about 3.5 ns a contact that holds it. At
# three contacts in four the list is the dearer part for any search with fewer than about
# 2,000 candidates at a million contacts; a trigram every contact holds narrows nothing.
COMMON_SHARE = 0.75
REFRESH_SECONDS = 600

# What pg_trgm counts as a word's letters: runs of letters and digits (not "_").
_WORD = re.compile(r"[^\W_]+")

_sampled: dict[str, tuple[float, frozenset[str]]] = {}


def common_trigrams(session) -> frozenset[str]:
    """The trigrams (three letters or digits of one word) that at least COMMON_SHARE of
    the contacts hold, as far as the sample says; none on a database without the
    trigram index."""
    if not is_postgres(session):
        return frozenset()
    database = str(session.get_bind().url)
    taken_at, trigrams = _sampled.get(database, (-math.inf, frozenset()))
    if time.monotonic() - taken_at >= REFRESH_SECONDS:
        trigrams = _sample(session)
        _sampled[database] = (time.monotonic(), trigrams)
    return trigrams


def forget_samples() -> None:
    """Take the next sample at the next search (tests)."""
    _sampled.clear()


# PostgreSQL's own sample of the column: the bounds of its histogram (401 contacts since
# migration 0019, spread over the column's order), kept fresh by ANALYZE. No table read.
_HISTOGRAM = sa.text(
    "SELECT histogram_bounds::text::text[] FROM pg_stats WHERE schemaname = current_schema()"
    " AND tablename = 'contacts' AND attname = 'search_text'"
)


def _sample(session) -> frozenset[str]:
    texts = session.scalar(_HISTOGRAM) or []
    held = Counter(trigram for text in texts for trigram in _trigrams_of(text))
    return frozenset(t for t, holders in held.items() if holders >= COMMON_SHARE * len(texts))


def _trigrams_of(text: str) -> set[str]:
    return {trigram for word in _WORD.findall(text) for trigram in _trigrams(word)}


def index_pattern(words: str, common: frozenset[str]) -> str | None:
    """The LIKE pattern ("%r777%") that the trigram index reads for a search of `words`
    (lower case) when some of its trigrams are common: its pieces made of the other
    trigrams, in order. None when none is common (the whole search is read) or none is
    rare (no piece would narrow anything)."""
    if not _trigrams_of(words) & common:
        return None
    pieces = [piece for word in _WORD.findall(words) for piece in _rare_pieces(word, common)]
    return "%" + "%".join(pieces) + "%" if pieces else None


def _trigrams(word: str) -> list[str]:
    return [word[i : i + 3] for i in range(len(word) - 2)]


def _rare_pieces(word: str, common: frozenset[str]) -> list[str]:
    """The longest runs of `word` whose trigrams are not common, no two sharing a letter
    (in "%tan%aka%" of "tanaka", "aka" may not start inside "tan")."""
    pieces: list[str] = []
    start, free_from = None, 0
    for i, trigram in enumerate(_trigrams(word)):
        if trigram in common:
            if start is not None:
                pieces.append(word[start : i + 2])
                start, free_from = None, i + 2
        elif start is None and i >= free_from:
            start = i
    if start is not None:
        pieces.append(word[start:])
    return pieces
