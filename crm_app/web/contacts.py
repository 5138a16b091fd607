"""Contact pages: list, create, edit, delete, detail, and the campaign panel's actions."""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import wraps

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    render_template,
    request,
    stream_with_context,
    url_for,
)
from flask.typing import ResponseReturnValue
from flask_login import current_user, login_required

from crm_app.config import settings_of
from crm_app.drip.audience import ending
from crm_app.drip.audience import enrollment as enrollment_core
from crm_app.drip.audience.address_hash import erasure_key
from crm_app.drip.audience.bulk_actions import ACTIONS as BULK_ACTIONS
from crm_app.drip.audience.contact_list import contact_list_page
from crm_app.drip.audience.contacts import (
    ContactValidationError,
    contact_form_values,
    delete_contact,
    owner_choices,
    save_contact,
)
from crm_app.drip.audience.data_export import export_contact
from crm_app.drip.audience.erasure import ErasureError, check_erasure_confirmation, erase_contact
from crm_app.drip.audience.errors import RestartNeedsConfirmation
from crm_app.drip.audience.export import export_contacts
from crm_app.drip.audience.itinerary import contact_itinerary
from crm_app.drip.audience.list_request import ListRequest
from crm_app.drip.audience.panel import (
    campaign_panel,
    contact_for_page,
    contact_timeline,
    enroll_chosen,
    stop_all_or_refuse,
)
from crm_app.drip.audience.why import emails_to_explain, why_email
from crm_app.drip.campaigns.naming import step_name
from crm_app.drip.common.ids import database_id
from crm_app.drip.common.timezones import TIMEZONE_CHOICES
from crm_app.drip.delivery.compose import PersonalSubjects
from crm_app.drip.delivery.frequency_cap import FrequencyCap
from crm_app.extensions import db
from crm_app.models import CONTACT_TYPES, CampaignStep, Contact, Enrollment, utcnow
from crm_app.web.auth import actor_name, admin_required
from crm_app.web.filters import local_time, on_viewers_clock, viewer_timezone
from crm_app.web.htmx import action_response, render_fragment_or_page
from crm_app.web.read_only_requests import reuses_plans, writes_when_read

bp = Blueprint("contacts", __name__, url_prefix="/contacts")


def render_list(list_request: ListRequest, status: int = 200, **extra):
    """The contact list page, or for the live search its list alone. `extra`: a refused
    bulk action's errors and ticked rows, shown again (crm_app/web/contacts_bulk.py)."""
    result = contact_list_page(
        db.session, list_request, per_page=settings_of(current_app).contacts_per_page
    )
    page = render_fragment_or_page(
        "contacts/_list.html",
        "contacts/index.html",
        target="contact-list",
        result=result,
        listing=list_request,
        types=CONTACT_TYPES,
        bulk_actions=BULK_ACTIONS,
        bulk_errors=extra.get("bulk_errors", {}),
        bulk_values=extra.get("bulk_values", {}),
        ticked=extra.get("ticked", set()),
    )
    return page, status


@bp.get("/")
@login_required
def index():
    return render_list(ListRequest.parse(request.args))


@bp.get("/export.csv")
@writes_when_read  # the audit entry
@login_required
def export_csv():
    """The list's current search and filter as CSV, streamed (crm_app/drip/audience/export.py)."""
    rows = export_contacts(
        db.session,
        actor=actor_name(),
        query=request.args.get("q", ""),
        contact_type=request.args.get("type", ""),
    )
    db.session.commit()  # the audit entry, before any row leaves
    filename = f"contacts-{utcnow():%Y-%m-%d}.csv"
    return Response(
        stream_with_context(rows),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


# --- create / edit / delete ---


def _render_form(contact: Contact | None, values, errors, status: int = 200):
    page = render_template(
        "contacts/form.html",
        contact=contact,
        values=values,
        errors=errors,
        types=CONTACT_TYPES,
        owners=owner_choices(db.session, contact),
        timezones=TIMEZONE_CHOICES,
    )
    return page, status


def _save(contact: Contact | None):
    """Create or update from the posted form; 422 with every message when anything is wrong."""
    try:
        saved = save_contact(db.session, request.form, contact=contact, actor=actor_name())
    except ContactValidationError as invalid:
        db.session.rollback()
        return _render_form(contact, request.form, invalid.errors, 422)
    db.session.commit()
    return action_response(
        url_for("contacts.detail", contact_id=saved.id), f"Saved {saved.full_name}."
    )


@bp.route("/new", methods=["GET", "POST"])
@login_required
def new():
    if request.method == "POST":
        return _save(None)
    return _render_form(None, contact_form_values(None, owner_id=current_user.id), {})


@bp.route("/<int:contact_id>/edit", methods=["GET", "POST"])
@login_required
def edit(contact_id: int):
    contact = db.get_or_404(Contact, contact_id)
    if request.method == "POST":
        return _save(contact)
    return _render_form(contact, contact_form_values(contact, owner_id=None), {})


@bp.route("/<int:contact_id>/delete", methods=["GET", "POST"])
@login_required
def delete(contact_id: int):
    contact = db.get_or_404(Contact, contact_id)
    if request.method != "POST":  # the confirm step, which also works without JavaScript
        return render_template("contacts/delete.html", contact=contact)
    name = contact.full_name
    delete_contact(db.session, contact, actor=actor_name())
    db.session.commit()
    return action_response(url_for("contacts.index"), f"Deleted {name}.")


# --- GDPR: the person's data, exported or erased ---


@bp.post("/<int:contact_id>/export")
@login_required
def export(contact_id: int):
    """A JSON download (a POST: handing out personal data is recorded in the audit log)."""
    contact = db.get_or_404(Contact, contact_id)
    document = export_contact(db.session, contact, actor=actor_name())
    db.session.commit()
    return Response(
        json.dumps(document, indent=2, ensure_ascii=False),
        mimetype="application/json",
        headers={"Content-Disposition": f'attachment; filename="contact-{contact.id}.json"'},
    )


def _render_erase(contact: Contact, errors=None, status: int = 200, typed: str = ""):
    page = render_template("contacts/erase.html", contact=contact, errors=errors or {}, typed=typed)
    return page, status


@bp.route("/<int:contact_id>/erase", methods=["GET", "POST"])
@admin_required
def erase(contact_id: int):
    contact = db.get_or_404(Contact, contact_id)
    if request.method != "POST":  # the confirmation page: what goes, what stays
        return _render_erase(contact)
    try:
        check_erasure_confirmation(contact, request.form.get("confirm_email", ""))
        result = erase_contact(
            db.session,
            contact,
            actor=actor_name(),
            hash_key=erasure_key(settings_of(current_app)),
        )
    except ErasureError as refused:
        db.session.rollback()
        typed = request.form.get("confirm_email", "")  # kept, to be corrected, not retyped
        return _render_erase(contact, {"confirm_email": str(refused)}, 422, typed)
    db.session.commit()
    message = f"Erased the personal data of contact #{contact.id}."
    if result.stopped:
        message += f" {result.stopped} enrolment(s) stopped."
    return action_response(url_for("contacts.detail", contact_id=contact.id), message)


# --- detail and campaign panel ---


def _frequency_cap() -> FrequencyCap:
    return FrequencyCap.from_settings(settings_of(current_app))


def _panel_context(contact: Contact, **extra) -> dict:
    panel = campaign_panel(db.session, contact)
    subjects = PersonalSubjects(db.session, contact, settings_of(current_app))
    itinerary = contact_itinerary(
        db.session, contact, cap=_frequency_cap(), panel=panel, subjects=subjects
    )
    why_choices = emails_to_explain(
        db.session, contact, campaigns=panel.enrolled_campaigns, subjects=subjects
    )
    return dict(
        contact=contact,
        panel=panel,
        timeline=contact_timeline(db.session, contact),
        itinerary=itinerary,
        why_choices=why_choices,
        one_clock=on_viewers_clock(contact.timezone),
        subjects=subjects,
        **extra,
    )


@bp.get("/<int:contact_id>")
@reuses_plans  # every statement is keyed by the contact's id (or its address)
@login_required
def detail(contact_id: int):
    contact = contact_for_page(db.session, contact_id)
    if contact is None:
        abort(404)
    return render_template("contacts/detail.html", **_panel_context(contact))


@bp.get("/<int:contact_id>/why")
@login_required
def why(contact_id: int):
    """Why one email of the contact's campaigns was or was not sent (read-only: a GET).
    htmx swaps the answer in under the itinerary; without JavaScript, the page."""
    contact = db.get_or_404(Contact, contact_id)
    step_id = request.args.get("step", type=database_id)
    step = db.session.get(CampaignStep, step_id) if step_id is not None else None
    choices = emails_to_explain(db.session, contact)
    if step is None or step.id not in {c.step_id for c in choices}:
        abort(404)
    zone = viewer_timezone()
    answer = why_email(
        db.session, contact, step, cap=_frequency_cap(), fmt=lambda at: local_time(at, zone)
    )
    context = dict(why_step=step, why_answer=answer)
    if request.htmx:
        return render_template("contacts/_why_answer.html", contact=contact, **context)
    return render_template("contacts/detail.html", **_panel_context(contact, **context))


def panel_action(view: Callable[..., str]) -> Callable[..., ResponseReturnValue]:
    """A campaign panel view: `view(contact, **url_values)` runs one enrolment action and
    returns its success message; this commits and answers with the panel and the
    timeline (HTMX) or a redirect to the contact.

    A refused action (EnrollmentError) is shown inside the panel with status 200, because
    htmx 2 does not swap 4xx responses by default and the message must be seen.
    """

    @wraps(view)
    def wrapped(contact_id: int, **url_values) -> ResponseReturnValue:
        contact = db.get_or_404(Contact, contact_id)
        message, error, restart = None, None, None
        try:
            message = view(contact, **url_values)
            db.session.commit()
        except RestartNeedsConfirmation as asked:
            db.session.rollback()
            restart = asked  # the panel lists what would repeat, with a confirm button
        except enrollment_core.EnrollmentError as refused:
            db.session.rollback()
            error = str(refused)
        extra = dict(panel_message=message, panel_error=error, restart=restart)
        if restart is not None and not request.htmx:
            # Without JavaScript the confirmation is the contact page itself.
            return render_template("contacts/detail.html", **_panel_context(contact, **extra))

        def panel_and_timeline() -> str:
            context = _panel_context(contact, **extra)
            panel = render_template("contacts/_campaign_panel.html", **context)
            itinerary = render_template("contacts/_itinerary.html", oob=True, **context)
            return (
                panel + itinerary + render_template("contacts/_timeline.html", oob=True, **context)
            )

        return action_response(
            url_for("contacts.detail", contact_id=contact.id),
            error or message,
            "error" if error else "success",
            fragment=panel_and_timeline,
        )

    return wrapped


def _stop_reason() -> str:
    return f"stopped by {current_user.email}"


@bp.post("/<int:contact_id>/enrollments")
@login_required
@panel_action
def enroll(contact: Contact) -> str:
    campaign_id = request.form.get("campaign_id", type=database_id)
    enrollment = enroll_chosen(
        db.session, contact, campaign_id, actor=actor_name(), restart=_restart_confirmed()
    )
    return _enrolled_message(enrollment)


@bp.post("/<int:contact_id>/enrollments/by-type")
@login_required
@panel_action
def enroll_by_type(contact: Contact) -> str:
    enrollment = enrollment_core.enroll_by_type(
        db.session, contact, actor=actor_name(), restart=_restart_confirmed()
    )
    return _enrolled_message(enrollment)


def _restart_confirmed() -> bool:
    """The panel's restart confirmation posts restart=1 (the API passes restart=true)."""
    return request.form.get("restart") == "1"


def _enrolled_message(enrollment: Enrollment) -> str:
    at = step_name(enrollment.step)
    if enrollment.entry == "resumed":
        return f"Enrolled in {enrollment.campaign.name} again: resuming at {at}."
    if enrollment.entry == "restarted":
        return f"Enrolled in {enrollment.campaign.name} again: restarting at {at}."
    return f"Enrolled in {enrollment.campaign.name}."


@bp.post("/<int:contact_id>/enrollments/<int:enrollment_id>/stop")
@login_required
@panel_action
def stop(contact: Contact, enrollment_id: int) -> str:
    enrollment = db.session.get(Enrollment, enrollment_id)
    if enrollment is None or enrollment.contact_id != contact.id:
        abort(404)
    ending.stop(db.session, enrollment, reason=_stop_reason(), actor=actor_name())
    return f"Stopped {enrollment.campaign.name}."


@bp.get("/<int:contact_id>/enrollments/stop-all")
@login_required
def stop_all_confirm(contact_id: int):
    """Stop all without JavaScript: this page asks first (htmx asks with a dialog)."""
    contact = db.get_or_404(Contact, contact_id)
    active = ending.active_enrollments(db.session, contact)
    if not active:
        return action_response(
            url_for("contacts.detail", contact_id=contact.id),
            "There is no active enrolment to stop.",
            "info",
        )
    return render_template("contacts/stop_all.html", contact=contact, active=active)


@bp.post("/<int:contact_id>/enrollments/stop-all")
@login_required
@panel_action
def stop_all(contact: Contact) -> str:
    count = stop_all_or_refuse(db.session, contact, reason=_stop_reason(), actor=actor_name())
    return f"Stopped {count} enrolment{'s' if count != 1 else ''}."


@bp.post("/<int:contact_id>/goals")
@login_required
@panel_action
def record_goal(contact: Contact) -> str:
    """A goal reached (demo booked, contract signed): counts as conversion in analytics."""
    name = request.form.get("name", "")
    goal = enrollment_core.record_goal(db.session, contact, name, actor=actor_name())
    return f"Recorded the goal: {goal.name.removeprefix('goal:')}."
