"""API: enrolments (enrol, stop one, stop all), a type change, a goal. The same core
calls as the contact page's campaign panel, with the token as the actor."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps

from flask import abort, url_for

from crm_app.drip.audience import ending
from crm_app.drip.audience import enrollment as enrollment_core
from crm_app.drip.audience.enrollment import EnrollmentError
from crm_app.drip.common.ids import id_or_none
from crm_app.extensions import db
from crm_app.models import Campaign, Enrollment
from crm_app.web.api import bp, documented, idempotent
from crm_app.web.api.auth import current_token
from crm_app.web.api.contacts import contact_or_404, detail
from crm_app.web.api.problems import problem, rule_refused
from crm_app.web.api.schemas import (
    ContactDetailOut,
    EnrollIn,
    EnrollmentOut,
    GoalIn,
    GoalOut,
    StopAllOut,
    StopIn,
    TypeChangeIn,
)


def rules_refuse(view: Callable) -> Callable:
    """A refusal of the enrolment rules, as a problem (409 or 422); nothing is saved."""

    @wraps(view)
    def wrapped(*args, **kwargs):
        try:
            return view(*args, **kwargs)
        except EnrollmentError as refusal:
            return rule_refused(refusal)

    return wrapped


@bp.route("/contacts/<int:contact_id>/enrollments", methods=["POST"], tags=["enrollments"])
@idempotent
@bp.arguments(EnrollIn)
@bp.response(201, EnrollmentOut)
@documented(401, 403, 404, 409, 413, 415, 422, 429)
@rules_refuse
def enroll(data, contact_id: int):
    """Enrol the contact in a campaign (409 if it is already enrolled in it)."""
    contact = contact_or_404(contact_id)
    campaign_id = id_or_none(data["campaign_id"])  # past the database's integers: none
    campaign = db.session.get(Campaign, campaign_id) if campaign_id is not None else None
    if campaign is None:
        return problem(
            422,
            "The request has invalid fields.",
            kind="validation",
            errors={"campaign_id": [f"No campaign has the id {data['campaign_id']}."]},
        )
    enrollment = enrollment_core.enroll(
        db.session,
        contact,
        campaign,
        actor=current_token().actor,
        source="api",
        restart=data["restart"],
    )
    location = url_for("api.get_contact", contact_id=contact.id)
    return enrollment, 201, {"Location": location}


@bp.route("/enrollments/<int:enrollment_id>/stop", methods=["POST"], tags=["enrollments"])
@idempotent
@bp.arguments(StopIn)
@bp.response(200, EnrollmentOut)
@documented(401, 403, 404, 409, 413, 415, 422, 429)
@rules_refuse
def stop(data, enrollment_id: int):
    """Stop one enrolment (409 if it has already ended)."""
    enrollment = db.session.get(Enrollment, enrollment_id)
    if enrollment is None:
        abort(404, description=f"No enrolment has the id {enrollment_id}.")
    ending.stop(db.session, enrollment, reason=data["reason"], actor=current_token().actor)
    return enrollment


@bp.route("/contacts/<int:contact_id>/stop-all", methods=["POST"], tags=["enrollments"])
@idempotent
@bp.arguments(StopIn)
@bp.response(200, StopAllOut)
@documented(401, 403, 404, 413, 415, 422, 429)
def stop_all(data, contact_id: int):
    """Stop every active enrolment of the contact (none active: stopped is 0)."""
    contact = contact_or_404(contact_id)
    count = ending.stop_all(db.session, contact, reason=data["reason"], actor=current_token().actor)
    return {"stopped": count}


@bp.route("/contacts/<int:contact_id>/type", methods=["POST"], tags=["enrollments"])
@idempotent
@bp.arguments(TypeChangeIn)
@bp.response(200, ContactDetailOut)
@documented(401, 403, 404, 413, 415, 422, 429)
@rules_refuse
def change_type(data, contact_id: int):
    """Change the contact's type: its old type's campaign stops, the new one's starts."""
    contact = contact_or_404(contact_id)
    enrollment_core.change_contact_type(
        db.session, contact, data["contact_type"], actor=current_token().actor
    )
    return detail(contact)


@bp.route("/contacts/<int:contact_id>/goals", methods=["POST"], tags=["enrollments"])
@idempotent
@bp.arguments(GoalIn)
@bp.response(201, GoalOut)
@documented(401, 403, 404, 413, 415, 422, 429)
@rules_refuse
def record_goal(data, contact_id: int):
    """Record a goal (demo booked, contract signed...): counts as conversion."""
    contact = contact_or_404(contact_id)
    goal = enrollment_core.record_goal(
        db.session, contact, data["name"], actor=current_token().actor
    )
    db.session.flush()
    return goal, 201
