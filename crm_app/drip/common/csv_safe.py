"""Spreadsheet-safe CSV cells: the one guard against formula injection, and its undo.

A cell starting with = + - @ (or a tab or carriage return, which some spreadsheets
skip before reading the formula) runs as a formula when the file is opened: a
contact named `=HYPERLINK(...)` would become a link. An apostrophe in front makes
the spreadsheet show it as text (OWASP's "CSV injection" advice).
"""

from __future__ import annotations

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _guarded(text: str) -> bool:
    """A formula start, or one behind apostrophes: a value that is itself `'=1+1` gets
    its own apostrophe too, or a re-import would read it back as `=1+1`."""
    return text.lstrip("'")[:1] in FORMULA_STARTS


def csv_safe(text: str) -> str:
    """The cell as a spreadsheet will show it as text, never run it."""
    return "'" + text if _guarded(text) else text


def csv_unsafe(text: str) -> str:
    """Undo `csv_safe`: a file we exported and someone re-imports gets its values back
    (a phone `+44 20...` exported as `'+44 20...`)."""
    if text[:1] == "'" and _guarded(text[1:]):
        return text[1:]
    return text
