"""The suppression list page (admins): search, add an address, lift one with a reason."""

from __future__ import annotations

from flask import Blueprint, request, url_for

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
from crm_app.web.htmx import action_response, render_fragment_or_page

bp = Blueprint("suppressions", __name__, url_prefix="/suppressions")


def _render(status: int = 200, **extra):
    query = request.args.get("q", "")
    result = search_suppressions(
        db.session, query=query, page=request.args.get("page", 1, type=int)
    )
    context = dict(
        result=result,
        q=query,
        reason_labels=REASON_LABELS,
        form={"email": "", "note": ""},
        errors={},
        remove_error=None,
    )
    context.update(extra)
    # The live search swaps only the list.
    page = render_fragment_or_page(
        "suppressions/_list.html", "suppressions/index.html", target="suppression-list", **context
    )
    return page, status


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
        message, category = f"{entry.email} is suppressed: it will not be mailed again.", "success"
    else:
        message, category = f"{entry.email} was already on the list ({entry.reason}).", "info"
    return action_response(url_for("suppressions.index"), message, category)


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
    back = url_for("suppressions.index")
    if not removed:
        return action_response(
            back, f"{email or 'That address'} is not on the suppression list.", "error"
        )
    db.session.commit()
    return action_response(back, f"{email} was removed from the suppression list.")
