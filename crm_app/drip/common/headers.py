"""Text that goes into a header (an email's To name and Subject, an HTTP header) is one line.

A contact's name is typed by a user, imported from a CSV or sent by the API: a CR/LF in
it must never reach a header, where it could start a new header line (or make SendGrid
refuse the email for good).
"""

from __future__ import annotations

import re

# CR, LF and every other control character, and the Unicode line and paragraph separators.
_LINE_BREAKING = re.compile(r"[\x00-\x1f\x7f\u0085\u2028\u2029]+")


def header_safe(text: str) -> str:
    """`text` on one line: each run of control characters becomes one space."""
    return _LINE_BREAKING.sub(" ", text).strip()
