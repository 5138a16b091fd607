"""Campaign pages: everyone reads them; only admins change the window or the status."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Blueprint, abort, current_app, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user, login_required

from crm_app.config import settings_of
from crm_app.drip.campaigns.manage import (
    CampaignSettingsError,
    count_active_enrollments,
    counts_from_enrolment,
    describe_delay,
    list_campaigns,
    preview_step,
    set_campaign_status,
    status_changes,
    update_send_window,
)
from crm_app.drip.campaigns.rendering import sender_context
from crm_app.drip.campaigns.steps import (
    STEP_FIELDS,
    StepEditError,
    StepInput,
    add_step,
    move_step,
    next_position,
    remove_step,
    step_actions,
    update_step,
)
from crm_app.extensions import db
from crm_app.models import WEEKDAY_NAMES, Campaign, CampaignStep
from crm_app.web.auth import actor_name, admin_required
from crm_app.web.htmx import action_response, render_fragment_or_page, wants_fragment

bp = Blueprint("campaigns", __name__, url_prefix="/campaigns")
# What a new email's form starts with.
NEW_STEP_VALUES = {"delay_days": 3}


def _sender() -> dict[str, str]:
    return sender_context(
        current_user,
        fallback_name=current_user.email,
        fallback_email=current_user.email,
        company=settings_of(current_app).sender_company,
        website=settings_of(current_app).sender_website,
    )


def _window_form(campaign: Campaign, submitted: Any = None) -> dict[str, Any]:
    """What the send-window form shows: the saved window, or what was just submitted."""
    if submitted is None:
        return {
            "weekdays": campaign.send_weekdays,
            "send_start": f"{campaign.send_start:%H:%M}",
            "send_end": f"{campaign.send_end:%H:%M}",
        }
    return {
        "weekdays": {int(d) for d in submitted.getlist("weekdays") if d.isdigit()},
        "send_start": submitted.get("send_start", ""),
        "send_end": submitted.get("send_end", ""),
    }


def _render_settings(campaign: Campaign, status: int = 200, **extra: Any):
    """The settings panel alone for HTMX, else the whole campaign page around it."""
    context = {
        "campaign": campaign,
        "form": extra.pop("form", None) or _window_form(campaign),
        "errors": extra.pop("errors", {}),
        "weekday_names": WEEKDAY_NAMES,
        "status_changes": status_changes(campaign),
        **extra,
    }
    if wants_fragment():
        return render_template("campaigns/_settings.html", oob_badge=True, **context), status
    previews = [preview_step(step, _sender()) for step in campaign.steps]
    return render_template(
        "campaigns/detail.html",
        previews=previews,
        describe_delay=describe_delay,
        step_actions=step_actions,
        active_enrollments=count_active_enrollments(db.session, campaign),
        **context,
    ), status


@bp.get("/")
@login_required
def index():
    return render_template("campaigns/index.html", summaries=list_campaigns(db.session))


@bp.get("/<int:campaign_id>")
@login_required
def detail(campaign_id: int):
    return _render_settings(db.get_or_404(Campaign, campaign_id))


@bp.get("/<int:campaign_id>/steps/<int:step_id>/preview")
@login_required
def preview(campaign_id: int, step_id: int):
    step = _step_of(campaign_id, step_id)
    return render_fragment_or_page(
        "campaigns/_preview.html",
        "campaigns/preview.html",
        campaign=step.campaign,
        preview=preview_step(step, _sender()),
        describe_delay=describe_delay,
    )


def _settings_change(
    campaign: Campaign, change: Callable[[], str], submitted_window: dict | None = None
) -> ResponseReturnValue:
    """Apply one settings change (it returns its notice) and answer with the settings
    panel or the page; a refused change is shown next to its field with a 422."""
    try:
        notice = change()
    except CampaignSettingsError as error:
        db.session.rollback()
        return _render_settings(campaign, 422, errors=error.errors, form=submitted_window)
    db.session.commit()
    return action_response(
        url_for("campaigns.detail", campaign_id=campaign.id),
        notice,
        fragment=lambda: _render_settings(campaign, notice=notice),
    )


@bp.post("/<int:campaign_id>/settings")
@admin_required
def update_settings(campaign_id: int):
    campaign = db.get_or_404(Campaign, campaign_id)
    form = request.form

    def change() -> str:
        moved = update_send_window(
            db.session,
            campaign,
            form.getlist("weekdays"),
            form.get("send_start"),
            form.get("send_end"),
            actor=actor_name(),
        )
        label = campaign.send_window_label
        return f"Send window saved: {label}. {moved} scheduled email(s) moved."

    return _settings_change(campaign, change, _window_form(campaign, form))


@bp.post("/<int:campaign_id>/status")
@admin_required
def update_status(campaign_id: int):
    campaign = db.get_or_404(Campaign, campaign_id)

    def change() -> str:
        status = request.form.get("status", "")
        return set_campaign_status(db.session, campaign, status, actor=actor_name()).notice

    return _settings_change(campaign, change)


# --- the emails of a campaign (admins) ---


def _step_of(campaign_id: int, step_id: int) -> CampaignStep:
    step = db.get_or_404(CampaignStep, step_id)
    if step.campaign_id != campaign_id:
        abort(404)
    return step


def _step_input() -> StepInput:
    return StepInput(**{name: request.form.get(name, "") for name in STEP_FIELDS})


def _render_step_form(campaign: Campaign, step: CampaignStep | None, errors=None, status=200):
    if request.method == "POST":
        values = request.form
    elif step is not None:
        values = {name: getattr(step, name) for name in STEP_FIELDS}
    else:
        values = NEW_STEP_VALUES
    position = step.position if step is not None else next_position(campaign)
    return render_template(
        "campaigns/step_form.html",
        campaign=campaign,
        step=step,
        values=values,
        errors=errors or {},
        delay_from_enrolment=counts_from_enrolment(position),
    ), status


def _back_to_step(step: CampaignStep) -> str:
    return url_for("campaigns.detail", campaign_id=step.campaign_id, _anchor=f"step-{step.id}")


@bp.route("/<int:campaign_id>/steps/new", methods=["GET", "POST"])
@admin_required
def new_step(campaign_id: int):
    campaign = db.get_or_404(Campaign, campaign_id)
    if request.method == "GET":
        return _render_step_form(campaign, None)
    try:
        step = add_step(db.session, campaign, _step_input(), _sender())
    except StepEditError as refused:
        db.session.rollback()
        return _render_step_form(campaign, None, refused.errors, 422)
    db.session.commit()
    return action_response(_back_to_step(step), f"Email {step.position} added to {campaign.name}.")


@bp.route("/<int:campaign_id>/steps/<int:step_id>/edit", methods=["GET", "POST"])
@admin_required
def edit_step(campaign_id: int, step_id: int):
    step = _step_of(campaign_id, step_id)
    if request.method == "GET":
        return _render_step_form(step.campaign, step)
    try:
        changed = update_step(db.session, step, _step_input(), _sender())
    except StepEditError as refused:
        db.session.rollback()
        return _render_step_form(step.campaign, step, refused.errors, 422)
    db.session.commit()
    if changed:
        return action_response(
            _back_to_step(step), f"Email {step.position} saved as version {step.version}."
        )
    return action_response(_back_to_step(step), "Nothing changed.", "info")


@bp.post("/<int:campaign_id>/steps/<int:step_id>/delete")
@admin_required
def delete_step(campaign_id: int, step_id: int):
    return _step_change(campaign_id, step_id, remove_step, "removed")


@bp.post("/<int:campaign_id>/steps/<int:step_id>/move")
@admin_required
def move_step_view(campaign_id: int, step_id: int):
    direction = request.form.get("direction", "")
    return _step_change(
        campaign_id,
        step_id,
        lambda session, step: move_step(session, step, direction),
        f"moved {direction}",
    )


def _step_change(campaign_id: int, step_id: int, change, done: str):
    step = _step_of(campaign_id, step_id)
    label = f"Email {step.position} ({step.subject})"
    back = url_for("campaigns.detail", campaign_id=campaign_id)
    try:
        change(db.session, step)
    except StepEditError as refused:
        db.session.rollback()
        return action_response(back, " ".join(refused.errors.values()), "error")
    db.session.commit()
    return action_response(back, f"{label} {done}.")
