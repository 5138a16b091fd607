"""The Reply-To of each email: `reply+<message id>-<tag>@<INBOUND_PARSE_DOMAIN>`, where
the tag is an HMAC of the message id (a key derived from SECRET_KEY): a reply is tied
to its message even when it quotes nothing, and a token can be neither guessed nor
altered into another message's. Lower-case hex and digits only: mail systems may
change the case of an address.
"""

from __future__ import annotations

import hmac
import re

from crm_app.config import Settings
from crm_app.drip.common.keys import derived_key, keyed_hash

REPLY_PREFIX = "reply+"
TAG_LENGTH = 20  # hex digits of the HMAC: 80 bits
_TOKEN = re.compile(rf"{re.escape(REPLY_PREFIX)}([0-9]{{1,18}})-([0-9a-f]{{{TAG_LENGTH}}})")


def _tag(message_id: int, secret_key: str) -> str:
    return keyed_hash(derived_key(secret_key, "reply-token"), str(message_id))[:TAG_LENGTH]


def reply_address(message_id: int, settings: Settings) -> str | None:
    """The Reply-To of this message's email; None when no parse domain is configured."""
    if not settings.inbound_parse_domain:
        return None
    token = f"{message_id}-{_tag(message_id, settings.secret_key)}"
    return f"{REPLY_PREFIX}{token}@{settings.inbound_parse_domain}"


def replied_message_id(recipients: list[str], secret_key: str) -> int | None:
    """The message a reply answers, from the first recipient carrying a valid token.
    (Any domain: the HMAC is the proof, and a domain may change while replies are due.)"""
    for address in recipients:
        local = address.strip().lower().rsplit("@", 1)[0]
        match = _TOKEN.fullmatch(local)
        if match and hmac.compare_digest(match[2], _tag(int(match[1]), secret_key)):
            return int(match[1])
    return None
