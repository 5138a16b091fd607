"""The first lines a person wrote in a reply, without the quoted email below them, the
signature or the "Sent from my phone" line: what the timeline shows. Plain text only
(the timeline escapes it like everything else), trimmed to FIRST_LINES_MAX characters.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

FIRST_LINES = 3
FIRST_LINES_MAX = 280
# Where the quoted part (or the signature) of a reply begins, in common mail programs
# and languages.
_QUOTE_STARTS = re.compile(
    r"^(>|-- ?$|_{8,}|-{2,} ?(original message|forwarded message)"
    r"|(from|von|de|da|van|från|od) ?:\s|sent from my |envoyé de mon |von meinem )",
    re.IGNORECASE,
)
# "On <date>, <name> wrote:", "Am <date> schrieb <name>:": the verb, then the colon.
_QUOTE_INTRO_VERB = re.compile(
    r"\b(wrote|a écrit|schrieb|escribió|ha scritto|schreef|escreveu|skrev|napisał)\b",
    re.IGNORECASE,
)
_QUOTE_INTRO = re.compile(r"^(on|le|am|el|il|op|em|den|w dniu) ", re.IGNORECASE)
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_BLOCK_TAGS = frozenset({"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "table"})
_SKIPPED_TAGS = frozenset({"blockquote", "script", "style", "head", "title"})


class _HtmlText(HTMLParser):
    """The visible text of an HTML body, with line breaks at block elements, leaving out
    quoted blocks (<blockquote>), scripts and styles."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skipping = 0

    def handle_starttag(self, tag: str, attrs) -> None:
        if tag in _SKIPPED_TAGS:
            self._skipping += 1
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIPPED_TAGS and self._skipping:
            self._skipping -= 1
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self.parts.append(data)


def html_text(html: str) -> str:
    parser = _HtmlText()
    parser.feed(html)
    parser.close()
    return "".join(parser.parts)


def _ends_quote_intro(line: str) -> bool:
    """Whether the line ends with a colon after one of the verbs. (As one pattern,
    "verb.*:$", each verb in a long line of "wrote :" scanned the rest of it again: the
    time grew with the square of the line, 7 s for a reply of one 550 KB line.)"""
    end = len(line.rstrip())
    return line[:end].endswith(":") and _QUOTE_INTRO_VERB.search(line, 0, end - 1) is not None


def _own_lines(text: str) -> list[str]:
    """The lines above the quote: it starts at a quote marker, or at an "On ... wrote:"
    line, which mail programs may break in two (then it starts a line earlier)."""
    lines = [" ".join(_CONTROL.sub(" ", line).split()) for line in text.splitlines()]
    for number, line in enumerate(lines):
        if _QUOTE_STARTS.match(line):
            return lines[:number]
        if _ends_quote_intro(line):
            broken = (
                number > 0
                and not _QUOTE_INTRO.match(line)
                and _QUOTE_INTRO.match(lines[number - 1])
            )
            return lines[: number - 1 if broken else number]
    return lines


def first_lines(text: str, html: str = "") -> str:
    """The first lines the person wrote (from the text body, else the HTML one), on one
    line, at most FIRST_LINES_MAX characters."""
    source = text if text.strip() else html_text(html)
    kept = [line for line in _own_lines(source) if line][:FIRST_LINES]
    joined = " / ".join(kept)
    if len(joined) > FIRST_LINES_MAX:
        joined = joined[: FIRST_LINES_MAX - 1].rstrip() + "…"
    return joined
