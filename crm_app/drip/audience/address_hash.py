"""Erased addresses are kept only as a keyed hash (HMAC-SHA256 of the normalised
address): enough to recognise the address when it comes back, never enough to read it,
and, without the key, not even to test a guessed address against the list.

The key is ERASURE_HASH_KEY, else one derived from SECRET_KEY. It must stay the same
for as long as the hashes are kept: `key_id` records which key made each hash, and
health turns red when the current key did not make them.
"""

from __future__ import annotations

from crm_app.config import Settings
from crm_app.drip.common.keys import derived_key, keyed_hash


def normalize_email(email: str) -> str:
    """The form every address is compared in (suppressions, hashes): trimmed, lower-case."""
    return (email or "").strip().lower()


def erasure_key(settings: Settings) -> bytes:
    if settings.erasure_hash_key:
        return settings.erasure_hash_key.encode()
    return derived_key(settings.secret_key, "erasure-hash")


def app_erasure_key() -> bytes:
    """The running app's key, for a core function called without one: every web request
    and job has an app context. (Sending threads have none: delivery passes the key.)"""
    from flask import current_app

    from crm_app.config import settings_of

    return erasure_key(settings_of(current_app))


def address_hash(email: str, key: bytes) -> str:
    return keyed_hash(key, normalize_email(email))


def key_id(key: bytes) -> str:
    """A fingerprint of the key (not the key): which key made a stored hash."""
    return keyed_hash(key, "erasure-key-id")[:16]
