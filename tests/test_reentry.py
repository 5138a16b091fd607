"""Re-entry rules: a contact enrolled again in a campaign resumes, restarts only when
confirmed, or is refused, whatever the path. Nobody gets the same email twice by
accident (issue 11's scenario: Stop all, then Enrol by type, sent email 1 again)."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from crm_app.drip.audience.ending import stop_all
from crm_app.drip.audience.enrollment import (
    EnrollmentError,
    change_contact_type,
    enroll,
    enroll_by_type,
)
from crm_app.drip.audience.errors import RestartNeedsConfirmation
from crm_app.drip.campaigns.schedule import send_time_for_step
from crm_app.drip.campaigns.steps import move_step
from crm_app.drip.delivery.tick import run_tick
from crm_app.models import Activity, Enrollment, Message, utcnow
from tests.authoring_helpers import active_enrollment_of, send_next, sends_per_email


def _networking_contact_with_email_1_sent(session, make_contact, campaigns, backend, settings):
    contact = make_contact("networking")
    send_next(session, contact, campaigns["networking"], backend, settings)
    return contact


def _restart_case(session, make_contact, campaigns, backend, settings):
    networking = campaigns["networking"]
    networking.reentry = "restart"
    contact = _networking_contact_with_email_1_sent(
        session, make_contact, campaigns, backend, settings
    )
    stop_all(session, contact, reason="test", actor="test")
    session.commit()
    return contact, networking


def _notes(session, contact) -> list[str]:
    return list(
        session.scalars(
            sa.select(Activity.detail).where(
                Activity.contact_id == contact.id, Activity.kind == "not_enrolled"
            )
        )
    )


def test_stop_all_then_enrol_by_type_resumes_at_email_2_and_never_repeats_email_1(
    session, make_contact, campaigns, backend, settings, fake_sendgrid
):
    networking = campaigns["networking"]
    contact = _networking_contact_with_email_1_sent(
        session, make_contact, campaigns, backend, settings
    )
    stop_all(session, contact, reason="Stop all", actor="test")
    enrollment = enroll_by_type(session, contact, actor="test")
    session.commit()

    assert enrollment.entry == "resumed"
    assert enrollment.current_step_id == networking.steps[1].id
    assert enrollment.current_step == 2
    send_next(session, contact, networking, backend, settings)
    sent = sends_per_email(fake_sendgrid)
    first, second = (str(step.id) for step in networking.steps[:2])
    assert sent == {(contact.email, first): 1, (contact.email, second): 1}


def test_a_resumed_email_waits_its_delay_after_the_last_one_received(
    session, make_contact, campaigns, backend, settings
):
    networking = campaigns["networking"]
    contact = _networking_contact_with_email_1_sent(
        session, make_contact, campaigns, backend, settings
    )
    last_sent = active_enrollment_of(session, contact, networking).last_sent_at
    stop_all(session, contact, reason="test", actor="test")
    now = last_sent + timedelta(hours=1)
    enrollment = enroll(session, contact, networking, actor="test", now=now)
    expected = send_time_for_step(networking, contact, networking.steps[1].delay_days, last_sent)
    assert enrollment.next_send_at == max(expected, now)


def test_resuming_a_contact_that_received_every_email_is_refused(
    session, make_contact, campaigns, backend, settings
):
    client = campaigns["client"]
    contact = make_contact("client")
    for _ in client.steps:
        send_next(session, contact, client, backend, settings)
    assert active_enrollment_of(session, contact, client) is None  # completed
    with pytest.raises(EnrollmentError, match="already received every email of Client"):
        enroll(session, contact, client, actor="test")


def test_restart_asks_first_listing_each_email_that_would_repeat_and_when(
    session, make_contact, campaigns, backend, settings, fake_sendgrid
):
    contact, networking = _restart_case(session, make_contact, campaigns, backend, settings)

    with pytest.raises(RestartNeedsConfirmation) as asked:
        enroll_by_type(session, contact, actor="test")
    (repeat,) = asked.value.repeats
    assert repeat.step.id == networking.steps[0].id
    assert repeat.again_at >= utcnow() - timedelta(seconds=5)
    assert "Confirm the restart" in str(asked.value) and "email 1" in str(asked.value)
    session.rollback()

    enrollment = enroll_by_type(session, contact, actor="test", restart=True)
    session.commit()
    assert (enrollment.entry, enrollment.current_step) == ("restarted", 1)
    send_next(session, contact, networking, backend, settings)
    # The one repeat the admin confirmed, and nothing else.
    assert sends_per_email(fake_sendgrid)[(contact.email, str(networking.steps[0].id))] == 2


def test_restart_with_nothing_received_needs_no_confirmation(session, make_contact, campaigns):
    lead = campaigns["lead"]
    lead.reentry = "restart"
    contact = make_contact("lead")
    stop_all(session, contact, reason="test", actor="test")
    assert enroll(session, contact, lead, actor="test").entry == "restarted"


def test_never_refuses_a_second_enrolment_with_a_clear_message(session, make_contact, campaigns):
    lead = campaigns["lead"]
    lead.reentry = "never"
    contact = make_contact("lead")
    stop_all(session, contact, reason="test", actor="test")
    with pytest.raises(EnrollmentError, match="takes each contact once"):
        enroll(session, contact, lead, actor="test")
    with pytest.raises(EnrollmentError, match="takes each contact once"):
        enroll(session, contact, lead, actor="test", restart=True)


def test_an_explicit_restart_on_a_resume_campaign_is_refused_not_ignored(
    session, make_contact, campaigns
):
    contact = make_contact("lead")
    stop_all(session, contact, reason="test", actor="test")
    with pytest.raises(EnrollmentError, match="never restarts"):
        enroll(session, contact, campaigns["lead"], actor="test", restart=True)


@pytest.mark.parametrize("rule", ["resume", "restart", "never"])
def test_type_switch_lead_client_lead_obeys_the_rule(
    session, make_contact, campaigns, backend, settings, fake_sendgrid, rule
):
    lead = campaigns["lead"]
    lead.reentry = rule
    contact = make_contact("lead")
    send_next(session, contact, lead, backend, settings)  # lead email 1 received
    change_contact_type(session, contact, "client", actor="test")
    session.commit()
    change_contact_type(session, contact, "lead", actor="test")
    session.commit()

    back = active_enrollment_of(session, contact, lead)
    if rule == "resume":
        assert (back.entry, back.current_step_id) == ("resumed", lead.steps[1].id)
        send_next(session, contact, lead, backend, settings)
    elif rule == "restart":
        assert back is None  # an automatic path never confirms a restart
        assert "Confirm the restart" in _notes(session, contact)[-1]
    else:
        assert back is None
        assert "takes each contact once" in _notes(session, contact)[-1]
    assert max(sends_per_email(fake_sendgrid).values()) == 1  # no email twice


def test_a_resumed_contact_is_not_sent_an_email_it_got_before_a_reorder(
    session, make_contact, campaigns, backend, settings, fake_sendgrid
):
    lead = campaigns["lead"]
    contact = make_contact("lead")
    first = lead.steps[0]
    send_next(session, contact, lead, backend, settings)  # email 1
    stop_all(session, contact, reason="test", actor="test")
    enroll(session, contact, lead, actor="test")  # resumes at email 2
    move_step(session, first, "down", actor="test", confirmed=True)  # email 1 now follows email 2
    session.commit()

    send_next(session, contact, lead, backend, settings)  # email 2 (now first)
    enrollment = active_enrollment_of(session, contact, lead)
    assert enrollment.current_step_id == first.id  # next in the new order: the old email 1
    enrollment.next_send_at = utcnow() - timedelta(seconds=1)
    session.commit()
    result = run_tick(session, lambda ids: None, now=utcnow())

    assert result.not_repeated == 1 and result.created == 0
    enrollment = active_enrollment_of(session, contact, lead)
    assert enrollment.current_step_id == lead.steps[2].id
    assert max(sends_per_email(fake_sendgrid).values()) == 1
    skipped = session.scalar(
        sa.select(Activity.detail).where(
            Activity.contact_id == contact.id, Activity.kind == "email_skipped"
        )
    )
    assert "not sent again" in skipped and "{{" not in skipped


def test_every_enrolment_records_how_it_began(session, make_contact, campaigns):
    contact = make_contact("lead")
    assert contact.enrollments[0].entry == "first"
    stop_all(session, contact, reason="test", actor="test")
    again = enroll(session, contact, campaigns["lead"], actor="test")
    assert again.entry == "resumed"
    detail = session.scalar(
        sa.select(Activity.detail)
        .where(Activity.enrollment_id == again.id, Activity.kind == "enrolled")
        .limit(1)
    )
    assert detail.startswith("Enrolled in Lead (by hand), resuming at Email 1 of Lead “")
    assert session.scalar(sa.select(sa.func.count(Enrollment.id))) == 2


# --- the contact page: the restart confirmation, with and without JavaScript ---


@pytest.mark.parametrize("htmx", [True, False])
def test_the_panel_lists_what_a_restart_repeats_and_restarts_only_when_confirmed(
    admin, session, make_contact, campaigns, backend, settings, htmx
):
    contact, networking = _restart_case(session, make_contact, campaigns, backend, settings)
    url = f"/contacts/{contact.id}/enrollments/by-type"

    asked = admin.post(url, htmx=htmx)
    assert asked.status_code == 200
    page = asked.get_data(as_text=True)
    assert "already received 1 email of Networking" in page
    assert "Email 1 “" in page and "again about" in page
    # The subject the contact got, not the sample contact's (its name, its A/B variant).
    sent = session.scalar(sa.select(Message.subject).where(Message.contact_id == contact.id))
    assert f"Email 1 “{sent}”" in page
    assert 'name="restart" value="1"' in page
    assert ("<html" in page) is not htmx  # no JavaScript: the contact page itself
    assert active_enrollment_of(session, contact, networking) is None

    admin.post(url, {"restart": "1", "campaign_id": str(networking.id)}, htmx=htmx)
    enrollment = active_enrollment_of(session, contact, networking)
    assert (enrollment.entry, enrollment.current_step) == ("restarted", 1)


def test_manual_enrolment_in_a_never_campaign_says_why_in_the_panel(
    admin, session, make_contact, campaigns
):
    lead = campaigns["lead"]
    lead.reentry = "never"
    contact = make_contact("lead")
    stop_all(session, contact, reason="test", actor="test")
    session.commit()
    response = admin.post(
        f"/contacts/{contact.id}/enrollments", {"campaign_id": str(lead.id)}, htmx=True
    )
    assert "takes each contact once (re-entry: never)" in response.get_data(as_text=True)
