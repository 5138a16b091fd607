"""Admins edit a campaign's emails; a broken template is refused and nothing is saved."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from crm_app.extensions import db
from crm_app.models import Campaign, CampaignStep, Enrollment

GOOD = {
    "delay_days": "4",
    "subject": "A note for {{ contact.company | default('your team', true) }}",
    "body_html": "<p>Hi {{ contact.first_name | default('there', true) }},</p>"
    '<p><a href="{{ unsubscribe_url }}">Unsubscribe</a></p>',
    "body_text": "Hi {{ contact.first_name | default('there', true) }},\n{{ unsubscribe_url }}",
}


def steps_of(campaign_id: int) -> list[CampaignStep]:
    db.session.expire_all()
    return list(
        db.session.scalars(
            sa.select(CampaignStep)
            .where(CampaignStep.campaign_id == campaign_id)
            .order_by(CampaignStep.position)
        )
    )


def test_edit_saves_a_new_version_and_marks_the_campaign_edited(admin, campaigns):
    lead = campaigns["lead"]
    step = lead.steps[1]
    response = admin.post(f"/campaigns/{lead.id}/steps/{step.id}/edit", GOOD)
    assert response.status_code == 302
    saved = steps_of(lead.id)[1]
    assert saved.subject == GOOD["subject"]
    assert saved.delay_days == 4
    assert saved.version == 2
    assert db.session.get(Campaign, lead.id).customized is True


def test_saving_the_same_text_makes_no_new_version(admin, campaigns):
    lead = campaigns["lead"]
    step = lead.steps[0]
    same = {
        "delay_days": str(step.delay_days),
        "subject": step.subject,
        "body_html": step.body_html,
        "body_text": step.body_text,
    }
    admin.post(f"/campaigns/{lead.id}/steps/{step.id}/edit", same)
    assert steps_of(lead.id)[0].version == 1


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("body_html", "<p>Hi {{ contact.first_name </p>", "Syntax error on line 1"),
        ("subject", "Hello {{ contact.favourite_colour }}", "contact.favourite_colour"),
        ("body_text", "{{ ''.__class__.__mro__ }}", "_"),
        ("body_text", "{% for x in contact %}{{ x }}{% endfor", "Syntax error"),
        ("body_html", "{{ contact.first_name | no_such_filter }}", "no_such_filter"),
        ("body_text", "{{ 1 / 0 }}", "failed while rendering: division by zero"),
        ("subject", "", "required"),
        ("delay_days", "-2", "whole number of days"),
        ("delay_days", "soon", "whole number of days"),
        ("delay_days", "1_0", "whole number of days"),  # int() reads it as 10
    ],
)
def test_broken_input_is_refused_next_to_its_field_and_nothing_saved(
    admin, campaigns, field, value, message
):
    lead = campaigns["lead"]
    step = lead.steps[0]
    before = (step.subject, step.body_html, step.body_text, step.delay_days)
    response = admin.post(f"/campaigns/{lead.id}/steps/{step.id}/edit", GOOD | {field: value})
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert f'aria-describedby="error-{field}"' in page
    error = page.split(f'id="error-{field}">', 1)[1].split("</p>", 1)[0]
    assert message in error.replace("&#39;", "'")
    assert "Nothing was saved" in page
    saved = steps_of(lead.id)[0]
    assert (saved.subject, saved.body_html, saved.body_text, saved.delay_days) == before
    assert saved.version == 1


def test_add_appends_an_email(admin, campaigns):
    client = campaigns["client"]
    response = admin.post(f"/campaigns/{client.id}/steps/new", GOOD)
    assert response.status_code == 302
    steps = steps_of(client.id)
    assert [s.position for s in steps] == [1, 2, 3, 4, 5]
    assert steps[-1].subject == GOOD["subject"]


def test_remove_keeps_contacts_in_their_place(admin, campaigns, make_contact):
    lead = campaigns["lead"]
    ahead = make_contact("lead")
    waiting = make_contact("lead")
    ahead_enrollment, waiting_enrollment = ahead.enrollments[0], waiting.enrollments[0]
    ahead_enrollment.current_step = 4  # already past email 2
    waiting_enrollment.current_step = 2  # waiting for email 2
    db.session.commit()
    subjects = [s.subject for s in lead.steps]
    second = lead.steps[1]
    asked = admin.post(f"/campaigns/{lead.id}/steps/{second.id}/delete")
    assert asked.status_code == 409 and len(steps_of(lead.id)) == 6  # contacts wait: confirm
    admin.post(f"/campaigns/{lead.id}/steps/{second.id}/delete", {"confirmed": "1"})
    steps = steps_of(lead.id)
    assert [s.position for s in steps] == [1, 2, 3, 4, 5]
    assert [s.subject for s in steps] == subjects[:1] + subjects[2:]
    assert db.session.get(Enrollment, ahead_enrollment.id).current_step == 3
    # Waiting for the removed email: now waits for the one that followed it.
    assert db.session.get(Enrollment, waiting_enrollment.id).current_step == 2


def test_the_last_email_cannot_be_removed(admin, session):
    campaign = Campaign(slug="solo", name="Solo")
    campaign.steps.append(CampaignStep(position=1, subject="s", body_html="h", body_text="t"))
    session.add(campaign)
    session.commit()
    response = admin.post(
        f"/campaigns/{campaign.id}/steps/{campaign.steps[0].id}/delete", follow_redirects=True
    )
    assert b"needs at least one email" in response.data
    assert len(steps_of(campaign.id)) == 1


def test_move_swaps_neighbours(admin, campaigns):
    prospect = campaigns["prospect"]
    first, second = prospect.steps[0], prospect.steps[1]
    admin.post(f"/campaigns/{prospect.id}/steps/{second.id}/move", {"direction": "up"})
    steps = steps_of(prospect.id)
    assert [s.id for s in steps[:2]] == [second.id, first.id]
    response = admin.post(
        f"/campaigns/{prospect.id}/steps/{second.id}/move",
        {"direction": "up"},
        follow_redirects=True,
    )
    assert b"cannot move up" in response.data


@pytest.mark.parametrize("action", ["edit", "delete", "move"])
def test_staff_cannot_change_emails(staff, campaigns, action):
    lead = campaigns["lead"]
    step = lead.steps[0]
    response = staff.post(f"/campaigns/{lead.id}/steps/{step.id}/{action}", GOOD)
    assert response.status_code == 403
    assert staff.post(f"/campaigns/{lead.id}/steps/new", GOOD).status_code == 403
    assert steps_of(lead.id)[0].version == 1


def test_step_of_another_campaign_is_404(admin, campaigns):
    lead, client = campaigns["lead"], campaigns["client"]
    assert admin.get(f"/campaigns/{lead.id}/steps/{client.steps[0].id}/edit").status_code == 404
