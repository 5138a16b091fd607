""" "Why?" (issue 15 item 6): for any contact and any email of its campaigns, a plain
explanation from the data, one test per reason, and the contact page's control."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from crm_app.drip.audience.ending import stop
from crm_app.drip.audience.suppression import suppress
from crm_app.drip.audience.why import EXPLAINERS, why_email
from crm_app.drip.campaigns.manage import set_campaign_status
from crm_app.drip.delivery.frequency_cap import FrequencyCap
from crm_app.drip.delivery.tick import run_tick
from crm_app.models import Enrollment, Message
from tests.delivery_helpers import WEDNESDAY_10

DAILY = FrequencyCap(1, timedelta(hours=24))


@pytest.fixture
def lead_contact(session, make_contact):
    return make_contact("lead", first_name="Ada", last_name="Lovelace")


def _why(session, contact, step, now=WEDNESDAY_10):
    return why_email(session, contact, step, cap=DAILY, now=now)


def _message(session, contact, step, **fields) -> Message:
    enrollment = contact.enrollments[0]
    message = Message(
        enrollment_id=enrollment.id,
        step_id=step.id,
        contact_id=contact.id,
        campaign_id=enrollment.campaign_id,
        to_email=contact.email,
        subject="Hello",
        **fields,
    )
    session.add(message)
    session.commit()
    return message


def _first(campaigns):
    return campaigns["lead"].steps[0]


def test_sent(session, lead_contact, campaigns):
    sent_at = datetime(2026, 11, 24, 9, 30, tzinfo=UTC)
    _message(session, lead_contact, _first(campaigns), status="sent", sent_at=sent_at,
             opened_at=sent_at, attempts=1)  # fmt: skip
    answer = _why(session, lead_contact, _first(campaigns))
    assert answer.status == "sent" and answer.summary == "Sent Tue 24 Nov 2026 09:30 UTC."
    assert "Opened only by a machine (Apple's privacy proxy), not by the person." in answer.details


def test_failed_says_what_sendgrid_said(session, lead_contact, campaigns):
    error = "SendGrid refused it (400): The from address does not match a verified Sender"
    _message(session, lead_contact, _first(campaigns), status="failed", error=error, attempts=1)
    answer = _why(session, lead_contact, _first(campaigns))
    assert answer.summary == f"Failed: {error}."


def test_in_doubt(session, lead_contact, campaigns):
    _message(session, lead_contact, _first(campaigns), status="in_doubt", attempts=1,
             claimed_at=WEDNESDAY_10)  # fmt: skip
    assert _why(session, lead_contact, _first(campaigns)).status == "in_doubt"


def test_suppressed_by_a_bounce(session, lead_contact, campaigns):
    suppress(session, lead_contact.email, reason="bounce", source="sendgrid bounce", actor="t",
             now=datetime(2026, 11, 20, 8, 0, tzinfo=UTC))  # fmt: skip
    session.commit()
    answer = _why(session, lead_contact, campaigns["lead"].steps[1])
    assert answer.summary == (
        "Not sent: the address is suppressed since Fri 20 Nov 2026 08:00 UTC by a bounce."
    )


def test_held_by_the_cap(session, lead_contact, campaigns, make_contact):
    from crm_app.drip.audience.enrollment import enroll

    enroll(session, lead_contact, campaigns["networking"], actor="test")
    for enrollment in session.scalars(
        sa.select(Enrollment).where(Enrollment.contact_id == lead_contact.id)
    ):
        enrollment.next_send_at = WEDNESDAY_10
    session.commit()
    run_tick(session, lambda ids: None, now=WEDNESDAY_10, frequency_cap=DAILY)
    held = session.scalar(
        sa.select(Enrollment).where(
            Enrollment.contact_id == lead_contact.id, Enrollment.next_send_at.is_not(None)
        )
    )
    answer = _why(session, lead_contact, held.step)
    assert answer.summary == "Held by the frequency cap until Thu 26 Nov 2026 10:00 UTC."
    assert "At most 1 email per day go to one contact across all campaigns" in answer.details[0]


def test_campaign_paused_by_the_breaker_or_an_admin(session, lead_contact, campaigns):
    lead = campaigns["lead"]
    reason = "Paused by the circuit breaker: 12 bounces over its last 200 sends"
    set_campaign_status(session, lead, "paused", actor="system:circuit-breaker",
                        now=datetime(2026, 11, 23, 15, 0, tzinfo=UTC), reason=reason)  # fmt: skip
    session.commit()
    answer = _why(session, lead_contact, _first(campaigns))
    assert answer.summary == (
        "Not sent yet: Lead was paused by the circuit breaker Mon 23 Nov 2026 15:00 UTC."
    )
    assert answer.details[0].startswith("Paused by the circuit breaker: 12 bounces")

    set_campaign_status(session, lead, "active", actor="test")
    set_campaign_status(session, lead, "paused", actor="user:ada@example.com")
    session.commit()
    assert "was paused by ada@example.com" in _why(session, lead_contact, _first(campaigns)).summary


def test_skipped_with_the_reason_the_worker_stored(session, lead_contact, campaigns):
    step = _first(campaigns)
    _message(session, lead_contact, step, status="skipped",
             error="the step's condition did not hold (industry is not Retail)")  # fmt: skip
    lead_contact.enrollments[0].current_step_id = campaigns["lead"].steps[1].id
    session.commit()
    answer = _why(session, lead_contact, step)
    assert answer.summary == (
        "Not sent: skipped, the step's condition did not hold (industry is not Retail)."
    )


def test_enrolment_stopped(session, lead_contact, campaigns):
    stop(session, lead_contact.enrollments[0], reason="stopped by staff", actor="test")
    session.commit()
    answer = _why(session, lead_contact, campaigns["lead"].steps[2])
    assert answer.summary.startswith("Not sent: the enrolment in Lead was stopped")
    assert answer.summary.endswith(": stopped by staff.")


def test_waiting_for_the_window(session, lead_contact, campaigns):
    enrollment = lead_contact.enrollments[0]
    enrollment.step = campaigns["lead"].steps[1]
    # Email 1 went Friday 16:00; two days later is Sunday: it waits for Monday 09:00.
    enrollment.last_sent_at = datetime(2026, 11, 27, 16, 0, tzinfo=UTC)
    enrollment.next_send_at = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
    session.commit()
    answer = _why(session, lead_contact, enrollment.step, now=datetime(2026, 11, 28, tzinfo=UTC))
    assert answer.summary == (
        "Waiting for the send window: due Sun 29 Nov 2026 16:00 UTC, it goes when the "
        "window opens, Mon 30 Nov 2026 09:00 UTC."
    )


def test_a_date_kept_after_the_delay_was_shortened_is_not_blamed_on_the_window(
    session, lead_contact, campaigns
):
    """Email 1 went Monday 10:00 and email 2 (2 days) was set for Wednesday 10:00; then
    an admin shortened the delay to 1 day, and the waiting contact keeps its date (the
    live-edit rule). Tuesday 10:00 is inside the window: the window holds nothing back."""
    enrollment = lead_contact.enrollments[0]
    enrollment.step = campaigns["lead"].steps[1]
    enrollment.last_sent_at = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
    enrollment.next_send_at = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
    session.commit()
    enrollment.step.delay_days = 1  # as saving the new delay does: the date stays
    session.commit()
    answer = _why(session, lead_contact, enrollment.step, now=datetime(2026, 11, 24, tzinfo=UTC))
    assert answer.summary == "Scheduled for Wed 25 Nov 2026 10:00 UTC."


def test_scheduled_and_a_later_email_expected(session, lead_contact, campaigns):
    enrollment = lead_contact.enrollments[0]
    enrollment.next_send_at = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
    session.commit()
    assert _why(session, lead_contact, _first(campaigns)).summary == (
        "Scheduled for Thu 26 Nov 2026 10:00 UTC."
    )
    later = _why(session, lead_contact, campaigns["lead"].steps[1])
    assert later.summary == ("Not yet: it comes after email 1; expected Mon 30 Nov 2026 09:00 UTC.")


def test_not_enrolled(session, lead_contact, campaigns):
    answer = _why(session, lead_contact, campaigns["client"].steps[0])
    assert answer.summary == "Not sent: Ada Lovelace is not enrolled in Client."


def test_the_explainer_list_is_open_for_new_reasons():
    # Issue 14's step conditions insert their rule into this list.
    assert isinstance(EXPLAINERS, list) and len(EXPLAINERS) >= 10


def test_why_control_on_the_contact_page(staff, session, lead_contact, campaigns):
    step = _first(campaigns)
    _message(session, lead_contact, step, status="failed", error="SendGrid refused it (400): bad",
             attempts=1)  # fmt: skip
    page = staff.get(f"/contacts/{lead_contact.id}").get_data(as_text=True)
    assert 'id="why-step"' in page and f'<option value="{step.id}"' in page
    assert f'hx-get="/contacts/{lead_contact.id}/why"' in page

    fragment = staff.get(f"/contacts/{lead_contact.id}/why?step={step.id}", htmx=True)
    html = fragment.get_data(as_text=True)
    assert fragment.status_code == 200 and "<html" not in html
    assert "Failed: SendGrid refused it (400): bad." in html

    # Without JavaScript: the whole page, with the answer under the itinerary.
    full = staff.get(f"/contacts/{lead_contact.id}/why?step={step.id}").get_data(as_text=True)
    assert "<html" in full and "Failed: SendGrid refused it (400): bad." in full

    # An email of a campaign the contact never joined, or no email: 404.
    other = campaigns["client"].steps[0]
    assert staff.get(f"/contacts/{lead_contact.id}/why?step={other.id}").status_code == 404
    assert staff.get(f"/contacts/{lead_contact.id}/why?step=abc").status_code == 404


def test_why_escapes_what_it_quotes(staff, session, lead_contact, campaigns):
    step = _first(campaigns)
    _message(session, lead_contact, step, status="failed", error="<script>alert(1)</script>",
             attempts=1)  # fmt: skip
    html = staff.get(f"/contacts/{lead_contact.id}/why?step={step.id}", htmx=True).get_data(
        as_text=True
    )
    assert "<script>alert" not in html and "&lt;script&gt;" in html


# --- answers that agree with the itinerary: the cap ahead, conditions ---


def test_an_email_due_with_another_says_the_cap_will_hold_it(session, lead_contact, campaigns):
    """Before the tick has held anything, "Why?" of the email the cap will move says so,
    with the date the itinerary on the same page lists (not "Scheduled for" its due time)."""
    from crm_app.drip.audience.enrollment import enroll
    from crm_app.drip.audience.itinerary import contact_itinerary

    enroll(session, lead_contact, campaigns["networking"], actor="test")
    due = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
    for enrollment in lead_contact.enrollments:
        enrollment.next_send_at = due
    session.commit()
    itinerary = contact_itinerary(session, lead_contact, cap=DAILY, now=WEDNESDAY_10)
    held = next(item for item in itinerary.items if item.held_by_cap)
    answer = _why(session, lead_contact, held.step)
    assert answer.summary == (
        "Due Thu 26 Nov 2026 10:00 UTC, then held by the frequency cap: expected "
        f"{held.at:%a %d %b %Y %H:%M} UTC."
    )
    assert held.at > due


def _condition_on_industry(step, industry: str) -> None:
    step.condition = {"field": "industry", "op": "is", "value": industry}


def test_a_condition_that_does_not_hold_today(session, lead_contact, campaigns):
    second = campaigns["lead"].steps[1]
    _condition_on_industry(second, "Retail")
    lead_contact.enrollments[0].next_send_at = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
    session.commit()
    answer = _why(session, lead_contact, second)
    assert answer.summary == (
        'Not sent if nothing changes: it goes only if industry is "Retail", which does not '
        "hold today."
    )
    assert "the enrolment moves on to the next email" in answer.details[0]


def test_a_condition_that_holds_is_said_beside_the_date(session, lead_contact, campaigns):
    first = _first(campaigns)
    lead_contact.industry = "Retail"
    _condition_on_industry(first, "retail")
    lead_contact.enrollments[0].next_send_at = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
    session.commit()
    answer = _why(session, lead_contact, first)
    assert answer.summary == "Scheduled for Thu 26 Nov 2026 10:00 UTC."
    assert 'Sent only if industry is "retail" (it holds today).' in answer.details
