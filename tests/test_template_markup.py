"""Markup rules every template keeps (checked on the template files, so a page added
later is covered too)."""

from __future__ import annotations

import re

from tests.conftest import ROOT

EMPTY_HEADER = re.compile(r"<th(\s[^>]*)?>\s*</th>")


def test_no_table_has_an_empty_header_cell():
    # A screen reader names each cell of a column by its header: an actions column gets
    # a visually hidden one ("Actions"), never an empty <th>.
    empty = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in sorted((ROOT / "templates").rglob("*.html"))
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if EMPTY_HEADER.search(line)
    ]
    assert empty == []
