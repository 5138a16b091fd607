"""NUL characters in input: PostgreSQL's text cannot hold one.

A NUL ("\\x00", or "\\u0000" in JSON) in a form field, a query string or an API body
made the statement fail on PostgreSQL: a 500 where a person should hear what is wrong,
and for the Event Webhook a batch refused on every retry, its events lost. People's
input with a NUL is refused with a clear error (web/nul_guard.py); what SendGrid sends
is kept, each NUL replaced by U+FFFD (the replacement character).
"""

from __future__ import annotations

from typing import Any

import orjson

NUL = "\x00"
REPLACEMENT = "\ufffd"
# How JSON writes a NUL (a raw NUL byte is not valid JSON at all).
_JSON_NUL = b"\\u0000"


def holds_nul(value: Any) -> bool:
    """Whether a string, or any key or string inside lists and dicts, holds a NUL."""
    if isinstance(value, str):
        return NUL in value
    if isinstance(value, dict):
        return any(holds_nul(key) or holds_nul(item) for key, item in value.items())
    if isinstance(value, list | tuple):
        return any(holds_nul(item) for item in value)
    return False


def without_nul(value: Any) -> Any:
    """`value` with every NUL in its strings (and keys) replaced by U+FFFD."""
    if isinstance(value, str):
        return value.replace(NUL, REPLACEMENT) if NUL in value else value
    if isinstance(value, dict):
        return {without_nul(key): without_nul(item) for key, item in value.items()}
    if isinstance(value, list):
        return [without_nul(item) for item in value]
    return value


def load_json_without_nul(raw: bytes) -> Any:
    """orjson.loads(raw), each NUL replaced; the walk only when the text may hold one.
    Raises ValueError for a body that is not JSON."""
    value = orjson.loads(raw)
    return without_nul(value) if _JSON_NUL in raw else value


def json_body_holds_nul(raw: bytes) -> bool:
    """Whether a JSON body holds a NUL in a string; False for a body that is not JSON
    (its parser says what is wrong with it). "\\\\u0000" (an escaped backslash) is no NUL."""
    if _JSON_NUL not in raw:
        return False
    try:
        return holds_nul(orjson.loads(raw))
    except ValueError:
        return False
