"""An email's versions: the history, one version, two side by side, and restore (admins)."""

from __future__ import annotations

from flask import abort, render_template, request, url_for
from flask_login import login_required

from crm_app.drip.campaigns.naming import step_name
from crm_app.drip.campaigns.steps import StepEditError, restore_version
from crm_app.drip.campaigns.versions import diff_versions, version_of, versions_of
from crm_app.drip.common.ids import database_id
from crm_app.extensions import db
from crm_app.web.auth import actor_name, admin_required
from crm_app.web.campaigns import bp, step_of, viewer_sender
from crm_app.web.htmx import action_response


@bp.get("/<int:campaign_id>/steps/<int:step_id>/versions")
@login_required
def versions(campaign_id: int, step_id: int):
    step = step_of(campaign_id, step_id)
    history = versions_of(db.session, step)
    return render_template(
        "campaigns/versions.html", campaign=step.campaign, step=step, versions=history
    )


@bp.get("/<int:campaign_id>/steps/<int:step_id>/versions/<int:number>")
@login_required
def version(campaign_id: int, step_id: int, number: int):
    step = step_of(campaign_id, step_id)
    found = version_of(db.session, step.id, number) or abort(404)
    return render_template(
        "campaigns/version.html", campaign=step.campaign, step=step, version=found
    )


@bp.get("/<int:campaign_id>/steps/<int:step_id>/versions/compare")
@login_required
def compare(campaign_id: int, step_id: int):
    """Two versions side by side (the older on the left, whichever order was asked)."""
    step = step_of(campaign_id, step_id)
    numbers = sorted(
        {request.args.get("a", type=database_id), request.args.get("b", type=database_id)} - {None}
    )
    if len(numbers) != 2:
        back = url_for("campaigns.versions", campaign_id=campaign_id, step_id=step_id)
        return action_response(back, "Pick two different versions to compare.", "error")
    older, newer = (version_of(db.session, step.id, n) for n in numbers)
    if older is None or newer is None:
        abort(404)
    return render_template(
        "campaigns/diff.html",
        campaign=step.campaign,
        step=step,
        older=older,
        newer=newer,
        diffs=diff_versions(older, newer),
    )


@bp.post("/<int:campaign_id>/steps/<int:step_id>/versions/<int:number>/restore")
@admin_required
def restore(campaign_id: int, step_id: int, number: int):
    step = step_of(campaign_id, step_id)
    back = url_for("campaigns.versions", campaign_id=campaign_id, step_id=step_id)
    try:
        restore_version(db.session, step, number, viewer_sender(), actor=actor_name())
    except StepEditError as refused:
        db.session.rollback()
        return action_response(back, " ".join(refused.errors.values()), "error")
    db.session.commit()
    return action_response(
        back, f"{step_name(step)}: version {number} restored as version {step.version}."
    )
