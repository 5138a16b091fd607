"""URL converters: `<int:...>` in every route is a database id (see drip/common/ids.py)."""

from __future__ import annotations

from werkzeug.routing import IntegerConverter, Map

from crm_app.drip.common.ids import MAX_ID


class DatabaseIdConverter(IntegerConverter):
    """Flask's `int` with an upper bound: /contacts/<a number past MAX_ID> does not match
    (404) instead of reaching the database driver (500)."""

    def __init__(
        self,
        map: Map,  # noqa: A002 (Werkzeug's name)
        fixed_digits: int = 0,
        min: int | None = None,  # noqa: A002
        max: int | None = MAX_ID,  # noqa: A002
        signed: bool = False,
    ) -> None:
        super().__init__(map, fixed_digits, min, max, signed)
