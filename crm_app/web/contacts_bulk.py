"""Bulk actions from the contact list: choose (the list), confirm (a page that says how
many), apply (inline, or as a background job with a progress page). Plain forms: it
all works without JavaScript."""

from __future__ import annotations

import sqlalchemy as sa
from flask import Blueprint, abort, render_template, request, url_for
from flask_login import current_user, login_required

from crm_app.drip.audience.bulk_actions import (
    ACTIONS,
    INLINE_LIMIT,
    BulkAction,
    BulkActionError,
    BulkResult,
    Selection,
    button_label,
    check_action,
    check_selection,
    question,
    run_bulk_action,
    started,
)
from crm_app.drip.audience.list_request import ListRequest
from crm_app.extensions import db
from crm_app.models import CONTACT_TYPES, Campaign
from crm_app.queue import enqueue_bulk_action, fetch_job
from crm_app.web.auth import actor_name
from crm_app.web.contacts import render_list
from crm_app.web.htmx import action_response, render_fragment_or_page

bp = Blueprint("contacts_bulk", __name__, url_prefix="/contacts/bulk")


def _submitted() -> tuple[Selection, BulkAction]:
    return (
        Selection.from_values(request.form, request.form.getlist("contact_ids")),
        BulkAction.from_values(request.form),
    )


def _list_request(selection: Selection) -> ListRequest:
    """Back to the list the selection was made in."""
    return ListRequest.parse({"q": selection.query, "type": selection.contact_type})


def _render_confirm(selection: Selection, action: BulkAction, errors=None, status=200):
    count = check_selection(db.session, selection)
    campaign = check_action(db.session, action, final=False)
    return render_template(
        "contacts/bulk_confirm.html",
        selection=selection,
        action=action,
        count=count,
        question=question(action, count, campaign),
        button=button_label(action, count, campaign),
        names=selection.sample_names(db.session),
        campaigns=db.session.scalars(sa.select(Campaign).order_by(Campaign.name)).all(),
        types=CONTACT_TYPES,
        errors=errors or {},
        in_background=count > INLINE_LIMIT,
    ), status


def _render_refused_choice(selection: Selection, refused: BulkActionError):
    """The list the choice was made in, with what is wrong next to the bulk form."""
    return render_list(
        _list_request(selection),
        422,
        bulk_errors=refused.errors,
        bulk_values=request.form,
        ticked=set(selection.contact_ids),
    )


@bp.post("/confirm")
@login_required
def confirm():
    """Step 2: the question with the number of contacts, and what the action needs
    (which campaign, which type). Nothing changes yet."""
    selection, action = _submitted()
    try:
        return _render_confirm(selection, action)
    except BulkActionError as refused:
        return _render_refused_choice(selection, refused)


@bp.post("/apply")
@login_required
def apply():
    selection, action = _submitted()
    try:
        count = check_selection(db.session, selection)
        campaign = check_action(db.session, action, final=True)
    except BulkActionError as refused:
        try:
            return _render_confirm(selection, action, refused.errors, 422)
        except BulkActionError as unconfirmable:
            # Nothing left to confirm (the ticked contacts were deleted meanwhile, or no
            # action): the confirmation page cannot be shown again either.
            return _render_refused_choice(selection, unconfirmable)
    stop_reason = f"stopped by {current_user.email} (bulk action)"
    if count > INLINE_LIMIT:
        job_id = enqueue_bulk_action(
            action.as_dict(), selection.as_dict(), actor=actor_name(),
            stop_reason=stop_reason, count=count,
        )  # fmt: skip
        return action_response(
            url_for(".progress", job_id=job_id), started(action, count, campaign)
        )
    result = BulkResult(total=count)
    for progress in run_bulk_action(
        db.session, action, selection, actor=actor_name(), stop_reason=stop_reason
    ):
        db.session.commit()  # chunk by chunk, as the background job does
        result = progress
    back = url_for("contacts.index", **_list_request(selection).filters())
    summary = result.summary(action, campaign.name if campaign else "")
    return action_response(back, summary, "success" if not result.refused else "info")


@bp.get("/jobs/<job_id>")
@login_required
def progress(job_id: str):
    job = fetch_job(job_id)
    if job is None or not job.func_name.endswith("bulk_contact_action"):
        abort(404)
    action = BulkAction(**job.args[0])
    finished = job.is_finished or job.is_failed
    values = job.return_value() if job.is_finished else job.meta.get("progress")
    result = BulkResult(**values) if values else None
    campaign = db.session.get(Campaign, action.campaign_id) if action.campaign_id else None
    return render_fragment_or_page(
        "contacts/_bulk_progress.html",
        "contacts/bulk_progress.html",
        target="bulk-progress",
        job=job,
        action=action,
        action_label=ACTIONS[action.action],
        result=result,
        finished=finished,
        summary=result.summary(action, campaign.name if campaign else "") if result else "",
    )
