"""Keys derived from SECRET_KEY, one per purpose: a value signed or hashed for one
purpose (a reply token, an erased address) can never be replayed as another."""

from __future__ import annotations

import hashlib
import hmac


def derived_key(secret_key: str, purpose: str) -> bytes:
    """A 32-byte key for `purpose`, derived from `secret_key` (HMAC-SHA256)."""
    if not secret_key:
        raise ValueError("SECRET_KEY is empty: no key can be derived from it")
    label = f"drip-crm:{purpose}".encode()
    return hmac.new(secret_key.encode(), label, hashlib.sha256).digest()


def keyed_hash(key: bytes, value: str) -> str:
    """HMAC-SHA256 of `value` under `key`, as 64 hex characters."""
    return hmac.new(key, value.encode(), hashlib.sha256).hexdigest()
