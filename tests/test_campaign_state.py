"""A paused or archived campaign as a contact's page shows it, and the contacts its
pause refused, enrolled when it resumes (crm_app/drip/audience/waiting.py)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from crm_app.drip.audience.ending import stop
from crm_app.drip.audience.enrollment import change_contact_type
from crm_app.drip.audience.panel import campaign_panel
from crm_app.drip.audience.suppression import suppress
from crm_app.drip.campaigns.manage import set_campaign_status
from crm_app.extensions import db
from crm_app.models import Activity, Enrollment


def active_in(session, contact, campaign) -> Enrollment | None:
    session.expire_all()
    return session.scalar(
        sa.select(Enrollment).where(
            Enrollment.contact_id == contact.id,
            Enrollment.campaign_id == campaign.id,
            Enrollment.status == "active",
        )
    )


def panel_of(admin, contact) -> str:
    page = admin.get(f"/contacts/{contact.id}").get_data(as_text=True)
    return page.split('<section id="campaign-panel"', 1)[1].split("</section>", 1)[0]


@pytest.mark.parametrize(
    ("status", "says"),
    [
        ("paused", "Client is paused: no email until it resumes"),
        ("archived", "Client is archived: no more emails unless it is restored"),
    ],
)
def test_the_panel_shows_a_stopped_campaign_without_a_next_email_date(
    admin, session, campaigns, make_contact, status, says
):
    contact = make_contact("client")
    set_campaign_status(session, campaigns["client"], status, actor="test")
    session.commit()
    panel = panel_of(admin, contact)
    row = panel.split('data-campaign="Client"', 1)[1].split("</tr>", 1)[0]
    assert f"campaign {status}" in row and says in row
    assert "contact&#39;s time" not in row and ">active<" not in row


def test_a_contact_created_while_its_campaign_is_paused_is_enrolled_on_resume(
    session, campaigns, make_contact
):
    client = campaigns["client"]
    set_campaign_status(session, client, "paused", actor="test")
    session.commit()
    contact = make_contact("client")
    assert active_in(session, contact, client) is None
    assert campaign_panel(session, contact).waiting_for == client

    change = set_campaign_status(session, client, "active", actor="user:admin@example.com")
    session.commit()

    enrollment = active_in(session, contact, client)
    assert enrollment is not None and enrollment.source == "resume"
    assert enrollment.next_send_at is not None
    assert change.enrolled_waiting == 1
    assert "Enrolled 1 contact added while it was stopped." in change.notice
    assert campaign_panel(session, contact).waiting_for is None


def test_a_type_change_while_paused_is_enrolled_on_resume_too(session, campaigns, make_contact):
    client = campaigns["client"]
    contact = make_contact("lead")
    set_campaign_status(session, client, "archived", actor="test")
    change_contact_type(session, contact, "client", actor="test")
    session.commit()
    assert active_in(session, contact, client) is None

    assert set_campaign_status(session, client, "active", actor="test").enrolled_waiting == 1
    assert active_in(session, contact, client) is not None


def test_resume_leaves_contacts_that_were_stopped_or_cannot_be_mailed(
    session, campaigns, make_contact
):
    client = campaigns["client"]
    stopped_by_hand = make_contact("client")
    stop(session, stopped_by_hand.enrollments[0], reason="by hand", actor="test")
    set_campaign_status(session, client, "paused", actor="test")
    session.commit()
    unmailable = make_contact("client", email="gone@example.com")
    suppress(session, "gone@example.com", reason="bounce", source="test", actor="test")
    session.commit()

    change = set_campaign_status(session, client, "active", actor="test")
    session.commit()

    assert active_in(session, stopped_by_hand, client) is None
    assert active_in(session, unmailable, client) is None
    assert (change.enrolled_waiting, change.refused_waiting) == (0, 1)
    # Refused again, but not written twice on its timeline.
    refusals = session.scalar(
        sa.select(sa.func.count(Activity.id)).where(
            Activity.contact_id == unmailable.id, Activity.kind == "not_enrolled"
        )
    )
    assert refusals == 1


def test_the_panel_says_the_contact_waits_for_the_campaign(admin, session, campaigns, make_contact):
    set_campaign_status(session, campaigns["client"], "paused", actor="test")
    session.commit()
    contact = make_contact("client")
    assert (
        "Not enrolled in Client: the campaign is paused. Person1 Example is enrolled when it"
        " is active again." in panel_of(admin, contact)
    )


def test_resuming_on_the_campaign_page_says_who_was_enrolled(admin, campaigns, make_contact):
    client = campaigns["client"]
    admin.post(f"/campaigns/{client.id}/status", {"status": "paused"})
    db.session.expire_all()  # the page paused it in a session of its own
    contact = make_contact("client")
    response = admin.post(f"/campaigns/{client.id}/status", {"status": "active"})
    assert response.status_code == 302
    page = admin.get(response.headers["Location"]).get_data(as_text=True)
    assert "Client is now active. Enrolled 1 contact added while it was stopped." in page
    assert active_in(db.session, contact, client) is not None


def test_a_resume_enrols_its_waiting_contacts_a_chunk_at_a_time_with_a_few_statements(
    session, campaigns, make_contact, monkeypatch
):
    """An import made while the campaign was paused can leave thousands waiting: they
    are enrolled set-based, a chunk at a time, not with a round of queries each."""
    from crm_app.drip.audience import waiting

    client = campaigns["client"]
    set_campaign_status(session, client, "paused", actor="test")
    session.commit()
    contacts = [make_contact("client") for _ in range(7)]
    monkeypatch.setattr(waiting, "RESUME_CHUNK", 3)  # three rounds: 3, 3 and 1
    statements = []
    listen = lambda *args: statements.append(args[2])  # noqa: E731
    sa.event.listen(session.get_bind(), "before_cursor_execute", listen)
    try:
        change = set_campaign_status(session, client, "active", actor="user:admin@example.com")
    finally:
        sa.event.remove(session.get_bind(), "before_cursor_execute", listen)
    session.commit()
    assert (change.enrolled_waiting, change.refused_waiting) == (7, 0)
    assert all(active_in(session, contact, client) is not None for contact in contacts)
    enrolled = session.scalars(
        sa.select(Activity.detail).where(
            Activity.kind == "enrolled", Activity.campaign_id == client.id
        )
    ).all()
    assert len([d for d in enrolled if "resume" in d.lower()]) == 7
    assert len(statements) <= 40  # one contact at a time took about ten each
