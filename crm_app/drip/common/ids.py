"""Row ids that come from outside (a URL, a form, a webhook): checked before any query.

Python's int has no limit, the database's has: an id beyond it reaches the driver as an
error (SQLite: "Python int too large" from 2^63; PostgreSQL: "integer out of range" from
2^31, our id columns being INTEGER), that is a 500. Such an id names no row, so it is
treated as "not found".
"""

from __future__ import annotations

# The largest INTEGER on PostgreSQL, the type of every id column (SQLite's go to 2^63 - 1).
# A table whose ids may pass it needs BIGINT ids, and this bound raised with them.
MAX_ID = 2**31 - 1


def database_id(value: object) -> int:
    """`value` as a row id, or ValueError unless it is a whole number from 1 to MAX_ID.
    (Werkzeug's `request.form.get(name, type=database_id)` then gives None.)"""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"{value!r} is not an id")
    number = int(value)
    if not 1 <= number <= MAX_ID:
        raise ValueError(f"{value!r} is not an id")
    return number


def id_or_none(value: object) -> int | None:
    try:
        return database_id(value)
    except ValueError:
        return None
