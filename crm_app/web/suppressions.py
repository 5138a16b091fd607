"""The suppression list page (admins): search, add an address, lift one with a reason."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for

from crm_app.drip.audience.suppression import (
    REASON_LABELS,
    SuppressionError,
    add_manual_suppression,
    normalize_email,
    remove_manual_suppression,
    search_suppressions,
)
from crm_app.extensions import db
from crm_app.web.auth import actor_name, admin_required

bp = Blueprint("suppressions", __name__, url_prefix="/suppressions")


def _page_number() -> int:
    try:
        return int(request.args.get("page", 1))
    except ValueError:
        return 1


def _render(status: int = 200, **extra):
    query = request.args.get("q", "")
    result = search_suppressions(db.session, query=query, page=_page_number())
    context = dict(
        result=result,
        q=query,
        reason_labels=REASON_LABELS,
        form={"email": "", "note": ""},
        errors={},
        remove_error=None,
    )
    context.update(extra)
    if request.htmx and request.headers.get("HX-Target") == "suppression-list":
        return render_template("suppressions/_list.html", **context), status
    return render_template("suppressions/index.html", **context), status


@bp.get("/")
@admin_required
def index():
    return _render()


@bp.post("/")
@admin_required
def add():
    email = request.form.get("email", "")
    note = request.form.get("note", "").strip()
    try:
        entry, created = add_manual_suppression(db.session, email, note=note, actor=actor_name())
    except SuppressionError as refused:
        db.session.rollback()
        return _render(422, form={"email": email, "note": note}, errors={"email": str(refused)})
    db.session.commit()
    if created:
        flash(f"{entry.email} is suppressed: it will not be mailed again.", "success")
    else:
        flash(f"{entry.email} was already on the list ({entry.reason}).", "info")
    return redirect(url_for("suppressions.index"))


@bp.post("/remove")
@admin_required
def remove():
    email = normalize_email(request.form.get("email", ""))
    try:
        removed = remove_manual_suppression(
            db.session, email, note=request.form.get("note", ""), actor=actor_name()
        )
    except SuppressionError as refused:
        return _render(422, remove_error={"email": email, "message": str(refused)})
    if not removed:
        flash(f"{email or 'That address'} is not on the suppression list.", "error")
        return redirect(url_for("suppressions.index"))
    db.session.commit()
    flash(f"{email} was removed from the suppression list.", "success")
    return redirect(url_for("suppressions.index"))
