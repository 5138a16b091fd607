"""The few SQL helpers the core needs on both databases."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from crm_app.models.types import UTCDateTime


def dialect_insert(session) -> Callable:
    """The `insert` whose statements support ON CONFLICT on the session's database."""
    if session.get_bind().dialect.name == "postgresql":
        return postgresql.insert
    return sqlite.insert


def is_postgres(session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


_PG_TYPES = {"INTEGER": "integer", "VARCHAR": "text", "TEXT": "text", "JSON": "json"}


def _pg_type(column: sa.Column) -> str:
    if isinstance(column.type, UTCDateTime):
        return "timestamp"
    return _PG_TYPES[column.type.compile(dialect=postgresql.dialect()).split("(")[0]]


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).replace(tzinfo=None).isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def json_rows(rows: list[dict]) -> str:
    """Rows as one JSON array (datetimes as naive UTC, as UTCDateTime stores them)."""
    return json.dumps(rows, default=_json_default)


def insert_rows(
    session,
    table: sa.Table,
    rows: list[dict],
    *,
    on_conflict: str | None = None,
    returning: str | None = None,
) -> list:
    """Insert many rows at once, optionally skipping conflicts and returning one column.

    On PostgreSQL the rows travel as ONE jsonb parameter (jsonb_to_recordset): a
    thousand-row webhook batch costs one short, cached statement instead of a
    statement with thousands of bound parameters to build and parse."""
    if not rows:
        return []
    columns = list(rows[0])
    if is_postgres(session):
        definition = ", ".join(f"{name} {_pg_type(table.c[name])}" for name in columns)
        names = ", ".join(columns)
        sql = (
            f"INSERT INTO {table.name} ({names}) SELECT {names} "
            f"FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS r({definition})"
        )
        if on_conflict:
            sql += f" ON CONFLICT ({on_conflict}) DO NOTHING"
        if returning:
            sql += f" RETURNING {returning}"
        result = session.execute(sa.text(sql), {"rows": json_rows(rows)})
        return list(result.scalars()) if returning else []
    statement = dialect_insert(session)(table)
    if on_conflict:
        statement = statement.on_conflict_do_nothing(index_elements=[on_conflict])
    if returning:
        return list(session.scalars(statement.returning(table.c[returning]), rows))
    session.execute(statement, rows)
    return []


def in_values(session, column: sa.ColumnElement, values) -> sa.ColumnElement:
    """`column IN values`; on PostgreSQL one array parameter (= ANY) instead of one per value."""
    values = list(values)
    if is_postgres(session):
        return column == sa.any_(sa.bindparam(None, values, type_=postgresql.ARRAY(column.type)))
    return column.in_(values)
