"""Campaigns are made, not only seeded: create, edit the details, clone with the emails,
archive, and delete only one that never sent. One campaign per contact type."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from crm_app.drip.audience.enrollment import EnrollmentError, enroll
from crm_app.drip.campaigns.versions import versions_of
from crm_app.models import Campaign, CampaignStep, Message
from tests.authoring_helpers import send_next

NEW = {
    "name": "Webinar follow-up",
    "description": "After our November webinar.",
    "contact_type": "",
    "goal_contact_type": "client",
    "reentry": "never",
}


def _by_name(session, name: str) -> Campaign | None:
    session.expire_all()
    return session.scalar(sa.select(Campaign).where(Campaign.name == name))


def test_an_admin_creates_a_campaign_that_waits_for_its_first_email(
    admin, session, campaigns, make_contact
):
    response = admin.post("/campaigns/new", NEW)
    assert response.status_code == 302
    campaign = _by_name(session, "Webinar follow-up")
    assert response.headers["Location"] == f"/campaigns/{campaign.id}"
    assert (campaign.contact_type, campaign.status, campaign.reentry) == (None, "active", "never")
    assert campaign.goal_contact_type == "client"
    assert campaign.slug == "webinar-follow-up" and campaign.steps == []
    page = admin.get(f"/campaigns/{campaign.id}").get_data(as_text=True)
    assert "takes no enrolment until it has one" in page  # the page says so
    assert "Add its first email" in page  # and so does the flash
    assert "manual enrolment only" in page
    with pytest.raises(EnrollmentError, match="has no emails yet"):
        enroll(session, make_contact("lead"), campaign, actor="test")
    assert "Webinar follow-up" in admin.get("/campaigns/").get_data(as_text=True)


def test_a_type_that_starts_another_campaign_is_refused_with_the_rule(admin, session, campaigns):
    form = admin.get("/campaigns/new").get_data(as_text=True)
    assert "Every new lead contact (taken by Lead)" in form
    response = admin.post("/campaigns/new", NEW | {"contact_type": "lead"})
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    error = page.split('id="error-contact_type">', 1)[1].split("</p>", 1)[0]
    assert "Lead already enrols every lead contact" in error
    assert "a contact type starts one campaign only" in error
    assert 'value="Webinar follow-up"' in page  # nothing typed is lost
    assert _by_name(session, "Webinar follow-up") is None


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("name", "", "Give the campaign a name."),
        ("name", "lead", "Another campaign is called lead."),
        ("goal_events", "x" * 91, "at most 90 characters"),
        ("reentry", "sometimes", "what enrolling a contact again does"),
        ("contact_type", "alien", "Choose a contact type"),
    ],
)
def test_bad_details_are_refused_next_to_their_field(admin, campaigns, field, value, message):
    response = admin.post("/campaigns/new", NEW | {field: value})
    assert response.status_code == 422
    assert message in response.get_data(as_text=True).split(f'id="error-{field}">', 1)[1]


def test_editing_renames_and_hands_a_type_over(admin, session, campaigns):
    lead = campaigns["lead"]
    details = {
        "name": "Leads (2027)",
        "description": lead.description,
        "contact_type": "",
        "goal_contact_type": lead.goal_contact_type,
        "reentry": "restart",
    }
    assert admin.post(f"/campaigns/{lead.id}/edit", details).status_code == 302
    admin.post("/campaigns/new", NEW | {"contact_type": "lead"})  # the type is free now
    session.expire_all()
    assert (lead.name, lead.contact_type, lead.reentry, lead.customized) == (
        "Leads (2027)",
        None,
        "restart",
        True,
    )
    assert _by_name(session, "Webinar follow-up").contact_type == "lead"
    page = admin.get(f"/campaigns/{lead.id}").get_data(as_text=True)
    assert "enrolled again: <strong>Restart: a contact enrolled again starts at email 1" in page


def test_clone_copies_every_email_with_a_history_of_its_own_and_no_trigger(
    admin, session, campaigns
):
    lead = campaigns["lead"]
    response = admin.post(f"/campaigns/{lead.id}/clone")
    copy = _by_name(session, "Copy of Lead")
    assert response.headers["Location"] == f"/campaigns/{copy.id}"
    assert copy.contact_type is None and copy.slug == "copy-of-lead"
    assert [(s.position, s.subject, s.delay_days) for s in copy.steps] == [
        (s.position, s.subject, s.delay_days) for s in lead.steps
    ]
    assert {s.id for s in copy.steps}.isdisjoint({s.id for s in lead.steps})
    (first,) = versions_of(session, copy.steps[2])
    assert first.version == 1 and first.note == "copied from Lead, email 3 version 1"
    admin.post(f"/campaigns/{lead.id}/clone")
    assert _by_name(session, "Copy of Lead (2)") is not None


def test_a_campaign_that_never_sent_can_be_deleted(admin, session, campaigns):
    admin.post("/campaigns/new", NEW)
    campaign = _by_name(session, NEW["name"])
    campaign.steps.append(CampaignStep(position=1, subject="s", body_html="h", body_text="t"))
    session.commit()
    campaign_id = campaign.id
    confirm = admin.get(f"/campaigns/{campaign_id}/delete").get_data(as_text=True)
    assert "It never sent an email" in confirm and "Delete campaign" in confirm
    assert admin.post(f"/campaigns/{campaign_id}/delete").headers["Location"] == "/campaigns/"
    assert _by_name(session, NEW["name"]) is None
    steps_left = sa.select(sa.func.count(CampaignStep.id)).where(
        CampaignStep.campaign_id == campaign_id
    )
    assert session.scalar(steps_left) == 0


def test_a_campaign_that_sent_is_archived_not_deleted(
    admin, session, campaigns, make_contact, backend, settings
):
    admin.post(f"/campaigns/{campaigns['lead'].id}/clone")
    copy = _by_name(session, "Copy of Lead")
    contact = make_contact("networking")
    enroll(session, contact, copy, actor="test")
    session.commit()
    send_next(session, contact, copy, backend, settings)
    assert session.scalar(sa.select(Message.status).where(Message.campaign_id == copy.id)) == "sent"

    page = admin.get(f"/campaigns/{copy.id}/delete").get_data(as_text=True)
    assert "has sent emails: archive it instead" in page and "Delete campaign" not in page
    refused = admin.post(f"/campaigns/{copy.id}/delete", follow_redirects=True)
    assert "has sent emails: archive it instead" in refused.get_data(as_text=True)
    assert _by_name(session, "Copy of Lead") is not None


def test_default_campaigns_and_campaigns_with_active_contacts_are_not_deleted(
    admin, session, campaigns, make_contact
):
    page = admin.get(f"/campaigns/{campaigns['client'].id}/delete").get_data(as_text=True)
    assert "is a default campaign" in page
    admin.post(f"/campaigns/{campaigns['lead'].id}/clone")
    copy = _by_name(session, "Copy of Lead")
    enroll(session, make_contact("networking"), copy, actor="test")
    session.commit()
    admin.post(f"/campaigns/{copy.id}/delete")
    assert _by_name(session, "Copy of Lead") is not None
    assert "1 active enrolment(s): stop them first" in admin.get(
        f"/campaigns/{copy.id}/delete"
    ).get_data(as_text=True)


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("post", "/campaigns/new"),
        ("post", "/campaigns/{id}/edit"),
        ("post", "/campaigns/{id}/clone"),
        ("post", "/campaigns/{id}/delete"),
        ("get", "/campaigns/new"),
    ],
)
def test_staff_cannot_make_change_or_delete_campaigns(staff, session, campaigns, method, url):
    before = session.scalar(sa.select(sa.func.count(Campaign.id)))
    response = getattr(staff, method)(
        url.format(id=campaigns["lead"].id), **({"data": NEW} if method == "post" else {})
    )
    assert response.status_code == 403
    assert session.scalar(sa.select(sa.func.count(Campaign.id))) == before
