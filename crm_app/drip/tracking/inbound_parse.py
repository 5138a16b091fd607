"""SendGrid's Inbound Parse post, read: the multipart/form-data fields that say who
replied to what (`to`, `cc`, `from`, `subject`, `text`, `html`, `headers`,
`envelope`, `charsets`, `spam_score`), each decoded in the charset SendGrid names in
`charsets`. Attachments are skipped without being kept, and each field is kept up to
FIELD_LIMIT bytes: the first lines of a reply are all we need, so a large post costs
reading time but never memory. (The web view refuses a post over
INBOUND_PARSE_MAX_BYTES before reading it.)
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from email.message import Message as HeaderBlock
from email.parser import HeaderParser
from email.utils import getaddresses
from itertools import chain

from werkzeug.http import parse_options_header
from werkzeug.sansio.multipart import Data, Epilogue, Field, File, MultipartDecoder, NeedData

from crm_app.drip.common.nul import without_nul

TEXT_FIELDS = ("to", "cc", "from", "subject", "text", "html", "headers", "spam_score")
FIELDS = (*TEXT_FIELDS, "envelope", "charsets")
FIELD_LIMIT = 256 * 1024  # bytes kept per field
MAX_PARTS = 1000  # fields and attachments in one post


class InboundParseError(ValueError):
    """The post is not a multipart form SendGrid could have sent."""


@dataclass(frozen=True)
class InboundEmail:
    """One received email, as the fields SendGrid posted (missing ones are "")."""

    to: str = ""
    cc: str = ""
    from_: str = ""
    subject: str = ""
    text: str = ""
    html: str = ""
    headers: str = ""  # the raw header block
    spam_score: str = ""
    envelope_to: list[str] = field(default_factory=list)
    envelope_from: str | None = None  # None: no envelope posted; "": a null sender

    def recipients(self) -> list[str]:
        """Every address it was sent to: the SMTP envelope first, then To and Cc."""
        listed = [address for _, address in getaddresses([self.to, self.cc]) if address]
        return [*self.envelope_to, *listed]

    def sender(self) -> str:
        addresses = [address for _, address in getaddresses([self.from_]) if address]
        return addresses[0] if addresses else self.from_.strip()

    def header_block(self) -> HeaderBlock:
        return HeaderParser().parsestr(self.headers, headersonly=True)


def _fields(content_type: str, chunks: Iterable[bytes]) -> dict[str, bytes]:
    """The wanted fields' raw bytes (each cut at FIELD_LIMIT); files are read past."""
    mimetype, options = parse_options_header(content_type)
    boundary = options.get("boundary", "")
    if mimetype != "multipart/form-data" or not boundary:
        raise InboundParseError("expected multipart/form-data with a boundary")
    decoder = MultipartDecoder(boundary.encode("latin-1"), max_parts=MAX_PARTS)
    kept: dict[str, bytearray] = {}
    current: bytearray | None = None
    for chunk in chain(chunks, [None]):  # None: the end of the body
        decoder.receive_data(chunk)
        event = decoder.next_event()
        while not isinstance(event, NeedData | Epilogue):
            if isinstance(event, Field) and event.name in FIELDS and event.name not in kept:
                current = kept[event.name] = bytearray()
            elif isinstance(event, Field | File):
                current = None  # a field we do not use, a repeat, or an attachment
            elif isinstance(event, Data) and current is not None:
                current.extend(event.data[: FIELD_LIMIT - len(current)])
            event = decoder.next_event()
        if isinstance(event, Epilogue):
            break
    else:
        raise InboundParseError("the form ended before its closing boundary")
    return {name: bytes(value) for name, value in kept.items()}


def _decode(raw: bytes, charset: object) -> str:
    # `charsets` is JSON anyone with the URL can post: a name that is no string, or no
    # codec's, is read as UTF-8 (a 500 made SendGrid retry, then drop, the reply).
    try:
        codec = codecs.lookup(charset if isinstance(charset, str) and charset else "utf-8").name
    except (LookupError, ValueError):
        codec = "utf-8"
    return without_nul(raw.decode(codec, "replace"))


def _json(raw: bytes | None) -> dict:
    try:
        value = json.loads(raw or b"{}")
    except (ValueError, RecursionError):  # not JSON, or nested past Python's stack
        return {}
    return without_nul(value) if isinstance(value, dict) else {}


def read_inbound_post(content_type: str, chunks: Iterable[bytes]) -> InboundEmail:
    """The email in one Inbound Parse post, or InboundParseError. (RequestEntityTooLarge
    from `chunks`, or for more than MAX_PARTS parts, goes through.)"""
    try:
        raw = _fields(content_type, chunks)
    except InboundParseError:
        raise
    except ValueError as broken:  # werkzeug's decoder: not a well-formed multipart body
        raise InboundParseError(f"unreadable multipart form: {broken}") from None
    charsets = _json(raw.get("charsets"))
    text = {name: _decode(raw.get(name, b""), charsets.get(name)) for name in TEXT_FIELDS}
    envelope = _json(raw.get("envelope"))
    envelope_to = envelope.get("to")
    envelope_from = envelope.get("from")
    return InboundEmail(
        to=text["to"],
        cc=text["cc"],
        from_=text["from"],
        subject=text["subject"],
        text=text["text"],
        html=text["html"],
        headers=text["headers"],
        spam_score=text["spam_score"].strip(),
        envelope_to=[a for a in envelope_to if isinstance(a, str)]
        if isinstance(envelope_to, list)
        else [],
        envelope_from=envelope_from if isinstance(envelope_from, str) else None,
    )
