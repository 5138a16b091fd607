"""The few SQL helpers the core needs on both databases: one helper per kind of
set-based write (insert_rows, update_rows, add_counts), the dialect's insert, and IN lists."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from functools import cache
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.types import TypeDecorator

from crm_app.models.types import UTCDateTime


def dialect_insert(session) -> Callable:
    """The `insert` whose statements support ON CONFLICT on the session's database."""
    return insert_for(session.get_bind().dialect.name)


def insert_for(dialect: str) -> Callable:
    """The `insert` whose statements support ON CONFLICT on this database."""
    return postgresql.insert if dialect == "postgresql" else sqlite.insert


def is_postgres(session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def saved_unless_taken(session, save: Callable[[], Any] = lambda: None) -> bool:
    """Run `save` (add or change objects) and flush, in a savepoint; False when a unique
    index refused a row: a concurrent save (a double click, two people at once) took the
    value between the caller's check and this write. The savepoint is rolled back: what
    `save` added leaves the session, what it changed is reloaded, and the caller answers
    as its check would have. Any other integrity error goes through."""
    try:
        with session.begin_nested():
            save()
            session.flush()
    except IntegrityError as error:
        if not _is_unique_violation(error):
            raise
        return False
    return True


def _is_unique_violation(error: IntegrityError) -> bool:
    if getattr(error.orig, "sqlstate", None) == "23505":  # PostgreSQL's unique_violation
        return True
    return "UNIQUE constraint failed" in str(error.orig)  # SQLite says it in words


def json_rows(rows: list[dict]) -> str:
    """Rows as one JSON array, by orjson: ten times faster than the standard library on
    the thousand-row batches of the hot paths. Datetimes keep their offset (a naive one is
    taken as UTC); the SQL side turns them into naive UTC (`_recordset`)."""
    return orjson.dumps(rows, option=orjson.OPT_NAIVE_UTC | orjson.OPT_NON_STR_KEYS).decode()


def insert_rows(
    session,
    table: sa.Table,
    rows: list[dict],
    *,
    constants: Mapping[str, Any] | None = None,
    on_conflict: str | Sequence[str] | None = None,
    returning: str | Sequence[str] | None = None,
) -> list:
    """Insert many rows at once, optionally skipping conflicts; returns the `returning`
    column's values (a tuple per row when it names several columns).

    `constants` are columns with the same value in every row. On PostgreSQL the rows
    travel as ONE json parameter (json_to_recordset): a thousand-row batch costs one
    short, cached statement instead of thousands of bound parameters to build and parse."""
    if not rows:
        return []
    constants = dict(constants or {})
    conflict = (on_conflict,) if isinstance(on_conflict, str) else tuple(on_conflict or ())
    wanted = (returning,) if isinstance(returning, str) else tuple(returning or ())
    postgres = is_postgres(session)
    statement = _insert_statement(
        postgres, table, tuple(rows[0]), tuple(constants), conflict, wanted
    )
    if postgres:
        params = {"rows": json_rows(rows)}
        params.update((f"constant_{name}", value) for name, value in constants.items())
    else:
        params = [{**row, **constants} for row in rows]
    result = session.execute(statement, params)
    if not wanted:
        return []
    # all(): one fetchall; iterating fetches row by row (0.7 ms more per 1,000 rows).
    if isinstance(returning, str):
        return result.scalars().all()
    return [tuple(r) for r in result.all()]


@cache
def _insert_statement(
    postgres: bool,
    table: sa.Table,
    names: tuple[str, ...],
    constant_names: tuple[str, ...],
    conflict: tuple[str, ...],
    wanted: tuple[str, ...],
) -> sa.Insert:
    """insert_rows' statement, built once per shape (the constants bound by name): the
    delivery chunks, the tick and every webhook batch run the same few."""
    if postgres:
        selected = list(_recordset(table, list(names), {}).values())
        selected += [
            sa.bindparam(f"constant_{name}", type_=table.c[name].type) for name in constant_names
        ]
        statement = postgresql.insert(table).from_select(
            [*names, *constant_names], sa.select(*selected)
        )
    else:
        statement = sqlite.insert(table)
    if conflict:
        statement = statement.on_conflict_do_nothing(index_elements=list(conflict))
    if wanted:
        statement = statement.returning(*(table.c[name] for name in wanted))
    return statement


class _Fields:
    """The fields of each row, as columns of an UPDATE: `r.name`."""

    def __init__(self, columns: Mapping[str, sa.ColumnElement]):
        self._columns = columns

    def __getattr__(self, name: str) -> sa.ColumnElement:
        try:
            return self._columns[name]
        except KeyError:
            raise AttributeError(f"the rows have no field {name!r}") from None


def _recordset(
    table: sa.Table, names: list[str], types: Mapping[str, Any], rows=None
) -> dict[str, sa.ColumnElement]:
    """PostgreSQL: the rows (one json parameter `rows`) as a typed derived table `r`;
    returns its fields by name. A UTCDateTime travels with its offset (json_rows) and is
    read as timestamptz, then turned into the naive UTC the column stores, whatever the
    session's time zone."""
    kinds = {name: types.get(name) or table.c[name].type for name in names}
    columns = [
        sa.column(name, sa.DateTime(timezone=True) if isinstance(kind, UTCDateTime) else kind)
        for name, kind in kinds.items()
    ]
    rows = sa.bindparam("rows") if rows is None else rows
    function = sa.func.json_to_recordset(sa.cast(rows, postgresql.JSON))
    source = function.table_valued(*columns).render_derived(name="r", with_types=True)
    return {
        name: sa.func.timezone("UTC", source.c[name], type_=kind)
        if isinstance(kind, UTCDateTime)
        else source.c[name]
        for name, kind in kinds.items()
    }


def update_rows(
    session,
    table: sa.Table,
    rows: list[dict],
    *,
    values: Callable[[_Fields], dict[str, Any]],
    where: Callable[[_Fields], list[sa.ColumnElement]] = lambda r: [],
    key: str = "id",
    types: Mapping[str, Any] | None = None,
    returning: bool = True,
) -> set:
    """UPDATE many rows at once, each matched by `key` and changed by its own values.

    `values(r)` and `where(r)` build the SET and the extra conditions from `r`, the
    row's fields (`r.sent_at`); the conditions are checked on the row its key found,
    never used to find rows (checked_on_found_rows). `types` gives the type of a field
    that is not a column of `table` (`seen_attempts`). Returns the keys of the rows
    that matched and changed (a conditional update another writer won is not among
    them), unless `returning` is False. PostgreSQL: one statement over
    json_to_recordset; SQLite: one compiled statement run per row. The statement is
    built once per call site (the hot path runs it for every chunk of every delivery)."""
    if not rows:
        return set()
    # In key order: two writers lock the rows they share in the same order (no deadlock).
    rows = sorted(rows, key=lambda row: row[key])
    names, types = list(rows[0]), dict(types or {})
    shape = (table, names, types, key, returning, values, where)
    if is_postgres(session):
        statement = _cached(("pg", *shape), lambda: _pg_update(*shape))
        result = session.execute(statement, {"rows": json_rows(rows)})
        return set(result.scalars().all()) if returning else set()
    statement = _cached(("sqlite", *shape), lambda: _sqlite_update(*shape))
    params = [{f"r_{name}": value for name, value in row.items()} for row in rows]
    if not returning:
        session.execute(statement, params)
        return set()
    return {
        row[key]
        for row, param in zip(rows, params, strict=True)
        if session.execute(statement, param).rowcount == 1
    }


def _update(table: sa.Table, fields: _Fields, key: str, values, where) -> sa.Update:
    """Each row found by its key alone; `where` is checked on the row found."""
    condition = table.c[key] == getattr(fields, key)
    extra = where(fields)
    if extra:
        condition = sa.and_(condition, checked_on_found_rows(*extra))
    return sa.update(table).where(condition).values(values(fields))


def _pg_update(table, names, types, key, returning, values, where) -> sa.TextClause:
    """The UPDATE .. FROM json_to_recordset(:rows), compiled once to plain SQL with its
    constants inline: building and compiling the construct for each chunk cost more
    than PostgreSQL takes to run it."""
    fields = _Fields(_recordset(table, list(names), types, rows=sa.literal_column(":rows")))
    statement = _update(table, fields, key, values, where)
    if returning:
        statement = statement.returning(table.c[key])
    sql = statement.compile(
        dialect=postgresql.psycopg.dialect(), compile_kwargs={"literal_binds": True}
    )
    return sa.text(str(sql))


def _sqlite_update(table, names, types, key, returning, values, where) -> sa.Update:
    parameters = {
        name: sa.bindparam(f"r_{name}", type_=types.get(name) or table.c[name].type)
        for name in names
    }
    return _update(table, _Fields(parameters), key, values, where)


_STATEMENTS: dict[tuple, Any] = {}


def _cached(shape: tuple, build: Callable[[], Any]) -> Any:
    """One statement per call site. `values` and `where` are keyed by their code (and the
    defaults and closure values they were made with), not by the lambda object; types
    by what they render as (callers build new type objects: sa.Integer() is not
    sa.Integer())."""
    dialect, table, names, types, key, returning, values, where = shape
    try:
        cache_key = (
            dialect,
            table,
            tuple(names),
            tuple((name, repr(kind)) for name, kind in types.items()),
            key,
            returning,
            _function_key(values),
            _function_key(where),
        )
        hash(cache_key)
    except TypeError:  # something unhashable went in: build it every time
        return build()
    statement = _STATEMENTS.get(cache_key)
    if statement is None:
        statement = _STATEMENTS[cache_key] = build()
    return statement


def _function_key(function: Callable) -> tuple:
    closure = tuple(cell.cell_contents for cell in function.__closure__ or ())
    return (function.__code__, function.__defaults__, closure)


def add_counts(
    session, table: sa.Table, source: sa.Select, *, key: Sequence[str], counts: Sequence[str]
) -> None:
    """Add the counts of `source` (a SELECT of the `key` columns, then the `counts`
    columns, in that order) to `table`'s rows, creating the rows that are missing: one
    INSERT .. SELECT .. ON CONFLICT DO UPDATE SET n = n + excluded.n. Counters kept this
    way never lose an increment to a concurrent writer (the row lock serialises them)."""
    dialect = session.get_bind().dialect.name
    session.execute(counts_upsert(dialect, table, source, key=key, counts=counts))


def counts_upsert(
    dialect: str, table: sa.Table, source: sa.Select, *, key: Sequence[str], counts: Sequence[str]
) -> sa.Insert:
    """The statement `add_counts` runs, for a caller that builds it once and binds its
    values by name on each run."""
    # In key order: two writers lock the counters they share in the same order (no deadlock).
    source = source.order_by(*(sa.literal_column(str(n + 1)) for n in range(len(key))))
    insert = insert_for(dialect)(table).from_select([*key, *counts], source)
    return _adding_on_conflict(insert, table, key, counts)


def add_count_rows(
    session, table: sa.Table, rows: list[dict], *, key: Sequence[str], counts: Sequence[str]
) -> None:
    """`add_counts` from counts computed in Python: each row holds the `key` columns and
    the `counts` to add (negative ones subtract). Written in key order, as every counter
    writer locks them."""
    if not rows:
        return
    ordered = sorted(rows, key=lambda row: tuple(row[name] for name in key))
    insert = insert_for(session.get_bind().dialect.name)(table).values(ordered)
    session.execute(_adding_on_conflict(insert, table, key, counts))


def _adding_on_conflict(insert, table: sa.Table, key: Sequence[str], counts: Sequence[str]):
    return insert.on_conflict_do_update(
        index_elements=list(key),
        set_={name: table.c[name] + insert.excluded[name] for name in counts},
    )


def count_where(condition: sa.ColumnElement[bool]) -> sa.ColumnElement[int]:
    """How many rows of the group meet `condition` (0, not NULL, for an empty group): the
    aggregate every count-by-condition of the reports uses, on both databases. COUNT(*)
    FILTER, not SUM(CASE ...): the enrolment outcomes of a year (every enrolment, four
    counts each) took a fifth to a quarter less time on PostgreSQL (250,000 enrolments:
    203-235 -> 152-182 ms without parallel workers; bench/analytics_bench.py's data)."""
    return sa.func.count().filter(condition)


def checked_on_found_rows(*conditions: sa.ColumnElement[bool]) -> sa.ColumnElement[bool]:
    """`conditions`, which the planner can only check on the rows another condition
    found (ids, contacts), never use to find them: `(...) IS TRUE` holds for the same
    rows, and no index matches it. For a status beside the ids: after a burst (a tick
    queuing 100,000 emails) the statistics say almost no row is `queued` until the next
    ANALYZE, and read so, the status index looked the cheaper way in. Each claim of a
    hundred emails then read every queued row: 20 ms of PostgreSQL's CPU, half of
    delivery's database time at 1,000,000 enrolments (tests/test_delivery_plans.py)."""
    return sa.and_(*conditions).is_(sa.true())


def in_values(session, column: sa.ColumnElement, values) -> sa.ColumnElement:
    """`column IN values`; on PostgreSQL one array parameter (= ANY) instead of one per value."""
    values = list(values)
    if is_postgres(session):
        return _equals_any(column, sa.bindparam(None, values, type_=_literal_for(column)))
    return column.in_(values)


def in_named_values(postgres: bool, column: sa.ColumnElement, name: str) -> sa.ColumnElement:
    """`column IN :name`, the values given when the statement runs (one built once and
    reused): on PostgreSQL one array parameter (= ANY), elsewhere an expanding IN."""
    if postgres:
        return _equals_any(column, sa.bindparam(name, type_=_literal_for(column)))
    return column.in_(sa.bindparam(name, expanding=True))


def for_each_named_value(
    postgres: bool, query: sa.Select, column: sa.ColumnElement, name: str
) -> sa.Select:
    """`query` narrowed to rows whose `column` is among the values bound as `name` when
    it runs. On PostgreSQL the rows of each value are looked up one value at a time, so
    the planner cannot read the whole table instead: statistics taken when few contacts
    had a message say each contact has hundreds, and `contact_id = ANY (...)` then read
    100,000 messages for a chunk's hundred contacts (15 ms; tests/test_delivery_plans.py).
    Elsewhere an expanding IN. Bind distinct values: each is looked up as often as given."""
    if not postgres:
        return query.where(column.in_(sa.bindparam(name, expanding=True)))
    array = sa.cast(sa.bindparam(name, type_=_literal_for(column)), postgresql.ARRAY(column.type))
    values = sa.func.unnest(array).table_valued("value").render_derived(name="wanted")
    # OFFSET 0 keeps the subquery apart: flattened into a join, the whole-table read
    # would be back among the planner's choices.
    per_value = query.where(column == values.c.value).offset(0).lateral("per_value")
    return sa.select(*per_value.c).select_from(values).join(per_value, sa.true())


def _equals_any(column: sa.ColumnElement, values: sa.BindParameter) -> sa.ColumnElement:
    """`column = ANY (CAST(:values AS <its type>[]))`, the values one array literal."""
    return column == sa.any_(sa.cast(values, postgresql.ARRAY(column.type)))


def _literal_for(column: sa.ColumnElement) -> ArrayLiteral:
    return ArrayLiteral(quoted=not isinstance(column.type, sa.Integer))


class ArrayLiteral(TypeDecorator):
    """A list bound as ONE PostgreSQL array literal ('{1,2,3}'). psycopg dumps a list
    element by element in Python, each checked for quoting by a regular expression: 1.1
    ms of CPU per 1,000 ids against 0.2 ms for the literal, and a webhook batch binds
    about twenty such lists. `quoted`: text elements, each quoted and escaped."""

    impl = sa.types.NullType  # no ::VARCHAR: the server reads the literal as the array
    cache_ok = True

    def __init__(self, quoted: bool) -> None:
        super().__init__()
        self.quoted = quoted

    def process_bind_param(self, values, dialect) -> str | None:
        if values is None:
            return None
        if self.quoted:
            elements = ["NULL" if v is None else _quoted(str(v)) for v in values]
        else:
            elements = ["NULL" if v is None else str(int(v)) for v in values]
        return "{" + ",".join(elements) + "}"


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def expire_updated(session, model: type, ids: Collection) -> None:
    """Forget the loaded attributes of `model` objects a set-based UPDATE changed behind
    the session's back, so a later read in the same transaction sees the new values."""
    if not ids:
        return
    for obj in list(session.identity_map.values()):
        if isinstance(obj, model) and obj.id in ids:
            session.expire(obj)
