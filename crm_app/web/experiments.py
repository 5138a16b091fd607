"""An email's A/B test and its "send only if" condition (admins change them; everyone
reads the results). On the campaigns blueprint."""

from __future__ import annotations

from flask import current_app, render_template, request, url_for
from flask_login import login_required

from crm_app.config import settings_of
from crm_app.drip.campaigns.harness import preview_context, render_preview
from crm_app.drip.experiments.blocks import all_blocks
from crm_app.drip.experiments.conditions import ENGAGEMENT, ConditionError, set_condition
from crm_app.drip.experiments.rules import CONTACT_FIELDS, OPS
from crm_app.drip.experiments.summary import step_experiment
from crm_app.drip.experiments.variants import (
    VariantError,
    VariantInput,
    promote,
    start_test,
    stop_test,
    variant_texts,
)
from crm_app.extensions import db
from crm_app.models import VARIANT_KEYS, StepVariant
from crm_app.web.auth import actor_name, admin_required
from crm_app.web.campaigns import bp, step_of, viewer_sender, workspace
from crm_app.web.htmx import action_response


def _previews(experiment) -> dict[int, object]:
    """Each running variant rendered for the sample contact, with you as the sender."""
    sample = preview_context(None, viewer_sender(), workspace(), blocks=all_blocks(db.session))
    return {
        row.variant.id: render_preview(
            *variant_texts(experiment.step, row.variant), sample, None, workspace()
        )
        for row in experiment.running
    }


def _page(step, errors=None, status: int = 200, form=None):
    settings = settings_of(current_app)
    experiment = step_experiment(db.session, step, min_sends=settings.ab_min_sends_per_variant)
    return render_template(
        "campaigns/experiment.html",
        campaign=step.campaign,
        step=step,
        experiment=experiment,
        previews=_previews(experiment),
        errors=errors or {},
        form=form if form is not None else {},
        keys=VARIANT_KEYS,
        fields=CONTACT_FIELDS,
        ops=OPS,
        engagement=ENGAGEMENT,
        min_sends=settings.ab_min_sends_per_variant,
    ), status


def _url(step) -> str:
    return url_for("campaigns.experiment", campaign_id=step.campaign_id, step_id=step.id)


@bp.get("/<int:campaign_id>/steps/<int:step_id>/experiment")
@login_required
def experiment(campaign_id: int, step_id: int):
    return _page(step_of(campaign_id, step_id))


@bp.post("/<int:campaign_id>/steps/<int:step_id>/experiment")
@admin_required
def start_experiment(campaign_id: int, step_id: int):
    step = step_of(campaign_id, step_id)
    inputs = [
        VariantInput(
            key,
            request.form.get(f"variant-{key}-weight", ""),
            request.form.get(f"variant-{key}-subject", ""),
            request.form.get(f"variant-{key}-body_html", ""),
            request.form.get(f"variant-{key}-body_text", ""),
        )
        for key in VARIANT_KEYS
    ]
    try:
        start_test(db.session, step, inputs, viewer_sender(), actor=actor_name())
    except VariantError as refused:
        db.session.rollback()
        return _page(step, refused.errors, 422, request.form)
    db.session.commit()
    return action_response(_url(step), "A/B test started.")


@bp.post("/<int:campaign_id>/steps/<int:step_id>/experiment/promote/<int:variant_id>")
@admin_required
def promote_variant(campaign_id: int, step_id: int, variant_id: int):
    step = step_of(campaign_id, step_id)
    variant = db.get_or_404(StepVariant, variant_id)
    if variant.step_id != step.id:
        return _page(step, {"variants": "That variant is not this email's."}, 404)
    try:
        promote(db.session, variant, actor=actor_name())
    except VariantError as refused:
        db.session.rollback()
        return _page(step, refused.errors, 409)
    db.session.commit()
    return action_response(
        _url(step), f"Variant {variant.key} promoted: saved as version {step.version}."
    )


@bp.post("/<int:campaign_id>/steps/<int:step_id>/experiment/stop")
@admin_required
def stop_experiment(campaign_id: int, step_id: int):
    step = step_of(campaign_id, step_id)
    stop_test(db.session, step, actor=actor_name())
    db.session.commit()
    return action_response(_url(step), "A/B test stopped: the email's own text goes out.")


@bp.post("/<int:campaign_id>/steps/<int:step_id>/condition")
@admin_required
def save_condition(campaign_id: int, step_id: int):
    step = step_of(campaign_id, step_id)
    form = request.form
    try:
        set_condition(
            db.session,
            step,
            form.get("kind", ""),
            form.get("field", ""),
            form.get("op", ""),
            form.get("value", ""),
            form.get("event", ""),
            actor=actor_name(),
        )
    except ConditionError as refused:
        db.session.rollback()
        return _page(step, {f"condition-{k}": v for k, v in refused.errors.items()}, 422, form)
    db.session.commit()
    return action_response(_url(step), "Condition saved.")
