"""NUL characters in input: PostgreSQL's text cannot hold one.

A NUL ("\\x00", or "\\u0000" in JSON) in a form field, a query string or an API body
made the statement fail on PostgreSQL: a 500 where a person should hear what is wrong,
and for the Event Webhook a batch refused on every retry, its events lost. People's
input with a NUL is refused with a clear error (web/nul_guard.py); what SendGrid sends
is kept, each NUL replaced by U+FFFD (the replacement character).

A lone surrogate ("\\ud800" in JSON without its other half) is no text at all: the
database driver cannot encode it, and an API body with one was a 500 too. Forms and
query strings never carry one (their undecodable bytes become U+FFFD); JSON can.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import orjson

NUL = "\x00"
REPLACEMENT = "\ufffd"
# How JSON writes a NUL (a raw NUL byte is not valid JSON at all).
_JSON_NUL = b"\\u0000"
# JSON's escape of a surrogate (a pair decodes to one character; only a lone one stays).
_JSON_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def _any_text(value: Any, found: Callable[[str], bool]) -> bool:
    """Whether `found` holds for a string, or any key or string inside lists and dicts."""
    if isinstance(value, str):
        return found(value)
    if isinstance(value, dict):
        return any(_any_text(key, found) or _any_text(item, found) for key, item in value.items())
    if isinstance(value, list | tuple):
        return any(_any_text(item, found) for item in value)
    return False


def holds_nul(value: Any) -> bool:
    """Whether a string, or any key or string inside lists and dicts, holds a NUL."""
    return _any_text(value, lambda text: NUL in text)


def holds_lone_surrogate(value: Any) -> bool:
    """Whether a string, or any key or string inside lists and dicts, holds a lone
    surrogate (U+D800 to U+DFFF), which no UTF-8 text can hold."""
    return _any_text(value, lambda text: _SURROGATE.search(text) is not None)


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


def json_body_holds_lone_surrogate(raw: bytes) -> bool:
    """Whether a JSON body, read as the API reads it (Python's json, which lets a lone
    "\\ud800" through), holds a lone surrogate; False for a body that is not JSON."""
    if _JSON_SURROGATE.search(raw) is None:
        return False
    try:
        return holds_lone_surrogate(json.loads(raw))
    except (ValueError, RecursionError):
        return False
