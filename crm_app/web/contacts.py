"""Contact pages: list, create, edit, delete, detail, and the campaign panel's actions."""

from __future__ import annotations

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    make_response,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_login import current_user, login_required

from crm_app.drip.audience import enrollment as enrollment_core
from crm_app.drip.audience.contacts import (
    ContactValidationError,
    contact_form_values,
    delete_contact,
    owner_choices,
    save_contact,
    search_contacts,
)
from crm_app.drip.audience.panel import (
    campaign_panel,
    contact_timeline,
    enroll_chosen,
    stop_all_or_refuse,
)
from crm_app.drip.common.timezones import TIMEZONE_CHOICES
from crm_app.extensions import db
from crm_app.models import CONTACT_TYPES, Contact, Enrollment
from crm_app.web.auth import actor_name

bp = Blueprint("contacts", __name__, url_prefix="/contacts")


@bp.get("/")
@login_required
def index():
    try:
        page = int(request.args.get("page", 1))
    except ValueError:
        page = 1
    query = request.args.get("q", "")
    contact_type = request.args.get("type", "")
    result = search_contacts(
        db.session,
        query=query,
        contact_type=contact_type,
        page=page,
        per_page=current_app.config["CONTACTS_PER_PAGE"],
    )
    context = dict(result=result, q=query, contact_type=contact_type, types=CONTACT_TYPES)
    # The search box swaps only the list; a boosted/full request gets the page.
    if request.htmx and request.headers.get("HX-Target") == "contact-list":
        return render_template("contacts/_list.html", **context)
    return render_template("contacts/index.html", **context)


# --- create / edit / delete ---


def _render_form(contact: Contact | None, values, errors, status: int = 200):
    page = render_template(
        "contacts/form.html",
        contact=contact,
        values=values,
        errors=errors,
        types=CONTACT_TYPES,
        owners=owner_choices(db.session),
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
    flash(f"Saved {saved.full_name}.", "success")
    return redirect(url_for("contacts.detail", contact_id=saved.id))


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
    if request.method == "GET":  # the confirm step, which also works without JavaScript
        return render_template("contacts/delete.html", contact=contact)
    name = contact.full_name
    delete_contact(db.session, contact)
    db.session.commit()
    flash(f"Deleted {name}.", "success")
    if request.htmx:
        response = make_response("", 204)
        response.headers["HX-Redirect"] = url_for("contacts.index")
        return response
    return redirect(url_for("contacts.index"))


# --- detail and campaign panel ---


def _panel_context(contact: Contact, **extra) -> dict:
    return dict(
        contact=contact,
        panel=campaign_panel(db.session, contact),
        activities=contact_timeline(db.session, contact),
        **extra,
    )


@bp.get("/<int:contact_id>")
@login_required
def detail(contact_id: int):
    contact = db.get_or_404(Contact, contact_id)
    return render_template("contacts/detail.html", **_panel_context(contact))


def _panel_action(contact: Contact, action, success: str):
    """Run one enrolment action, commit, and answer with the panel (HTMX) or a redirect.

    A refused action (EnrollmentError) is shown inside the panel with status 200, because
    htmx 2 does not swap 4xx responses by default and the message must be seen.
    """
    message, error = None, None
    try:
        message = action() or success
        db.session.commit()
    except enrollment_core.EnrollmentError as refused:
        db.session.rollback()
        error = str(refused)
    if request.htmx:
        context = _panel_context(contact, panel_message=message, panel_error=error)
        return render_template("contacts/_campaign_panel.html", **context) + render_template(
            "contacts/_timeline.html", oob=True, **context
        )
    flash(error or message, "error" if error else "success")
    return redirect(url_for("contacts.detail", contact_id=contact.id))


def _stop_reason() -> str:
    return f"stopped by {current_user.email}"


@bp.post("/<int:contact_id>/enrollments")
@login_required
def enroll(contact_id: int):
    contact = db.get_or_404(Contact, contact_id)
    campaign_id = request.form.get("campaign_id", type=int)

    def action():
        enrollment = enroll_chosen(db.session, contact, campaign_id, actor=actor_name())
        return f"Enrolled in {enrollment.campaign.name}."

    return _panel_action(contact, action, "Enrolled.")


@bp.post("/<int:contact_id>/enrollments/by-type")
@login_required
def enroll_by_type(contact_id: int):
    contact = db.get_or_404(Contact, contact_id)

    def action():
        enrollment = enrollment_core.enroll_by_type(db.session, contact, actor=actor_name())
        return f"Enrolled in {enrollment.campaign.name}."

    return _panel_action(contact, action, "Enrolled by type.")


@bp.post("/<int:contact_id>/enrollments/<int:enrollment_id>/stop")
@login_required
def stop(contact_id: int, enrollment_id: int):
    contact = db.get_or_404(Contact, contact_id)
    enrollment = db.session.get(Enrollment, enrollment_id)
    if enrollment is None or enrollment.contact_id != contact.id:
        abort(404)

    def action():
        enrollment_core.stop(db.session, enrollment, reason=_stop_reason(), actor=actor_name())
        return f"Stopped {enrollment.campaign.name}."

    return _panel_action(contact, action, "Stopped.")


@bp.post("/<int:contact_id>/enrollments/stop-all")
@login_required
def stop_all(contact_id: int):
    contact = db.get_or_404(Contact, contact_id)

    def action():
        count = stop_all_or_refuse(db.session, contact, reason=_stop_reason(), actor=actor_name())
        return f"Stopped {count} enrolment{'s' if count != 1 else ''}."

    return _panel_action(contact, action, "Stopped all.")


@bp.post("/<int:contact_id>/goals")
@login_required
def record_goal(contact_id: int):
    """A goal reached (demo booked, contract signed): counts as conversion in analytics."""
    contact = db.get_or_404(Contact, contact_id)

    def action():
        goal = enrollment_core.record_goal(
            db.session, contact, request.form.get("name", ""), actor=actor_name()
        )
        return f"Recorded the goal: {goal.name.removeprefix('goal:')}."

    return _panel_action(contact, action, "Goal recorded.")
