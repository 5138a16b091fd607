"""The Users page (admins): add, edit, disable and re-enable users, set their roles,
hand out a one-time set-password link or set a password."""

from __future__ import annotations

from flask import Blueprint, current_app, render_template, request, url_for
from flask_login import current_user

from crm_app.config import settings_of
from crm_app.drip.common.timezones import TIMEZONE_CHOICES
from crm_app.drip.team.accounts import issue_password_link, set_active, set_password_by_admin
from crm_app.drip.team.passwords import HINT as PASSWORD_HINT
from crm_app.drip.team.users import (
    ROLE_LABELS,
    NewUser,
    UserEditError,
    create_user,
    list_users,
    profile_values,
    update_user,
)
from crm_app.extensions import db
from crm_app.models import User
from crm_app.web.auth import admin_required, start_session
from crm_app.web.htmx import action_response

bp = Blueprint("users", __name__, url_prefix="/users")
NEW_USER_FORM = {"name": "", "email": "", "role": "staff", "password_mode": "link"}


def me() -> User:
    """The logged-in user as a model (the core records it as the actor)."""
    return current_user._get_current_object()


def _render_index(form=None, errors=None, status: int = 200):
    return render_template(
        "users/index.html",
        users=list_users(db.session),
        form=form or NEW_USER_FORM,
        errors=errors or {},
        roles=ROLE_LABELS,
        password_hint=PASSWORD_HINT,
    ), status


def _render_user(user: User, status: int = 200, **extra):
    """A user's page; `link` (just created) is shown once and never stored."""
    context = {
        "user": user,
        "values": extra.pop("values", None) or profile_values(user),
        "errors": extra.pop("errors", {}),
        "roles": ROLE_LABELS,
        "timezones": TIMEZONE_CHOICES,
        "password_hint": PASSWORD_HINT,
        "link": None,
        **extra,
    }
    return render_template("users/edit.html", **context), status


def _link_url(token: str) -> str:
    base = settings_of(current_app).public_base_url.rstrip("/")
    return base + url_for("account.set_password", token=token)


def _new_link(user: User):
    """Create a link and show it at once: the secret must not travel in a redirect
    (a cookie or a URL that stays in the history), so this answers the POST itself."""
    hours = settings_of(current_app).password_link_hours
    token = issue_password_link(db.session, user, actor=me(), hours=hours)
    db.session.commit()
    return _render_user(user, 201, link=_link_url(token), link_hours=hours)


@bp.get("/")
@admin_required
def index():
    return _render_index()


@bp.post("/")
@admin_required
def create():
    form = {name: request.form.get(name, "") for name in NEW_USER_FORM}
    by_link = form["password_mode"] != "set"
    new = NewUser(
        email=form["email"],
        name=form["name"],
        role=form["role"],
        password=None if by_link else request.form.get("password", ""),
    )
    try:
        user = create_user(db.session, new, actor=me())
    except UserEditError as refused:
        db.session.rollback()
        return _render_index(form, refused.errors, 422)
    if by_link:
        return _new_link(user)
    db.session.commit()
    return action_response(
        url_for("users.index"), f"Added {user.email}: they can log in with the password you set."
    )


@bp.route("/<int:user_id>", methods=["GET", "POST"])
@admin_required
def edit(user_id: int):
    user = db.get_or_404(User, user_id)
    if request.method != "POST":
        return _render_user(user)
    try:
        changed = update_user(db.session, user, request.form, actor=me())
    except UserEditError as refused:
        db.session.rollback()
        return _render_user(user, 422, values=request.form, errors=refused.errors)
    db.session.commit()
    message = f"Saved {user.email}." if changed else "Nothing changed."
    return action_response(url_for("users.edit", user_id=user.id), message)


@bp.post("/<int:user_id>/active")
@admin_required
def toggle_active(user_id: int):
    user = db.get_or_404(User, user_id)
    active = request.form.get("active") == "1"
    try:
        set_active(db.session, user, active, actor=me())
    except UserEditError as refused:
        db.session.rollback()
        return _render_user(user, 422, errors=refused.errors)
    db.session.commit()
    message = (
        f"{user.email} can log in again."
        if active
        else f"{user.email} is disabled: their sessions have ended and they cannot log in."
    )
    return action_response(url_for("users.edit", user_id=user.id), message)


@bp.post("/<int:user_id>/password-link")
@admin_required
def password_link(user_id: int):
    user = db.get_or_404(User, user_id)
    try:
        return _new_link(user)
    except UserEditError as refused:
        db.session.rollback()
        return _render_user(user, 422, errors=refused.errors)


@bp.post("/<int:user_id>/password")
@admin_required
def set_password(user_id: int):
    user = db.get_or_404(User, user_id)
    try:
        set_password_by_admin(db.session, user, request.form, actor=me())
    except UserEditError as refused:
        db.session.rollback()
        return _render_user(user, 422, errors=refused.errors)
    db.session.commit()
    if user.id == current_user.id:
        start_session(user)  # every session ended; this admin stays logged in on a new one
    message = f"New password set for {user.email}; their other sessions have ended."
    return action_response(url_for("users.edit", user_id=user.id), message)
