"""A substring search gives the trigram index only its rare pieces when most contacts
share some of its trigrams, and matches exactly the same contacts."""

from __future__ import annotations

import random
import re

import pytest
import sqlalchemy as sa

from crm_app.drip.audience import contact_search, search_trigrams
from crm_app.drip.audience.contact_list import contact_list_page
from crm_app.drip.audience.export import contacts_csv
from crm_app.drip.audience.list_request import ListRequest
from crm_app.drip.audience.search_trigrams import index_pattern

EVERYWHERE = frozenset({"use", "ser", "exa", "xam", "amp", "mpl", "ple", "com"})


def like(pattern: str, text: str) -> bool:
    """SQL LIKE for patterns of letters, digits and % (what index_pattern makes)."""
    return re.fullmatch(".*".join(map(re.escape, pattern.split("%"))), text, re.S) is not None


@pytest.mark.parametrize(
    ("words", "common", "expected"),
    [
        ("user777", frozenset(), None),  # nothing sampled: the whole search
        ("tanaka", EVERYWHERE, None),  # no trigram of it is common
        ("user777", EVERYWHERE, "%er777%"),
        ("user777@example27.com", EVERYWHERE, "%er777%le27%"),
        ("example.com", EVERYWHERE, None),  # nothing rare: the whole search
        # "aka" may not begin inside "tan": "tanaka" would not match "%tan%naka%".
        ("tanaka", frozenset({"ana"}), "%tan%aka%"),
        ("ada lovelace", frozenset({"ove"}), "%ada%lov%elace%"),
    ],
)
def test_the_index_reads_the_searchs_pieces_of_rare_trigrams(words, common, expected):
    assert index_pattern(words, common) == expected


def test_every_search_matches_the_pattern_its_index_reads():
    """So no contact that holds the search is ever left out by the index."""
    rng = random.Random(12)
    alphabet = "abcde1 @._"
    trigrams = ["".join(t) for t in zip(alphabet, alphabet[1:], alphabet[2:], strict=False)]
    for _ in range(5000):
        words = "".join(rng.choice(alphabet) for _ in range(rng.randint(3, 14))).strip()
        common = frozenset(rng.sample(trigrams, rng.randint(1, 6))) | frozenset(
            words[i : i + 3] for i in range(len(words) - 2) if rng.random() < 0.3
        )
        pattern = index_pattern(words, common)
        if pattern is not None:
            assert like(pattern, words), (words, sorted(common), pattern)
            assert not set(re.findall(r"(?=(\w{3}))", pattern)) & common


def test_sqlite_has_no_trigram_index_to_spare(session):
    if session.get_bind().dialect.name == "postgresql":
        pytest.skip("SQLite's")
    search_trigrams.forget_samples()
    assert search_trigrams.common_trigrams(session) == frozenset()


@pytest.fixture
def shared_domain(session, make_contact, monkeypatch):
    """Twelve contacts at one domain, and one elsewhere that holds the rare piece of
    "user7@sharedco.com" but not the address; ANALYZE'd, with the sample taken."""
    if session.get_bind().dialect.name != "postgresql":
        pytest.skip("the trigram index is PostgreSQL's")
    monkeypatch.setattr(contact_search, "common_trigrams", search_trigrams.common_trigrams)
    for n in range(1, 13):
        make_contact(email=f"user{n}@sharedco.com", first_name=f"Name{n}", last_name="Shared")
    make_contact(email="buyer7@elsewhere.org", first_name="Decoy", last_name="Other")
    session.execute(sa.text("ANALYZE contacts"))
    session.commit()
    search_trigrams.forget_samples()
    yield
    search_trigrams.forget_samples()


def test_the_sample_finds_what_most_contacts_hold(session, shared_domain):
    common = search_trigrams.common_trigrams(session)
    assert {"use", "ser", "sha", "dco", "com"} <= common
    assert not {"er7", "buy", "els", "oth"} & common


def test_an_address_is_found_through_its_rare_piece_alone(session, shared_domain):
    patterns = contact_search.substring_patterns(session, "USER7@sharedco.com ")
    assert patterns == contact_search.SubstringPatterns("%er7%", "user7@sharedco.com")
    statements: list[str] = []
    bind = session.get_bind()
    listener = lambda *args: statements.append(args[2])  # noqa: E731
    sa.event.listen(bind, "before_cursor_execute", listener)
    try:
        page = contact_list_page(session, ListRequest(query="user7@sharedco.com"), per_page=25)
    finally:
        sa.event.remove(bind, "before_cursor_execute", listener)
    assert [row.email for row in page.rows] == ["user7@sharedco.com"]
    assert page.total == 1
    [statement] = statements
    assert "LIKE '%%er7%%'" in statement and "strpos(" in statement  # % doubled for psycopg
    assert "sharedco" not in statement.split("strpos(")[0]  # the index reads only "er7"


@pytest.mark.parametrize("query", ["user7@sharedco.com", "er7", "sharedco", "ser1"])
def test_every_reader_of_a_search_selects_the_same_contacts(session, shared_domain, query):
    """The list, a bulk action's count and ids, the CSV export and the picker agree,
    narrowed or not, and with what the words alone select."""
    everyone = session.execute(sa.text("SELECT email, search_text FROM contacts")).all()
    expected = {email for email, text in everyone if query in text}
    listed = contact_list_page(session, ListRequest(query=query), per_page=50)
    assert {row.email for row in listed.rows} == expected
    assert contact_search.count_matching(session, query) == len(expected)
    ids = [i for chunk in contact_search.matching_ids(session, query, chunk_size=2) for i in chunk]
    assert len(ids) == len(expected)
    exported = "".join(contacts_csv(session, query=query)).splitlines()[1:]
    assert {line.split(",")[1] for line in exported} == expected
    found = contact_search.find_contacts(session, query, limit=50)
    assert {contact.email for contact in found} == expected
