"""The email editor (admins): add at any place, edit with a live preview, remove,
reorder. A change that moves contacts waiting in the campaign shows its impact and
is saved only once confirmed (the core raises ImpactNeedsConfirmation until then)."""

from __future__ import annotations

from flask import render_template, request, url_for

from crm_app.drip.campaigns.harness import preview_context, preview_draft, preview_step
from crm_app.drip.campaigns.impact import Impact, ImpactNeedsConfirmation
from crm_app.drip.campaigns.manage import counts_from_enrollment
from crm_app.drip.campaigns.naming import step_name
from crm_app.drip.campaigns.step_input import STEP_FIELDS
from crm_app.drip.campaigns.step_revisions import StepChangedMeanwhile, step_revision
from crm_app.drip.campaigns.steps import (
    StepEditError,
    StepInput,
    add_step,
    edit_impact,
    insert_impact,
    insert_position,
    move_step,
    next_position,
    removal_impact,
    remove_step,
    update_step,
)
from crm_app.drip.common.ids import database_id
from crm_app.drip.experiments.blocks import all_blocks
from crm_app.extensions import db
from crm_app.models import Campaign, CampaignStep
from crm_app.web.auth import actor_name, admin_required
from crm_app.web.campaigns import bp, step_of, viewer_sender, workspace
from crm_app.web.htmx import action_response

# What a new email's form starts with.
# What a new email's form starts with (with the unsubscribe link every email needs).
NEW_STEP_VALUES = {
    "delay_days": "3",
    "body_html": '\n<p><a href="{{ unsubscribe_url }}">Unsubscribe</a></p>',
    "body_text": "\n\nUnsubscribe: {{ unsubscribe_url }}",
}


def _step_input() -> StepInput:
    return StepInput(**{name: request.form.get(name, "") for name in STEP_FIELDS})


def _draft_impact(campaign: Campaign, step: CampaignStep | None, data: StepInput) -> Impact | None:
    """What saving the form as it stands would do to the contacts waiting."""
    if step is not None:
        return edit_impact(db.session, step, data)
    try:
        position = insert_position(campaign, data.position)
    except StepEditError:
        return None
    draft = CampaignStep(subject=data.subject, body_html="", body_text="")
    return insert_impact(db.session, campaign, draft, position)


def _sample_context() -> dict:
    return preview_context(None, viewer_sender(), workspace(), blocks=all_blocks(db.session))


def _live_parts(campaign: Campaign, step: CampaignStep | None, data: StepInput) -> dict:
    """The live preview beside the editor: the unsaved text rendered for the sample
    contact through the same checks as a save, and the impact of saving it."""
    return {
        "preview": preview_draft(data, _sample_context(), None, viewer_sender(), workspace()),
        "impact": _draft_impact(campaign, step, data),
    }


def _render_step_form(
    campaign: Campaign,
    step: CampaignStep | None,
    errors=None,
    status: int = 200,
    *,
    confirm: Impact | None = None,
    conflict: StepChangedMeanwhile | None = None,
):
    if request.method == "POST":
        values = request.form
        live = _live_parts(campaign, step, _step_input())
        if confirm is not None:
            live["impact"] = None  # shown above the form, as what to confirm
        if conflict is not None:  # what was typed, now over the revision just shown
            values = request.form.to_dict() | {"revision": step_revision(conflict.step)}
    elif step is not None:
        values = {name: getattr(step, name) for name in STEP_FIELDS if hasattr(step, name)}
        values["revision"] = step_revision(step)
        live = {
            "preview": preview_step(step, _sample_context(), None, workspace=workspace()),
            "impact": edit_impact(db.session, step, _saved_input(step)),
        }
    else:
        values = NEW_STEP_VALUES
        blank = StepInput("", "", "", NEW_STEP_VALUES["delay_days"])
        live = {"preview": None, "impact": _draft_impact(campaign, None, blank)}
    position = step.position if step is not None else next_position(campaign)
    return render_template(
        "campaigns/step_form.html",
        campaign=campaign,
        step=step,
        values=values,
        errors=errors or {},
        positions=range(1, next_position(campaign) + 1),
        default_position=next_position(campaign),
        delay_from_enrollment=counts_from_enrollment(position),
        confirm=confirm,
        conflict=conflict,
        **live,
    ), status


def _saved_input(step: CampaignStep) -> StepInput:
    return StepInput(step.subject, step.body_html, step.body_text, str(step.delay_days))


def _back_to_step(step: CampaignStep) -> str:
    return url_for("campaigns.detail", campaign_id=step.campaign_id, _anchor=f"step-{step.id}")


def _previewing() -> bool:
    """The form's Preview button (without JavaScript): render, save nothing."""
    return request.form.get("intent") == "preview"


@bp.route("/<int:campaign_id>/steps/new", methods=["GET", "POST"])
@admin_required
def new_step(campaign_id: int):
    campaign = db.get_or_404(Campaign, campaign_id)
    if request.method != "POST" or _previewing():
        return _render_step_form(campaign, None)
    data = _step_input()
    # Confirmed for the place shown: another place asks again.
    confirmed = request.form.get("confirmed_position") == data.position
    try:
        step = add_step(
            db.session, campaign, data, viewer_sender(), actor=actor_name(), confirmed=confirmed
        )
    except StepEditError as refused:
        db.session.rollback()
        return _render_step_form(campaign, None, refused.errors, 422)
    except ImpactNeedsConfirmation as asked:
        db.session.rollback()
        return _render_step_form(campaign, None, status=409, confirm=asked.impact)
    db.session.commit()
    return action_response(_back_to_step(step), f"{step_name(step)} added.")


@bp.route("/<int:campaign_id>/steps/<int:step_id>/edit", methods=["GET", "POST"])
@admin_required
def edit_step(campaign_id: int, step_id: int):
    step = step_of(campaign_id, step_id)
    if request.method != "POST" or _previewing():
        return _render_step_form(step.campaign, step)
    data = _step_input()
    # Confirmed for the delay shown: another delay asks again.
    confirmed = request.form.get("confirmed_delay") == data.delay_days
    version = step.version
    try:
        changed = update_step(
            db.session, step, data, viewer_sender(), actor=actor_name(), confirmed=confirmed
        )
    except StepEditError as refused:
        db.session.rollback()
        return _render_step_form(step.campaign, step, refused.errors, 422)
    except ImpactNeedsConfirmation as asked:
        db.session.rollback()
        return _render_step_form(step.campaign, step, status=409, confirm=asked.impact)
    except StepChangedMeanwhile as changed_meanwhile:
        db.session.rollback()
        return _render_step_form(step.campaign, step, status=409, conflict=changed_meanwhile)
    db.session.commit()
    if not changed:
        return action_response(_back_to_step(step), "Nothing changed.", "info")
    if step.version == version:
        return action_response(_back_to_step(step), f"{step_name(step)}: new delay saved.")
    return action_response(
        _back_to_step(step), f"{step_name(step)} saved as version {version + 1}."
    )


@bp.post("/<int:campaign_id>/steps/live-preview")
@admin_required
def live_preview(campaign_id: int):
    """The editor's live preview (htmx, as the admin types): nothing is saved."""
    campaign = db.get_or_404(Campaign, campaign_id)
    step_id = request.form.get("step_id", type=database_id)
    step = step_of(campaign_id, step_id) if step_id else None
    return render_template(
        "campaigns/_live_preview.html",
        campaign=campaign,
        step=step,
        **_live_parts(campaign, step, _step_input()),
    )


# --- remove and reorder: confirmed when contacts are waiting ---


def _confirm_page(step: CampaignStep, impact: Impact, action: str, status: int = 200, **fields):
    return render_template(
        "campaigns/confirm_step_change.html",
        campaign=step.campaign,
        step=step,
        impact=impact,
        action=action,
        fields=fields,
    ), status


@bp.route("/<int:campaign_id>/steps/<int:step_id>/delete", methods=["GET", "POST"])
@admin_required
def delete_step(campaign_id: int, step_id: int):
    step = step_of(campaign_id, step_id)
    action = url_for("campaigns.delete_step", campaign_id=campaign_id, step_id=step_id)
    if request.method != "POST":  # the confirm step, with the impact, also without JavaScript
        return _confirm_page(step, removal_impact(db.session, step), action)
    confirmed = request.form.get("confirmed") == "1"
    back = url_for("campaigns.detail", campaign_id=campaign_id)
    try:
        name = remove_step(db.session, step, actor=actor_name(), confirmed=confirmed)
    except StepEditError as refused:
        db.session.rollback()
        return action_response(back, " ".join(refused.errors.values()), "error")
    except ImpactNeedsConfirmation as asked:
        db.session.rollback()
        return _confirm_page(step, asked.impact, action, 409)
    db.session.commit()
    return action_response(back, f"{name} removed.")


@bp.post("/<int:campaign_id>/steps/<int:step_id>/move")
@admin_required
def move_step_view(campaign_id: int, step_id: int):
    step = step_of(campaign_id, step_id)
    direction = request.form.get("direction", "")
    confirmed = request.form.get("confirmed") == "1"
    back = url_for("campaigns.detail", campaign_id=campaign_id)
    try:
        name = move_step(db.session, step, direction, actor=actor_name(), confirmed=confirmed)
    except StepEditError as refused:
        db.session.rollback()
        return action_response(back, " ".join(refused.errors.values()), "error")
    except ImpactNeedsConfirmation as asked:
        db.session.rollback()
        action = url_for("campaigns.move_step_view", campaign_id=campaign_id, step_id=step_id)
        return _confirm_page(step, asked.impact, action, 409, direction=direction)
    db.session.commit()
    return action_response(back, f"Moved {direction}: {name}.")
