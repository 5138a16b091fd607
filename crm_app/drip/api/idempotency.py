"""Idempotency-Key for POST requests: the first answer is kept for 24 hours.

The same key with the same request replays that answer; with another request it is
refused. The key is claimed (a committed row, unique per token and key) before the
request runs, so two requests with one key never both run: the second is told the
first is still in progress. The answer is stored in the transaction of the change
itself, so a crash leaves either both or neither.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa

from crm_app.drip.common.sql import dialect_insert
from crm_app.models import IdempotencyKey, utcnow

KEPT_FOR = timedelta(hours=24)
# A claim older than this belongs to a request that died: the next one may take it over.
LOCK_TIMEOUT = timedelta(seconds=60)
KEY_MAX = 255
KEYS = IdempotencyKey.__table__


def key_problem(key: str) -> str | None:
    """Why this header value cannot be a key, or None."""
    if not 1 <= len(key) <= KEY_MAX or not key.isprintable() or not key.isascii():
        return f"Idempotency-Key must be 1 to {KEY_MAX} printable ASCII characters."
    return None


def fingerprint(method: str, path: str, body: bytes) -> str:
    return hashlib.sha256(b"\n".join([method.encode(), path.encode(), body])).hexdigest()


@dataclass
class Claim:
    """What a request may do with its key: run (`row_id` is its claim), replay the kept
    answer (`replay`), or be refused (`conflict`: "mismatch" or "in_progress")."""

    row_id: int | None = None
    replay: IdempotencyKey | None = None
    conflict: str | None = None


def claim(session, token_id: int, key: str, print_: str, *, now: datetime | None = None) -> Claim:
    """Claim `key` for this request and COMMIT the claim, or say why not."""
    now = now or utcnow()
    # An expired key is forgotten: the same key starts afresh.
    session.execute(
        sa.delete(KEYS).where(
            KEYS.c.token_id == token_id, KEYS.c.key == key, KEYS.c.created_at < now - KEPT_FOR
        )
    )
    inserted = session.scalars(
        dialect_insert(session)(KEYS)
        .values(
            token_id=token_id, key=key, fingerprint=print_, status="in_progress",
            response_headers={}, created_at=now, locked_at=now,
        )
        .on_conflict_do_nothing(index_elements=["token_id", "key"])
        .returning(KEYS.c.id)
    ).all()  # fmt: skip
    if inserted:
        session.commit()
        return Claim(row_id=inserted[0])
    held = session.scalar(
        sa.select(IdempotencyKey).where(
            IdempotencyKey.token_id == token_id, IdempotencyKey.key == key
        )
    )
    session.commit()
    if held is None:  # deleted between our insert and our read: try once more
        return claim(session, token_id, key, print_, now=now)
    if held.fingerprint != print_:
        return Claim(conflict="mismatch")
    if held.status == "done":
        return Claim(replay=held)
    if held.locked_at < now - LOCK_TIMEOUT and _take_over(session, held, now):
        return Claim(row_id=held.id)
    return Claim(conflict="in_progress")


def _take_over(session, held: IdempotencyKey, now: datetime) -> bool:
    """The request that claimed this key died without an answer (nothing it did was
    committed: its answer and its change share a transaction). Take its claim."""
    taken = session.execute(
        sa.update(KEYS)
        .where(
            KEYS.c.id == held.id,
            KEYS.c.status == "in_progress",
            KEYS.c.locked_at == held.locked_at,
        )
        .values(locked_at=now)
    ).rowcount
    session.commit()
    return taken == 1


def keep_answer(session, row_id: int, status: int, body: str, headers: dict[str, str]) -> None:
    """Store the answer in the caller's transaction (the one holding the change)."""
    session.execute(
        sa.update(KEYS)
        .where(KEYS.c.id == row_id)
        .values(status="done", response_status=status, response_body=body, response_headers=headers)
    )


def release(session, row_id: int) -> None:
    """The request failed and changed nothing: its key may be used again. Commits."""
    session.execute(sa.delete(KEYS).where(KEYS.c.id == row_id, KEYS.c.status == "in_progress"))
    session.commit()


def purge_expired(session, *, now: datetime | None = None) -> int:
    """Forget answers older than KEPT_FOR (the hourly job); the caller commits."""
    cutoff = (now or utcnow()) - KEPT_FOR
    return session.execute(sa.delete(KEYS).where(KEYS.c.created_at < cutoff)).rowcount
