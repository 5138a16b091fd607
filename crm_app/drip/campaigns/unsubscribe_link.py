"""The unsubscribe link every email carries where people can see it (CAN-SPAM, and
Gmail's and Yahoo's bulk-sender rules, besides the List-Unsubscribe headers).

One check, used twice: when a template is saved (rendered for the sample contact with
the preview link: `steps.validate_step` refuses a body without it) and on each email
composed for sending (with the contact's real link: the footer adds the link when a
conditional block left it out, or a template saved before this rule lacks it).
"""

from __future__ import annotations

from html.parser import HTMLParser

HTML_MISSING = (
    "Add a visible unsubscribe link to the HTML body, such as "
    '<a href="{{ unsubscribe_url }}">Unsubscribe</a>: every email must carry one.'
)
TEXT_MISSING = (
    "Add {{ unsubscribe_url }} to the plain-text body (for example "
    '"Unsubscribe: {{ unsubscribe_url }}"): every email must carry the link.'
)


class _Links(HTMLParser):
    """Each <a href>'s target and whether it shows anything (text or an image's alt)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.links: list[tuple[str, bool]] = []
        self._open: list[list] = []  # [href, visible] of the <a> elements being read

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "a":
            self._open.append([(values.get("href") or "").strip(), False])
        elif tag == "img" and self._open and (values.get("alt") or "").strip():
            self._open[-1][1] = True

    def handle_data(self, data: str) -> None:
        if self._open and data.strip():
            self._open[-1][1] = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._open:
            self.links.append(tuple(self._open.pop()))

    def close(self) -> None:
        super().close()
        while self._open:  # an <a> never closed still links what follows it
            self.links.append(tuple(self._open.pop()))


def links_visibly(html: str, url: str) -> bool:
    """True when the HTML has an <a href="url"> with something to see inside it."""
    parser = _Links()
    parser.feed(html)
    parser.close()
    return any(href == url and visible for href, visible in parser.links)


def unsubscribe_link_problems(html: str, text: str, url: str) -> dict[str, str]:
    """{field: message} for each rendered body that does not carry `url` (empty: both do)."""
    problems = {}
    if not links_visibly(html, url):
        problems["body_html"] = HTML_MISSING
    if url not in text:
        problems["body_text"] = TEXT_MISSING
    return problems
