"""The provider's health flag: SendGrid answered 401/403 (a wrong or revoked API key).

While the flag stands, health is red and a batch stops at its first refusal; the
next accepted send clears it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from crm_app.models import SystemState

AUTH_FAILURE_KEY = "backend_auth_failure"


@dataclass(frozen=True)
class AuthFailure:
    """SendGrid's refusal of the key, while it stands."""

    detail: str  # SendGrid's answer, e.g. "SendGrid refused it (401): ..."
    at: datetime  # the latest refusal


def set_backend_auth_failure(session, detail: str, now: datetime) -> None:
    state = session.get(SystemState, AUTH_FAILURE_KEY)
    if state is None:
        try:
            # Several threads (or workers) meet the same bad key at once: one inserts the
            # row; the others must not lose their own transaction (the message's `failed`).
            with session.begin_nested():
                session.add(SystemState(key=AUTH_FAILURE_KEY, value=detail, updated_at=now))
            return
        except IntegrityError:
            state = session.get(SystemState, AUTH_FAILURE_KEY, populate_existing=True)
    state.value, state.updated_at = detail, now


def clear_backend_auth_failure(session) -> None:
    session.execute(sa.delete(SystemState).where(SystemState.key == AUTH_FAILURE_KEY))


def current_auth_failure(session) -> AuthFailure | None:
    """SendGrid's last 401/403 and when, while it lasts (health turns red and the
    dashboard says so), else None."""
    state = session.get(SystemState, AUTH_FAILURE_KEY)
    return AuthFailure(state.value, state.updated_at) if state is not None else None


def backend_auth_failure(session) -> str | None:
    """SendGrid's last 401/403 text while it lasts (health turns red), else None."""
    failure = current_auth_failure(session)
    return failure.detail if failure is not None else None


def auth_failure_flag_set(session) -> bool:
    return session.get(SystemState, AUTH_FAILURE_KEY) is not None
