"""Failed logins are throttled by account and by client address (Flask-Limiter on Redis);
so are wrong current passwords on the change-password form (a stolen session must not
become an unthrottled way to guess the password).

Only failures count (a 401 from the login view, or a view's mark_wrong_password), so a
user who types the password right is never slowed down; once a limit is reached,
further attempts are refused before the password is hashed (a hash costs ~130 ms of
CPU: unthrottled, a login form is also a denial of service), with the time to wait on
the page and in Retry-After. The counters live in Redis, shared by every web process,
and expire with their window.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable

from flask import Response, current_app, g, make_response, render_template, request
from flask_limiter import RequestLimit
from flask_limiter.util import get_remote_address
from flask_login import current_user

from crm_app.config import settings_of
from crm_app.drip.team.users import login_email
from crm_app.extensions import limiter


def _hashed_account(email: str) -> str:
    # Hashed: the counter's Redis key then holds no email address, and has a fixed size.
    # The login's own spelling: each spelling of an address must not get its own count.
    return "login-account:" + hashlib.sha256(login_email(email).encode()).hexdigest()[:32]


def _account_key() -> str:
    return _hashed_account(request.form.get("email", ""))


def _own_account_key() -> str:
    return _hashed_account(current_user.email)


def _address_key() -> str:
    return "login-address:" + get_remote_address()


def mark_wrong_password() -> None:
    """Count this request as a failure: for a form whose other mistakes (a weak new
    password) answer with the same status and must not count."""
    g.wrong_password = True


def _failed(response: Response) -> bool:
    return response.status_code == 401 or g.get("wrong_password", False)


# The page that says so: the form the failures came from, with the error on it.
Refusal = Callable[[str], str]


def _login_page(error: str) -> str:
    return render_template("auth/login.html", error=error)


def _refusal(reason: str, what: str, page: Refusal) -> Callable[[RequestLimit], Response]:
    def refuse(limit: RequestLimit) -> Response:
        wait = max(1, int(limit.reset_at - time.time()))  # as the API's 429 counts it
        minutes = -(-wait // 60)
        error = (
            f"Too many {reason}. For your safety, {what} is paused: "
            f"try again in {minutes} minute{'s' if minutes != 1 else ''}."
        )
        response = make_response(page(error), 429)
        response.headers["Retry-After"] = str(wait)
        return response

    return refuse


def _failed_attempts(setting: str, key_func: Callable[[], str], refuse: Callable):
    """A limit on failures, read from the Settings field `setting` on each request."""
    return limiter.limit(
        lambda: getattr(settings_of(current_app), setting),
        key_func=key_func,
        methods=["POST"],
        deduct_when=_failed,
        on_breach=refuse,
    )


def throttle_failed_logins(view: Callable) -> Callable:
    """The login view's two limits: by account and by client address."""
    per_account = _failed_attempts(
        "login_limit_per_account",
        _account_key,
        _refusal("failed logins for this account", "logging in", _login_page),
    )
    per_address = _failed_attempts(
        "login_limit_per_address",
        _address_key,
        _refusal("failed logins from your network address", "logging in", _login_page),
    )
    return per_account(per_address(view))


def throttle_wrong_passwords(page: Refusal) -> Callable[[Callable], Callable]:
    """The same two limits for a logged-in form that asks for the current password (the
    view calls mark_wrong_password); `page` renders the form with the refusal's error.
    Its counters are its own: guesses here do not lock the login page."""

    def decorate(view: Callable) -> Callable:
        what = "changing your password"
        per_account = _failed_attempts(
            "login_limit_per_account",
            _own_account_key,
            _refusal("wrong current passwords for this account", what, page),
        )
        per_address = _failed_attempts(
            "login_limit_per_address",
            _address_key,
            _refusal("wrong current passwords from your network address", what, page),
        )
        return per_account(per_address(view))

    return decorate
