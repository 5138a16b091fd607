"""API: enrol, stop one, stop all, change type, record a goal, list campaigns: the
contact page's rules, with 409 where the enrolment's state is the reason."""

from __future__ import annotations

import sqlalchemy as sa

from crm_app.drip.campaigns.manage import set_campaign_status
from crm_app.models import Activity, ContactGoal, Enrollment

PROBLEM = "application/problem+json"


def test_enrol_in_a_campaign(api, session, campaigns, make_contact):
    contact = make_contact("lead")

    response = api.post(
        f"/api/v1/contacts/{contact.id}/enrollments", {"campaign_id": campaigns["client"].id}
    )

    assert response.status_code == 201
    body = response.get_json()
    assert (body["campaign_name"], body["status"], body["source"]) == ("Client", "active", "api")
    assert body["enrolled_by"] == "api:crm-sync"


def test_enrolling_twice_is_a_409_problem(api, session, campaigns, make_contact):
    contact = make_contact("lead")  # enrolled in Lead on creation

    response = api.post(
        f"/api/v1/contacts/{contact.id}/enrollments", {"campaign_id": campaigns["lead"].id}
    )

    assert response.status_code == 409 and response.content_type == PROBLEM
    problem = response.get_json()
    assert problem["type"].endswith(":conflict")
    assert "already enrolled in Lead" in problem["detail"]
    assert session.scalar(sa.select(sa.func.count(Enrollment.id))) == 1


def test_a_rule_refusal_is_a_422_problem(api, session, campaigns, make_contact):
    contact = make_contact("lead")
    set_campaign_status(session, campaigns["client"], "paused", actor="test")
    session.commit()

    response = api.post(
        f"/api/v1/contacts/{contact.id}/enrollments", {"campaign_id": campaigns["client"].id}
    )

    assert response.status_code == 422
    assert "paused" in response.get_json()["detail"]


def test_an_unknown_campaign_is_a_field_error(api, make_contact):
    contact = make_contact("lead")

    response = api.post(f"/api/v1/contacts/{contact.id}/enrollments", {"campaign_id": 999})

    assert response.status_code == 422
    assert response.get_json()["errors"] == {"campaign_id": ["No campaign has the id 999."]}


def test_a_campaign_id_past_the_databases_integers_is_a_field_error(api, make_contact):
    contact = make_contact("lead")  # was a 500 on PostgreSQL ("integer out of range")
    for campaign_id in (2147483648, 99999999999999999999):
        response = api.post(
            f"/api/v1/contacts/{contact.id}/enrollments", {"campaign_id": campaign_id}
        )
        assert response.status_code == 422 and "campaign_id" in response.get_json()["errors"]


def test_ids_in_a_body_must_be_integers(api, session, campaigns, make_contact):
    contact = make_contact("networking")
    url = f"/api/v1/contacts/{contact.id}/enrollments"
    for loose in (campaigns["client"].id + 0.5, float(campaigns["client"].id), "1", True):
        response = api.post(url, {"campaign_id": loose})
        assert response.status_code == 422, loose
        assert response.get_json()["errors"] == {"campaign_id": ["Not a valid integer."]}
    patched = api.patch(f"/api/v1/contacts/{contact.id}", {"owner_id": "1"})
    assert patched.status_code == 422
    assert patched.get_json()["errors"] == {"owner_id": ["Not a valid integer."]}
    client_enrolments = sa.select(sa.func.count(Enrollment.id)).where(
        Enrollment.campaign_id == campaigns["client"].id
    )
    assert session.scalar(client_enrolments) == 0


def test_stop_one_enrolment_then_stopping_it_again_is_a_409(api, session, make_contact):
    enrollment_id = make_contact("lead").enrollments[0].id
    url = f"/api/v1/enrollments/{enrollment_id}/stop"

    response = api.post(url, {"reason": "bought elsewhere"})

    assert response.status_code == 200
    assert response.get_json()["status"] == "stopped"
    assert response.get_json()["end_reason"] == "bought elsewhere"
    again = api.post(url, {})
    assert again.status_code == 409 and again.content_type == PROBLEM
    assert api.post("/api/v1/enrollments/999/stop", {}).status_code == 404


def test_stop_all(api, session, campaigns, make_contact):
    contact = make_contact("lead")
    api.post(f"/api/v1/contacts/{contact.id}/enrollments", {"campaign_id": campaigns["client"].id})

    response = api.post(f"/api/v1/contacts/{contact.id}/stop-all", {})

    assert response.get_json() == {"stopped": 2}
    assert api.post(f"/api/v1/contacts/{contact.id}/stop-all", {}).get_json() == {"stopped": 0}
    stops = session.scalars(
        sa.select(Activity.actor).where(
            Activity.kind == "stopped", Activity.contact_id == contact.id
        )
    ).all()
    assert stops == ["api:crm-sync", "api:crm-sync"]


def test_change_type_switches_campaigns_as_the_edit_page_does(api, make_contact):
    contact = make_contact("lead")

    response = api.post(f"/api/v1/contacts/{contact.id}/type", {"contact_type": "prospect"})

    assert response.status_code == 200
    body = response.get_json()
    assert body["contact_type"] == "prospect"
    assert {(e["campaign_name"], e["status"]) for e in body["enrollments"]} == {
        ("Lead", "stopped"),
        ("Prospect", "active"),
    }
    bad = api.post(f"/api/v1/contacts/{contact.id}/type", {"contact_type": "alien"})
    assert bad.status_code == 422 and "Unknown contact type" in bad.get_json()["detail"]


def test_record_a_goal(api, session, make_contact):
    contact = make_contact("lead")

    response = api.post(f"/api/v1/contacts/{contact.id}/goals", {"name": "demo booked"})

    assert response.status_code == 201
    assert response.get_json()["name"] == "demo booked"
    assert session.scalars(
        sa.select(ContactGoal.actor).where(ContactGoal.name == "goal:demo booked")
    ).all() == ["api:crm-sync"]
    blank = api.post(f"/api/v1/contacts/{contact.id}/goals", {"name": "  "})
    assert blank.status_code == 422


def test_a_goal_name_past_90_characters_is_refused_not_cut(api, session, make_contact):
    contact = make_contact("lead")
    url = f"/api/v1/contacts/{contact.id}/goals"

    response = api.post(url, {"name": "x" * 91})

    assert response.status_code == 422
    assert response.get_json()["errors"] == {"name": ["Longer than maximum length 90."]}
    assert session.scalar(sa.select(sa.func.count(ContactGoal.id))) == 0
    assert api.post(url, {"name": "x" * 90}).status_code == 201


def test_list_campaigns(api, campaigns):
    response = api.get("/api/v1/campaigns")

    assert response.status_code == 200
    by_type = {c["contact_type"]: c for c in response.get_json()["items"]}
    assert by_type["networking"]["steps"] == 8 and by_type["client"]["steps"] == 4
    assert by_type["lead"]["status"] == "active"


def test_re_entry_a_restart_needs_restart_true_and_resume_never_repeats(
    api, session, campaigns, make_contact
):
    """The campaign's re-entry rule applies to the API as to the pages."""
    from crm_app.drip.audience.ending import stop
    from crm_app.models import Message, utcnow

    contact = make_contact("lead")  # enrolled in Lead on creation
    lead = campaigns["lead"]
    first = session.scalars(sa.select(Enrollment)).one()
    session.add(
        Message(
            enrollment_id=first.id,
            step_id=lead.steps[0].id,
            contact_id=contact.id,
            campaign_id=lead.id,
            status="sent",
            attempts=1,
            to_email=contact.email,
            subject="",
            html="",
            text="",
            headers={},
            error="",
            created_at=utcnow(),
            enqueued_at=utcnow(),
            sent_at=utcnow(),
        )
    )
    stop(session, first, reason="test", actor="test")
    lead.reentry = "restart"
    session.commit()
    url = f"/api/v1/contacts/{contact.id}/enrollments"

    refused = api.post(url, {"campaign_id": lead.id})
    assert refused.status_code == 409 and "email 1" in refused.get_json()["detail"]
    confirmed = api.post(url, {"campaign_id": lead.id, "restart": True})
    assert confirmed.status_code == 201 and confirmed.get_json()["current_step"] == 1

    session.expire_all()
    again = session.scalars(sa.select(Enrollment).where(Enrollment.status == "active")).one()
    stop(session, again, reason="test", actor="test")
    session.get(type(lead), lead.id).reentry = "resume"
    session.commit()
    resumed = api.post(url, {"campaign_id": lead.id})
    assert resumed.status_code == 201 and resumed.get_json()["current_step"] == 2
