"""Campaign pages: everyone reads them; only admins create, edit, clone, delete, or
change the window or the status. The emails' pages (editor, versions, previews and
tests) are campaign_emails.py, campaign_versions.py and campaign_tests.py, on this
same blueprint."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Blueprint, abort, current_app, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user, login_required

from crm_app.config import settings_of
from crm_app.drip.audience.reentry import RULE_LABELS
from crm_app.drip.campaigns.harness import preview_context, preview_step
from crm_app.drip.campaigns.impact import waiting_for_steps
from crm_app.drip.campaigns.lifecycle import (
    CAMPAIGN_FIELDS,
    CampaignChangedMeanwhile,
    CampaignDetailsError,
    CampaignInput,
    clone_campaign,
    create_campaign,
    delete_campaign,
    deletion_refusal,
    details_of,
    details_revision,
    triggers_taken,
    update_details,
)
from crm_app.drip.campaigns.manage import (
    CampaignSettingsError,
    count_active_enrollments,
    describe_delay,
    list_campaigns,
    set_campaign_status,
    set_stop_on_reply,
    status_changes,
    update_send_window,
)
from crm_app.drip.campaigns.rendering import WorkspaceSender, sender_context
from crm_app.drip.campaigns.steps import step_actions
from crm_app.drip.experiments.blocks import all_blocks
from crm_app.drip.experiments.conditions import describe_condition
from crm_app.drip.experiments.summary import campaign_experiments
from crm_app.drip.team.workspace import workspace_sender
from crm_app.drip.tracking.breaker import breaker_form, update_breaker
from crm_app.extensions import db
from crm_app.models import CONTACT_TYPES, WEEKDAY_NAMES, Campaign, CampaignStep
from crm_app.web.auth import actor_name, admin_required
from crm_app.web.htmx import action_response, wants_fragment

bp = Blueprint("campaigns", __name__, url_prefix="/campaigns")


def workspace() -> WorkspaceSender:
    """Who the workspace's emails speak as (the Settings page, else the configuration)."""
    return workspace_sender(db.session, settings_of(current_app))


def viewer_sender() -> dict[str, str]:
    """A preview with the sample contact speaks as the previewing user, as if the
    contact were theirs."""
    return sender_context(current_user, workspace())


def step_of(campaign_id: int, step_id: int) -> CampaignStep:
    """The step, 404 unless it belongs to the campaign in the URL."""
    step = db.get_or_404(CampaignStep, step_id)
    if step.campaign_id != campaign_id:
        abort(404)
    return step


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
        "reentry_label": RULE_LABELS[campaign.reentry],
        "breaker": extra.pop("breaker", None) or breaker_form(campaign),
        **extra,
    }
    active_enrollments = count_active_enrollments(db.session, campaign)
    if wants_fragment():
        return render_template(
            "campaigns/_settings.html",
            oob_badge=True,
            active_enrollments=active_enrollments,
            **context,
        ), status
    waiting = {group.step.id: group for group in waiting_for_steps(db.session, campaign)}
    sample = preview_context(None, viewer_sender(), workspace(), blocks=all_blocks(db.session))
    return render_template(
        "campaigns/detail.html",
        experiments=campaign_experiments(db.session, campaign),
        describe_condition=describe_condition,
        steps=sorted(campaign.steps, key=lambda step: step.position),
        previews={
            step.id: preview_step(step, sample, None, workspace=workspace())
            for step in campaign.steps
        },
        waiting=waiting,
        describe_delay=describe_delay,
        step_actions=step_actions,
        active_enrollments=active_enrollments,
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


# --- create, edit the details, clone, delete (admins) ---


def _campaign_input() -> CampaignInput:
    return CampaignInput(**{name: request.form.get(name, "") for name in CAMPAIGN_FIELDS})


def _render_details_form(
    campaign: Campaign | None,
    values,
    errors=None,
    status: int = 200,
    conflict: CampaignChangedMeanwhile | None = None,
):
    return render_template(
        "campaigns/details_form.html",
        campaign=campaign,
        values=values,
        errors=errors or {},
        conflict=conflict,
        types=CONTACT_TYPES,
        taken=triggers_taken(db.session, other_than=campaign),
        reentry_rules=RULE_LABELS,
    ), status


def _save_details(campaign: Campaign | None) -> ResponseReturnValue:
    """Create (campaign None) or save the details; 422 with every message when refused."""
    data = _campaign_input()
    try:
        if campaign is None:
            campaign = create_campaign(db.session, data, actor=actor_name())
            notice = (
                f"{campaign.name} created. Add its first email: it takes no enrolment until then."
            )
        else:
            update_details(db.session, campaign, data, actor=actor_name())
            notice = f"{campaign.name} saved."
    except CampaignDetailsError as refused:
        db.session.rollback()
        return _render_details_form(campaign, request.form, refused.errors, 422)
    except CampaignChangedMeanwhile as changed:
        db.session.rollback()
        # What was typed, now over the revision just shown: saving again replaces it.
        values = request.form.to_dict() | {"revision": details_revision(changed.campaign)}
        return _render_details_form(campaign, values, status=409, conflict=changed)
    db.session.commit()
    return action_response(url_for("campaigns.detail", campaign_id=campaign.id), notice)


@bp.route("/new", methods=["GET", "POST"])
@admin_required
def new():
    if request.method == "POST":
        return _save_details(None)
    return _render_details_form(None, details_of(None))


@bp.route("/<int:campaign_id>/edit", methods=["GET", "POST"])
@admin_required
def edit(campaign_id: int):
    campaign = db.get_or_404(Campaign, campaign_id)
    if request.method == "POST":
        return _save_details(campaign)
    values = details_of(campaign) | {"revision": details_revision(campaign)}
    return _render_details_form(campaign, values)


@bp.post("/<int:campaign_id>/clone")
@admin_required
def clone(campaign_id: int):
    campaign = db.get_or_404(Campaign, campaign_id)
    try:
        copy = clone_campaign(db.session, campaign, actor=actor_name())
    except CampaignDetailsError as refused:  # copies saved at once took every free name
        db.session.rollback()
        back = url_for("campaigns.detail", campaign_id=campaign.id)
        return action_response(back, refused.errors["name"], "error")
    db.session.commit()
    return action_response(
        url_for("campaigns.detail", campaign_id=copy.id),
        f"{copy.name} created with {len(copy.steps)} email(s). It has no trigger yet.",
    )


@bp.route("/<int:campaign_id>/delete", methods=["GET", "POST"])
@admin_required
def delete(campaign_id: int):
    campaign = db.get_or_404(Campaign, campaign_id)
    if request.method != "POST":  # the confirm step, which also works without JavaScript
        refusal = deletion_refusal(db.session, campaign)
        return render_template("campaigns/delete.html", campaign=campaign, refusal=refusal)
    try:
        name = delete_campaign(db.session, campaign, actor=actor_name())
    except CampaignDetailsError as refused:
        db.session.rollback()
        back = url_for("campaigns.detail", campaign_id=campaign_id)
        return action_response(back, refused.errors["delete"], "error")
    db.session.commit()
    return action_response(url_for("campaigns.index"), f"{name} deleted.")


# --- send window and status (admins) ---


def _settings_change(
    campaign: Campaign,
    change: Callable[[], str],
    submitted_window: dict | None = None,
    submitted_breaker: dict | None = None,
) -> ResponseReturnValue:
    """Apply one settings change (it returns its notice) and answer with the settings
    panel or the page; a refused change is shown next to its field with a 422."""
    try:
        notice = change()
    except CampaignSettingsError as error:
        db.session.rollback()
        return _render_settings(
            campaign, 422, errors=error.errors, form=submitted_window, breaker=submitted_breaker
        )
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


@bp.post("/<int:campaign_id>/replies")
@admin_required
def update_replies(campaign_id: int):
    campaign = db.get_or_404(Campaign, campaign_id)

    def change() -> str:
        enabled = request.form.get("stop_on_reply") == "on"
        if not set_stop_on_reply(db.session, campaign, enabled, actor=actor_name()):
            return "Nothing changed."
        return f"A reply {'now stops' if enabled else 'no longer stops'} {campaign.name}."

    return _settings_change(campaign, change)


@bp.post("/<int:campaign_id>/breaker")
@admin_required
def update_breaker_settings(campaign_id: int):
    campaign = db.get_or_404(Campaign, campaign_id)
    form = request.form

    def change() -> str:
        return update_breaker(db.session, campaign, form, actor=actor_name())

    return _settings_change(campaign, change, submitted_breaker=breaker_form(campaign, form))


@bp.post("/<int:campaign_id>/status")
@admin_required
def update_status(campaign_id: int):
    campaign = db.get_or_404(Campaign, campaign_id)

    def change() -> str:
        status = request.form.get("status", "")
        return set_campaign_status(db.session, campaign, status, actor=actor_name()).notice

    return _settings_change(campaign, change)
