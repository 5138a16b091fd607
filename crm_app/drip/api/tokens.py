"""API tokens: created by admins, shown once, kept as a hash, revocable."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

import sqlalchemy as sa

from crm_app.drip.common.errors import FieldErrors
from crm_app.drip.team.audit import record_audit
from crm_app.models import TOKEN_SCOPES, ApiToken, utcnow

TOKEN_PREFIX = "drip_"
SCOPE_LABELS = {"read": "Read only", "read_write": "Read and write"}
# last_used_at is written at most this often per token: not a write per request.
LAST_USED_RESOLUTION = timedelta(minutes=1)
NAME_MAX = 120


class TokenError(FieldErrors):
    """A token form that cannot be saved as it is."""


def hash_secret(secret: str) -> str:
    # The secret carries 256 random bits: a salted slow hash would add nothing but cost
    # on every request, and the hash must be found by an index lookup.
    return hashlib.sha256(secret.encode()).hexdigest()


def create_token(session, name: str, scope: str, *, actor: str) -> tuple[ApiToken, str]:
    """A new token and its secret (the only time the secret exists outside the caller)."""
    name = " ".join((name or "").split())
    errors = {}
    if not name:
        errors["name"] = "Name the token after the system that will use it."
    elif len(name) > NAME_MAX:
        errors["name"] = f"At most {NAME_MAX} characters."
    if scope not in TOKEN_SCOPES:
        errors["scope"] = "Choose read only or read and write."
    if errors:
        raise TokenError(errors)
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(
        name=name,
        scope=scope,
        token_hash=hash_secret(secret),
        token_prefix=secret[: len(TOKEN_PREFIX) + 6],
        created_by=actor,
    )
    session.add(token)
    session.flush()
    summary = f"Created the API token {name} ({scope})"
    record_audit(session, actor, "created", "api_token", token.id, summary)
    return token, secret


def authenticate(session, secret: str, *, now: datetime | None = None) -> ApiToken | None:
    """The live token with this secret, or None. Marks it used (see LAST_USED_RESOLUTION);
    the caller commits."""
    if not secret or not secret.startswith(TOKEN_PREFIX):
        return None
    token = session.scalar(
        sa.select(ApiToken).where(
            ApiToken.token_hash == hash_secret(secret), ApiToken.revoked_at.is_(None)
        )
    )
    if token is None:
        return None
    now = now or utcnow()
    if token.last_used_at is None or now - token.last_used_at >= LAST_USED_RESOLUTION:
        token.last_used_at = now
    return token


def revoke_token(session, token: ApiToken, *, actor: str, now: datetime | None = None) -> bool:
    """False when it was already revoked."""
    if token.revoked_at is not None:
        return False
    token.revoked_at = now or utcnow()
    record_audit(
        session, actor, "revoked", "api_token", token.id, f"Revoked the API token {token.name}"
    )
    return True


def list_tokens(session) -> list[ApiToken]:
    """Live tokens first, newest first."""
    return list(
        session.scalars(
            sa.select(ApiToken).order_by(
                ApiToken.revoked_at.is_not(None), ApiToken.created_at.desc(), ApiToken.id.desc()
            )
        )
    )
