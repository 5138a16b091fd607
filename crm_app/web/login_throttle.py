"""Failed logins are throttled by account and by client address (Flask-Limiter on Redis).

Only failures count (a 401 from the login view), so a user who types the password right
is never slowed down; once a limit is reached, further attempts are refused before the
password is hashed (a hash costs ~130 ms of CPU: unthrottled, a login form is also a
denial of service), with the time to wait on the page and in Retry-After. The counters
live in Redis, shared by every web process, and expire with their window.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable

from flask import Response, current_app, make_response, render_template, request
from flask_limiter import RequestLimit
from flask_limiter.util import get_remote_address

from crm_app.config import settings_of
from crm_app.extensions import limiter


def _account_key() -> str:
    # Hashed: the counter's Redis key then holds no email address, and has a fixed size.
    email = request.form.get("email", "").strip().lower()
    return "login-account:" + hashlib.sha256(email.encode()).hexdigest()[:32]


def _address_key() -> str:
    return "login-address:" + get_remote_address()


def _failed(response: Response) -> bool:
    return response.status_code == 401


def _refusal(reason: str) -> Callable[[RequestLimit], Response]:
    def refuse(limit: RequestLimit) -> Response:
        wait = max(1, limit.reset_at - int(time.time()))
        minutes = -(-wait // 60)
        error = (
            f"Too many failed logins {reason}. For your safety, logging in is paused: "
            f"try again in {minutes} minute{'s' if minutes != 1 else ''}."
        )
        response = make_response(render_template("auth/login.html", error=error), 429)
        response.headers["Retry-After"] = str(wait)
        return response

    return refuse


def _failed_logins(setting: str, key_func: Callable[[], str], reason: str):
    """A limit on failures, read from the Settings field `setting` on each request."""
    return limiter.limit(
        lambda: getattr(settings_of(current_app), setting),
        key_func=key_func,
        methods=["POST"],
        deduct_when=_failed,
        on_breach=_refusal(reason),
    )


def throttle_failed_logins(view: Callable) -> Callable:
    """The login view's two limits: by account and by client address."""
    per_account = _failed_logins("login_limit_per_account", _account_key, "for this account")
    per_address = _failed_logins(
        "login_limit_per_address", _address_key, "from your network address"
    )
    return per_account(per_address(view))
