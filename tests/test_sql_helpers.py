"""The set-based write helpers (common/sql.py) on the suite's database."""

from __future__ import annotations

import sqlalchemy as sa

from crm_app.drip.common.sql import insert_rows, update_rows
from crm_app.models import SystemState, utcnow

STATE = SystemState.__table__


def _states(session, count: int) -> None:
    now = utcnow()
    insert_rows(
        session,
        STATE,
        [{"key": f"k{n}", "value": "old"} for n in range(count)],
        constants={"updated_at": now},
    )


def test_update_rows_changes_only_the_rows_whose_condition_holds(session):
    _states(session, 3)
    session.execute(sa.update(STATE).where(STATE.c.key == "k1").values(value="taken"))
    changed = update_rows(
        session,
        STATE,
        [{"key": "k0", "value": "new0"}, {"key": "k1", "value": "new1"}],
        key="key",
        where=lambda r: [STATE.c.value == "old"],
        values=lambda r: {"value": r.value},
    )
    assert changed == {"k0"}
    values = dict(session.execute(sa.select(STATE.c.key, STATE.c.value)).all())
    assert values == {"k0": "new0", "k1": "taken", "k2": "old"}


def test_update_rows_built_in_a_loop_keeps_each_variant_apart(session):
    """Lambdas of one call site made with other defaults are other statements."""
    _states(session, 2)
    for key, text in (("k0", "first"), ("k1", "second")):
        update_rows(
            session,
            STATE,
            [{"key": key}],
            key="key",
            values=lambda r, text=text: {"value": text},
            returning=False,
        )
    values = dict(session.execute(sa.select(STATE.c.key, STATE.c.value)).all())
    assert values == {"k0": "first", "k1": "second"}


def test_insert_rows_returns_several_columns_and_skips_conflicts(session):
    _states(session, 1)
    created = insert_rows(
        session,
        STATE,
        [{"key": "k0", "value": "dup"}, {"key": "k9", "value": "v"}],
        constants={"updated_at": utcnow()},
        on_conflict="key",
        returning=("key", "value"),
    )
    assert created == [("k9", "v")]


def test_times_in_any_zone_are_stored_as_the_same_instant_whatever_the_session_zone(session):
    """The rows travel as JSON with their offsets; the column keeps naive UTC, on
    PostgreSQL even when the connection's time zone is not UTC."""
    from datetime import UTC, datetime, timedelta
    from zoneinfo import ZoneInfo

    if session.get_bind().dialect.name == "postgresql":
        session.execute(sa.text("SET LOCAL TIME ZONE 'Asia/Tokyo'"))
    tokyo = datetime(2026, 12, 2, 9, 30, tzinfo=ZoneInfo("Asia/Tokyo"))
    insert_rows(session, STATE, [{"key": "t", "value": "v", "updated_at": tokyo}])
    stored = session.execute(sa.select(STATE.c.updated_at).where(STATE.c.key == "t")).scalar()
    assert stored == datetime(2026, 12, 2, 0, 30, tzinfo=UTC)
    later = tokyo + timedelta(hours=1)
    update_rows(
        session,
        STATE,
        [{"key": "t", "updated_at": later}],
        key="key",
        values=lambda r: {"updated_at": r.updated_at},
        returning=False,
    )
    stored = session.execute(sa.select(STATE.c.updated_at).where(STATE.c.key == "t")).scalar()
    assert stored == datetime(2026, 12, 2, 1, 30, tzinfo=UTC)


def test_in_values_selects_the_same_rows_for_ids_strings_and_nothing(session):
    """On PostgreSQL the values travel as one array literal: each string is quoted and
    escaped (quotes, backslashes, commas, braces, the word NULL), a None is NULL."""
    from crm_app.drip.common.sql import in_named_values, in_values, is_postgres
    from crm_app.models import Contact

    awkward = [
        'o"brien@example.com',
        "back\\slash@example.com",
        "a,b@example.com",
        "{brace}@example.com",
        "NULL",
        " spaced @example.com",
        "o'neil@example.com",
    ]
    emails = [f"in{n}@example.com" for n in range(3)] + awkward
    session.execute(
        sa.insert(Contact),
        [{"email": email, "contact_type": "lead", "custom_fields": {}} for email in emails],
    )
    ids = dict(session.execute(sa.select(Contact.email, Contact.id)).all())

    def found(column, values):
        query = sa.select(Contact.id).where(in_values(session, column, values))
        return sorted(session.scalars(query))

    first, second, third = (ids[f"in{n}@example.com"] for n in range(3))
    assert found(Contact.id, [first, second]) == [first, second]
    assert found(Contact.id, {third}) == [third]
    assert found(Contact.id, [third, None]) == [third]
    assert found(Contact.id, []) == []
    assert found(Contact.email, ["in1@example.com", "nobody@example.com"]) == [second]
    for email in awkward:
        assert found(Contact.email, [email, None]) == [ids[email]], email
    named = sa.select(Contact.email).where(
        in_named_values(is_postgres(session), Contact.email, "emails")
    )
    assert sorted(session.scalars(named, {"emails": awkward})) == sorted(awkward)
