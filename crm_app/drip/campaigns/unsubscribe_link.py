"""The unsubscribe link every email carries where people can see it (CAN-SPAM, and
Gmail's and Yahoo's bulk-sender rules, besides the List-Unsubscribe headers).

One check, used twice: when a template is saved (rendered for the sample contact with
the preview link: `step_input.validate_step` refuses a body without it) and on each email
composed for sending (with the contact's real link: the footer adds the link when a
conditional block left it out, or a template saved before this rule lacks it).
"""

from __future__ import annotations

import re
from html import unescape

from markupsafe import escape

HTML_MISSING = (
    "Add a visible unsubscribe link to the HTML body, such as "
    '<a href="{{ unsubscribe_url }}">Unsubscribe</a>: every email must carry one.'
)
TEXT_MISSING = (
    "Add {{ unsubscribe_url }} to the plain-text body (for example "
    '"Unsubscribe: {{ unsubscribe_url }}"): every email must carry the link.'
)


# The HTML this rule reads: comments (hidden), <a> elements, their href, their content.
# Regular expressions, not a parser: every email composed for sending runs this, and an
# HTML parser cost three times the rendering of the email itself. A tag's inside stops
# at the next "<" too ([^<>]*): with [^>]*, each of thousands of unclosed "<a " read the
# rest of the body again (30 KB of them: 0.6 s, growing with the square of the size, at
# every save and every send).
_COMMENT = re.compile(r"<!--.*?(?:-->|$)", re.DOTALL)
_ANCHOR = re.compile(r"<a\b([^<>]*)>(.*?)(?=</a\s*>|<a\b|$)", re.DOTALL | re.IGNORECASE)
_HREF = re.compile(r"""\bhref\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>]+))""", re.IGNORECASE)
_TAG = re.compile(r"<[^<>]*>")
_IMAGE_WITH_ALT = re.compile(
    r"""<img\b[^<>]*\balt\s*=\s*(?:"\s*[^"\s<][^"<]*"|'\s*[^'\s<][^'<]*')""", re.I
)


def _shows_something(content: str) -> bool:
    return bool(unescape(_TAG.sub("", content)).strip() or _IMAGE_WITH_ALT.search(content))


def links_visibly(html: str, url: str) -> bool:
    """True when the HTML has an <a href="url"> (outside comments) with something to see
    inside it: text, or an image with alt text."""
    if url not in html and str(escape(url)) not in html:
        return False
    for attributes, content in _ANCHOR.findall(_COMMENT.sub("", html)):
        href = _HREF.search(attributes)
        target = next((g for g in href.groups() if g is not None), "") if href else ""
        if unescape(target).strip() == url and _shows_something(content):
            return True
    return False


def unsubscribe_link_problems(html: str, text: str, url: str) -> dict[str, str]:
    """{field: message} for each rendered body that does not carry `url` (empty: both do)."""
    problems = {}
    if not links_visibly(html, url):
        problems["body_html"] = HTML_MISSING
    if url not in text:
        problems["body_text"] = TEXT_MISSING
    return problems
