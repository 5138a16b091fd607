"""Column types shared by the models."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator):
    """Stores naive UTC, always returns an aware UTC datetime.

    SQLite keeps no time zone, PostgreSQL would convert to the session zone:
    storing naive UTC everywhere makes both databases compare the same way.
    """

    impl = sa.DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTCDateTime column")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


def postgresql_only(index: sa.Index) -> sa.Index:
    """An index only PostgreSQL gets (a trigram GIN index means nothing to SQLite):
    create_all skips it elsewhere, and so do migration comparisons (`compared_on`)."""
    index.info["only_on"] = "postgresql"
    return index.ddl_if(dialect="postgresql")


def sqlite_only(constraint: sa.Constraint) -> sa.Constraint:
    """A constraint only SQLite keeps: one PostgreSQL dropped (a migration) and SQLite
    cannot drop without rebuilding its table. create_all and migration comparisons
    (`compared_on`) leave it out elsewhere; relationships still join on it."""
    constraint.info["only_on"] = "sqlite"
    return constraint.ddl_if(dialect="sqlite")


def postgresql_only_table(*items: sa.SchemaItem) -> tuple:
    """`__table_args__` of a table only PostgreSQL has (one its triggers keep), with its
    `items` (indexes...): `tables_on` and migration comparisons (`compared_on`) leave it
    out elsewhere."""
    return (*items, {"info": {"only_on": "postgresql"}})


def _exists_on(item: sa.SchemaItem, dialect_name: str) -> bool:
    """Whether a database of `dialect_name` has this model object (`postgresql_only`,
    `sqlite_only`, `postgresql_only_table` say which one alone has it)."""
    only_on = getattr(item, "info", {}).get("only_on")
    return only_on is None or only_on == dialect_name


def tables_on(metadata: sa.MetaData, dialect_name: str) -> list[sa.Table]:
    """The metadata's tables a database of `dialect_name` has, parents first."""
    return [table for table in metadata.sorted_tables if _exists_on(table, dialect_name)]


def compared_on(dialect_name: str):
    """Alembic's `include_object` for a database of `dialect_name`: leaves out the
    model's objects that only another database has (`postgresql_only`, `sqlite_only`)."""

    def include_object(obj, name, type_, reflected, compare_to) -> bool:
        return _exists_on(obj, dialect_name)

    return include_object
