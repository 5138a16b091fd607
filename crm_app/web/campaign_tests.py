"""The test harness pages: an email previewed for the sample contact or a real one
(picked with a live search), and "send a test" (to yourself; admins to any address)."""

from __future__ import annotations

from flask import current_app, render_template, request, url_for
from flask_login import current_user, login_required

from crm_app.config import settings_of
from crm_app.drip.audience.contact_search import find_contacts
from crm_app.drip.campaigns.harness import (
    SendTestError,
    preview_context,
    preview_step,
    recent_test_sends,
    recipient_for_test,
    send_test,
    variant_to_preview,
)
from crm_app.drip.campaigns.manage import describe_delay
from crm_app.drip.common.ids import database_id
from crm_app.drip.delivery.backends import backend_from_settings
from crm_app.drip.experiments.blocks import all_blocks
from crm_app.drip.experiments.variants import running_variants
from crm_app.extensions import db
from crm_app.models import Contact, TestSend
from crm_app.web.auth import actor_name
from crm_app.web.campaigns import bp, step_of, viewer_sender, workspace
from crm_app.web.htmx import action_response, render_fragment_or_page

PICKER_SIZE = 8


def _chosen_contact() -> Contact | None:
    contact_id = request.values.get("contact_id", type=database_id)
    return db.session.get(Contact, contact_id) if contact_id else None


def _previewed_variant(step, contact: Contact | None, requested: str | None):
    """(the variant shown, errors): an unknown key shows the base text and says why."""
    try:
        return variant_to_preview(db.session, step, contact, requested), {}
    except SendTestError as refused:
        return None, refused.errors


def _preview_page(step, contact: Contact | None, errors=None, form=None, status: int = 200):
    query = request.args.get("q", "").strip()
    found = find_contacts(db.session, query, limit=PICKER_SIZE) if query else []
    context = preview_context(contact, viewer_sender(), workspace(), blocks=all_blocks(db.session))
    requested = (form or {}).get("variant", request.args.get("variant"))
    variant, variant_errors = _previewed_variant(step, contact, requested)
    return render_fragment_or_page(
        "campaigns/_contact_picker.html",
        "campaigns/preview.html",
        target="contact-picker",
        campaign=step.campaign,
        step=step,
        preview=preview_step(step, context, contact, variant, workspace()),
        shown_variant=variant.key if variant else "",
        variant_chosen=requested is not None,
        variant_errors=variant_errors,
        contact=contact,
        q=query,
        found=found,
        tests=recent_test_sends(db.session, step),
        variants=running_variants(db.session, step),
        describe_delay=describe_delay,
        may_choose_recipient=current_user.is_admin,
        errors=errors or {},
        form=form if form is not None else {},
    ), status


@bp.get("/<int:campaign_id>/steps/<int:step_id>/preview")
@login_required
def preview(campaign_id: int, step_id: int):
    """The email for the sample contact or the contact picked, in the version `variant`
    names (default: the picked contact's own); `q` searches contacts (htmx swaps only
    the picker's results)."""
    return _preview_page(step_of(campaign_id, step_id), _chosen_contact())


@bp.post("/<int:campaign_id>/steps/<int:step_id>/test-send")
@login_required
def test_send(campaign_id: int, step_id: int):
    """Send the saved email (its base text or a running variant) now, as a test, through
    the configured backend. Refused: the page again, each message next to its field."""
    step = step_of(campaign_id, step_id)
    contact = _chosen_contact()
    back = url_for(
        "campaigns.preview",
        campaign_id=campaign_id,
        step_id=step_id,
        contact_id=contact.id if contact else None,
    )
    settings = settings_of(current_app)
    try:
        recipient = recipient_for_test(
            request.form.get("to_email", ""), current_user.email, current_user.is_admin
        )
        sent = send_test(
            db.session,
            step,
            recipient,
            preview_context(contact, viewer_sender(), workspace(), blocks=all_blocks(db.session)),
            contact=contact,
            backend=backend_from_settings(settings),
            actor=actor_name(),
            variant_key=request.form.get("variant", ""),
        )
    except SendTestError as refused:
        db.session.rollback()
        return _preview_page(step, contact, refused.errors, request.form, 422)
    db.session.commit()
    if sent.status == "failed":
        return action_response(back, f"The test to {recipient} failed: {sent.error}", "error")
    where = "kept in the Outbox" if sent.backend == "outbox" else "sent"
    return action_response(back, f"Test {where}: “{sent.subject}” to {recipient}.")


@bp.get("/test-sends/<int:test_id>")
@login_required
def test_send_detail(test_id: int):
    sent = db.get_or_404(TestSend, test_id)
    return render_template("campaigns/test_send.html", sent=sent, campaign=sent.step.campaign)
