"""Everyone's own account: the profile (name, title, signature, time zone, From name),
a new password, and the one-time set-password link an admin hands out."""

from __future__ import annotations

from flask import Blueprint, current_app, render_template, request, url_for
from flask_login import login_required

from crm_app.config import settings_of
from crm_app.drip.common.timezones import TIMEZONE_CHOICES
from crm_app.drip.team.accounts import change_own_password, password_link, redeem_password_link
from crm_app.drip.team.passwords import HINT as PASSWORD_HINT
from crm_app.drip.team.users import UserEditError, profile_values, update_profile
from crm_app.drip.team.workspace import sender_preview
from crm_app.extensions import db
from crm_app.web.auth import start_session
from crm_app.web.htmx import action_response
from crm_app.web.login_throttle import mark_wrong_password, throttle_wrong_passwords
from crm_app.web.users import me

bp = Blueprint("account", __name__)


def _render_profile(status: int = 200, **extra):
    user = me()
    from_line, signature = sender_preview(db.session, user, settings_of(current_app))
    context = {
        "values": extra.pop("values", None) or profile_values(user),
        "errors": extra.pop("errors", {}),
        "timezones": TIMEZONE_CHOICES,
        "from_line": from_line,
        "signature": signature,
        **extra,
    }
    return render_template("account/profile.html", **context), status


@bp.route("/profile", methods=["GET", "POST"])
@login_required
def profile():
    if request.method != "POST":
        return _render_profile()
    try:
        changed = update_profile(db.session, me(), request.form, actor=me())
    except UserEditError as refused:
        db.session.rollback()
        return _render_profile(422, values=request.form, errors=refused.errors)
    db.session.commit()
    message = "Your profile is saved." if changed else "Nothing changed."
    return action_response(url_for("account.profile"), message)


def _password_page(errors: dict[str, str]) -> str:
    return render_template("account/password.html", errors=errors, password_hint=PASSWORD_HINT)


@bp.route("/profile/password", methods=["GET", "POST"])
@login_required
@throttle_wrong_passwords(lambda error: _password_page({"current_password": error}))
def change_password():
    errors = {}
    if request.method == "POST":
        try:
            change_own_password(db.session, me(), request.form)
        except UserEditError as refused:
            db.session.rollback()
            errors = refused.errors
            if "current_password" in errors:
                mark_wrong_password()  # a guess: throttled like a failed login
        else:
            db.session.commit()
            start_session(me())  # every session ended with the old password; this one renews
            return action_response(
                url_for("account.profile"),
                "Your password is changed. Every other session of yours has ended.",
            )
    return _password_page(errors), (422 if errors else 200)


@bp.route("/set-password/<token>", methods=["GET", "POST"])
def set_password(token: str):
    """The one-time link: works logged out; afterwards the user logs in."""
    link = password_link(db.session, token)
    errors = {}
    if link is not None and request.method == "POST":
        try:
            redeem_password_link(db.session, token, request.form)
        except UserEditError as refused:
            db.session.rollback()
            errors = refused.errors
        else:
            db.session.commit()
            # No ?email= for the form: an address in a URL stays in logs and the history.
            return action_response(
                url_for("auth.login"), "Your password is set. Log in with it now."
            )
    page = render_template(
        "account/set_password.html",
        link=link,
        errors=errors,
        password_hint=PASSWORD_HINT,
    )
    return page, (404 if link is None else 422 if errors else 200)
