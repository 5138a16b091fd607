from __future__ import annotations

from functools import cache, wraps
from urllib.parse import urlsplit

import sqlalchemy as sa
from flask import Blueprint, abort, flash, redirect, render_template, request, session, url_for
from flask_login import current_user, login_required, login_user, logout_user
from werkzeug.security import check_password_hash, generate_password_hash

from crm_app.drip.team.accounts import user_for_session
from crm_app.drip.team.users import login_email
from crm_app.extensions import db, login_manager
from crm_app.models import User
from crm_app.web.body_limits import body_limit
from crm_app.web.htmx import action_response, htmx_alert, hx_redirect
from crm_app.web.login_throttle import throttle_failed_logins

bp = Blueprint("auth", __name__)

# An email, a password and the CSRF token: nothing bigger is ever a real login.
LOGIN_MAX_BYTES = 8 * 1024


@login_manager.user_loader
def load_user(session_id: str) -> User | None:
    # "<id>:<session version>": refused once the user logged out, changed password or was disabled.
    return user_for_session(db.session, session_id)


def start_session(user: User) -> None:
    """Log `user` in on a new session: nothing of the old one (nor its CSRF token) survives."""
    session.clear()
    session.permanent = True
    login_user(user)


def admin_required(view):
    """Logged out -> login page; logged in but not an admin -> 403."""

    @wraps(view)
    @login_required
    def wrapped(*args, **kwargs):
        if not current_user.is_admin:
            abort(403)
        return view(*args, **kwargs)

    return wrapped


def actor_name() -> str:
    return f"user:{current_user.email}" if current_user.is_authenticated else "anonymous"


def _safe_next(target: str | None) -> str:
    """Only a path on this site; browsers read `/\\evil.com` (even with tabs) as `//evil.com`."""
    if target:
        cleaned = "".join(ch for ch in target if ch.isprintable() and not ch.isspace())
        cleaned = cleaned.replace("\\", "/")
        parts = urlsplit(cleaned)
        if cleaned.startswith("/") and not cleaned.startswith("//") and not parts.netloc:
            if not parts.scheme:
                return cleaned
    return url_for("main.home")


@cache
def _dummy_hash() -> str:
    """Checked when the email is unknown, so both failures take the same time."""
    return generate_password_hash("not-a-real-password")


@bp.route("/login", methods=["GET", "POST"])
@body_limit(LOGIN_MAX_BYTES)
@throttle_failed_logins
def login():
    # A logged-in user sees the form too (to switch account); the page says who they are.
    error = None
    if request.method == "POST":
        email = login_email(request.form.get("email", ""))
        password = request.form.get("password", "")
        user = db.session.scalar(sa.select(User).where(sa.func.lower(User.email) == email))
        if user is None:
            check_password_hash(_dummy_hash(), password)
            error = "Wrong email or password."
        elif not user.check_password(password):
            error = "Wrong email or password."
        elif not user.is_active:
            error = "This account is disabled."
        else:
            start_session(user)
            return redirect(_safe_next(request.args.get("next")))
    return render_template("auth/login.html", error=error), (401 if error else 200)


@bp.post("/logout")
@login_required
def logout():
    current_user.revoke_sessions()  # a copy of this cookie must not outlive the logout
    db.session.commit()
    logout_user()
    session.clear()
    return action_response(url_for("auth.login"), "You are logged out.", "info")


@bp.get("/logout")
def logout_page():
    """A typed or bookmarked /logout: a page that asks (logging out is a POST)."""
    if not current_user.is_authenticated:
        return redirect(url_for("auth.login"))
    return render_template("auth/logout.html")


def _page_path() -> str | None:
    """This site's page the request came from (htmx names it; a form post's Referer)."""
    url = request.headers.get("HX-Current-URL") or request.referrer
    if not url:
        return None
    parts = urlsplit(url)
    if parts.netloc and parts.netloc != request.host:
        return None
    return parts.path + (f"?{parts.query}" if parts.query else "")


def signed_out(status: int = 401):
    """An action from a page whose session has ended (expired, or logged out in another
    tab): said next to the action for htmx, else on the login page; either way with a
    way back to the page."""
    login_url = url_for("auth.login", next=_page_path())
    if request.htmx:
        return htmx_alert("You were signed out;", status, link=("sign in again.", login_url))
    flash("You were signed out; sign in again.", "info")
    return redirect(login_url)


@login_manager.unauthorized_handler
def unauthorized():
    """Expired or missing session: back to the login page, also from an HTMX request.
    An action (a form or an upload whose CSRF token still holds, the session having
    ended on another device) is told it was signed out, with a way back to its page."""
    if request.method not in ("GET", "HEAD"):
        return signed_out()
    # full_path ends in "?" when there is no query string.
    login_url = url_for("auth.login", next=request.full_path.rstrip("?"))
    if request.htmx:
        return hx_redirect(login_url, status=401)
    flash(login_manager.login_message, "info")
    return redirect(login_url)
