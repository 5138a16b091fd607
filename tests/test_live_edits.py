"""Live edits: enrolments follow a step's identity, so removing, inserting, reordering
and re-timing the emails of a running campaign have documented effects (DELIVERY.md
"Live edits"), each checked here with contacts waiting at several places."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from crm_app.drip.campaigns.impact import ImpactNeedsConfirmation
from crm_app.drip.campaigns.schedule import send_time_for_step
from crm_app.drip.campaigns.steps import (
    StepInput,
    add_step,
    move_step,
    removal_impact,
    remove_step,
    update_step,
)
from crm_app.drip.delivery.pipeline import deliver_messages
from crm_app.drip.delivery.tick import run_tick
from crm_app.models import Activity, Enrollment, Message, utcnow
from tests.authoring_helpers import active_enrollment_of, send_next, sends_per_email
from tests.delivery_helpers import open_all_week

SENDER = {"name": "Sam", "company": "Acme"}
NEW_EMAIL = StepInput(
    subject="A new note for {{ contact.first_name }}",
    body_html='<p>New</p><p><a href="{{ unsubscribe_url }}">Unsubscribe</a></p>',
    body_text="New\nUnsubscribe: {{ unsubscribe_url }}",
    delay_days="1",
)
LATER = datetime(2031, 3, 3, 10, 0, tzinfo=UTC)  # far enough ahead that no tick sends it


def _waiting_at(session, make_contact, campaign, positions) -> dict[int, Enrollment]:
    """A contact waiting (not due) for the step at each position, each with its own date."""
    waiting = {}
    for position in positions:
        contact = make_contact(campaign.contact_type)
        enrollment = active_enrollment_of(session, contact, campaign)
        enrollment.current_step = position
        enrollment.next_send_at = LATER + timedelta(days=position)
        waiting[position] = enrollment
    session.commit()
    return waiting


def _reload(session, enrollment: Enrollment) -> Enrollment:
    session.expire_all()
    return session.get(Enrollment, enrollment.id)


# --- a removed email ---


def test_removing_an_email_moves_its_waiting_contacts_to_the_next_on_the_same_date(
    session, make_contact, campaigns
):
    lead = campaigns["lead"]
    steps = list(lead.steps)
    waiting = _waiting_at(session, make_contact, lead, [1, 3, 5])
    dates = {position: e.next_send_at for position, e in waiting.items()}

    with pytest.raises(ImpactNeedsConfirmation):
        remove_step(session, steps[2], actor="test")  # contacts wait: shown first
    session.rollback()
    assert _reload(session, waiting[3]).current_step_id == steps[2].id  # nothing changed

    remove_step(session, steps[2], actor="test", confirmed=True)
    session.commit()
    at = {position: _reload(session, e) for position, e in waiting.items()}
    assert at[3].current_step_id == steps[3].id  # the one after the removed email...
    assert at[3].next_send_at == dates[3]  # ...on the same date
    assert at[1].current_step_id == steps[0].id and at[1].next_send_at == dates[1]
    assert at[5].current_step_id == steps[4].id and at[5].next_send_at == dates[5]
    assert at[5].current_step == 4  # same email, one place earlier
    note = session.scalar(
        sa.select(Activity.detail).where(
            Activity.kind == "step_removed", Activity.enrollment_id == waiting[3].id
        )
    )
    assert note.startswith("Email 3 of Lead “") and "next is “" in note
    assert "{{" not in note


def test_removing_the_last_email_completes_the_contacts_waiting_for_it(
    session, make_contact, campaigns
):
    client = campaigns["client"]
    last = client.steps[-1]
    (waiting,) = _waiting_at(session, make_contact, client, [len(client.steps)]).values()
    remove_step(session, last, actor="test", confirmed=True)
    waiting.next_send_at = utcnow() - timedelta(seconds=1)
    session.commit()
    assert _reload(session, waiting).current_step_id is None
    result = run_tick(session, lambda ids: None, now=utcnow())
    assert result.completed == 1 and _reload(session, waiting).status == "completed"


def test_an_email_in_flight_when_its_step_is_removed_is_skipped_and_the_next_goes(
    session, make_contact, campaigns, backend, settings, fake_sendgrid
):
    lead = campaigns["lead"]
    steps = list(lead.steps)
    contact = make_contact("lead")
    enrollment = active_enrollment_of(session, contact, lead)
    open_all_week(lead)
    enrollment.next_send_at = utcnow() - timedelta(seconds=1)
    session.commit()
    (queued,) = run_tick(session, lambda ids: None, now=utcnow()).enqueued  # email 1 queued

    remove_step(session, steps[0], actor="test", confirmed=True)
    session.commit()
    report = deliver_messages(session, [queued], backend, settings)

    assert report.skipped == [queued] and fake_sendgrid.requests == []
    assert session.get(Message, queued).error == "the step was removed from the campaign"
    enrollment = active_enrollment_of(session, contact, lead)
    assert enrollment.current_step_id == steps[1].id and enrollment.next_send_at is not None
    send_next(session, contact, lead, backend, settings)
    assert sends_per_email(fake_sendgrid) == {(contact.email, str(steps[1].id)): 1}


# --- an inserted email ---


def _send_everything(session, contact, campaign, backend, settings) -> None:
    while active_enrollment_of(session, contact, campaign) is not None:
        send_next(session, contact, campaign, backend, settings)


def test_an_email_inserted_before_a_contacts_place_is_never_sent_to_it(
    session, make_contact, campaigns, backend, settings, fake_sendgrid
):
    client = campaigns["client"]  # four emails
    contacts = {n: make_contact("client") for n in (0, 1, 3)}  # emails received so far
    for received, contact in contacts.items():
        for _ in range(received):
            send_next(session, contact, client, backend, settings)
    new = add_step(
        session,
        client,
        StepInput(**{**NEW_EMAIL.__dict__, "position": "3"}),
        SENDER,
        actor="test",
        confirmed=True,
    )
    session.commit()

    for contact in contacts.values():
        _send_everything(session, contact, client, backend, settings)
    sent = sends_per_email(fake_sendgrid)
    assert set(sent.values()) == {1}  # nothing twice
    got_new = {n for n, c in contacts.items() if (c.email, str(new.id)) in sent}
    assert got_new == {0, 1}  # place 3 was still ahead of them; the third was past it
    per_contact = Counter(address for address, _ in sent)
    assert per_contact == {contacts[0].email: 5, contacts[1].email: 5, contacts[3].email: 4}


def test_inserting_asks_for_a_confirmation_when_contacts_are_waiting(
    session, make_contact, campaigns
):
    client = campaigns["client"]
    _waiting_at(session, make_contact, client, [1, 3])
    data = StepInput(**{**NEW_EMAIL.__dict__, "position": "2"})
    with pytest.raises(ImpactNeedsConfirmation) as asked:
        add_step(session, client, data, SENDER, actor="test")
    effects = {line.waiting_for.split(" “")[0]: line.effect for line in asked.value.impact.lines}
    assert "later also get email 2 “A new note for Alex”" in effects["email 1"]
    assert (
        "not get email 2 “A new note for Alex” (it comes before their place)" in effects["email 4"]
    )


# --- reordering ---


def test_reordering_keeps_each_contacts_next_email_and_sends_nothing_twice(
    session, make_contact, campaigns, backend, settings, fake_sendgrid
):
    lead = campaigns["lead"]  # six emails
    steps = list(lead.steps)
    contacts = {n: make_contact("lead") for n in (0, 2, 4)}  # emails received so far
    for contact in contacts.values():
        # Not due by themselves: a tick inside Lead's send window (say at 09:00 UTC)
        # would otherwise send email 1 to the first contact along with the others'.
        active_enrollment_of(session, contact, lead).next_send_at = LATER
        session.commit()  # before the next lookup, which expires the session
    for received, contact in contacts.items():
        for _ in range(received):
            send_next(session, contact, lead, backend, settings)

    def next_steps() -> dict[int, int]:
        return {
            n: active_enrollment_of(session, c, lead).current_step_id for n, c in contacts.items()
        }

    before = next_steps()

    move_step(session, steps[2], "up", actor="test", confirmed=True)  # email 3 before email 2
    move_step(session, steps[5], "up", actor="test", confirmed=True)  # email 6 before email 5
    session.commit()

    assert next_steps() == before == {0: steps[0].id, 2: steps[2].id, 4: steps[4].id}
    for contact in contacts.values():
        _send_everything(session, contact, lead, backend, settings)
    sent = sends_per_email(fake_sendgrid)
    assert set(sent.values()) == {1}  # email 2, moved after the second contact, not again
    per_contact = Counter(address for address, _ in sent)
    # The third contact waited for email 5 when email 6 moved before it: not sent to it.
    assert per_contact == {contacts[0].email: 6, contacts[2].email: 6, contacts[4].email: 5}


# --- a new delay ---


def test_a_new_delay_keeps_the_waiting_contacts_date_and_applies_to_later_ones(
    session, make_contact, campaigns, backend, settings
):
    lead = campaigns["lead"]
    third = lead.steps[2]
    waiting = _waiting_at(session, make_contact, lead, [3])[3]
    date = waiting.next_send_at
    behind = make_contact("lead")
    data = StepInput(third.subject, third.body_html, third.body_text, str(third.delay_days + 5))
    with pytest.raises(ImpactNeedsConfirmation):
        update_step(session, third, data, SENDER, actor="test")
    session.rollback()
    update_step(session, lead.steps[2], data, SENDER, actor="test", confirmed=True)
    session.commit()

    assert _reload(session, waiting).next_send_at == date
    send_next(session, behind, lead, backend, settings)
    send_next(session, behind, lead, backend, settings)  # now waiting for email 3
    enrollment = active_enrollment_of(session, behind, lead)
    assert enrollment.current_step_id == third.id
    assert enrollment.next_send_at == send_time_for_step(
        lead, behind, third.delay_days, enrollment.last_sent_at
    )
    assert third.delay_days == int(data.delay_days)


# --- the impact note ---


def test_the_removal_impact_names_the_next_email_and_the_count_and_date(
    session, make_contact, campaigns
):
    lead = campaigns["lead"]
    waiting = _waiting_at(session, make_contact, lead, [1, 3, 3])
    impact = removal_impact(session, lead.steps[2])
    lines = {line.waiting_for.split(" “")[0]: line for line in impact.lines}
    assert lines["email 3"].count == 2
    assert lines["email 3"].next_at == waiting[3].next_send_at
    assert lines["email 3"].effect.startswith("will get email 3 “")
    assert "next instead, on the same date" in lines["email 3"].effect
    assert lines["email 1"].effect.startswith("keep it as their next email")
    assert "no longer get email 3 “" in lines["email 1"].effect  # ... "(removed)."
    assert lines["email 1"].effect.endswith("(removed).")
    assert impact.needs_confirmation


def test_the_remove_page_shows_the_impact_before_anything_is_removed(
    admin, session, make_contact, campaigns
):
    lead = campaigns["lead"]
    _waiting_at(session, make_contact, lead, [3, 3])
    third = lead.steps[2]
    page = admin.get(f"/campaigns/{lead.id}/steps/{third.id}/delete").get_data(as_text=True)
    assert "2 contacts</strong> waiting for email 3 “" in page
    assert "(next from " in page and "next instead, on the same date" in page
    assert 'name="confirmed" value="1"' in page
    assert len(lead.steps) == 6


def test_a_reorder_with_waiting_contacts_is_confirmed_on_a_page_of_its_own(
    admin, session, make_contact, campaigns
):
    prospect = campaigns["prospect"]
    _waiting_at(session, make_contact, prospect, [2])
    second = prospect.steps[1]
    url = f"/campaigns/{prospect.id}/steps/{second.id}/move"
    asked = admin.post(url, {"direction": "up"})
    assert asked.status_code == 409
    assert "keep it as their next email" in asked.get_data(as_text=True)
    session.expire_all()
    assert prospect.steps[1].id == second.id  # not moved yet
    admin.post(url, {"direction": "up", "confirmed": "1"})
    session.expire_all()
    assert prospect.steps[0].id == second.id


def test_editing_a_waiting_email_shows_who_gets_the_new_version_and_a_delay_change_asks(
    admin, session, make_contact, campaigns
):
    lead = campaigns["lead"]
    _waiting_at(session, make_contact, lead, [2])
    second = lead.steps[1]
    url = f"/campaigns/{lead.id}/steps/{second.id}/edit"
    page = admin.get(url).get_data(as_text=True)
    assert "1 contact(s) waiting for email 2 “" not in page  # nothing typed yet

    form = {
        "subject": second.subject,
        "body_html": second.body_html + "<p>PS</p>",
        "body_text": second.body_text,
        "delay_days": str(second.delay_days + 2),
    }
    asked = admin.post(url, form)
    text = asked.get_data(as_text=True)
    assert asked.status_code == 409 and "Save anyway" in text
    assert "keep their date; the new delay" in text
    assert f'name="confirmed_delay" value="{form["delay_days"]}"' in text
    session.expire_all()
    assert lead.steps[1].version == 1
    saved = admin.post(url, form | {"confirmed_delay": form["delay_days"]})
    assert saved.status_code == 302
    session.expire_all()
    assert (lead.steps[1].version, lead.steps[1].delay_days) == (2, second.delay_days)


def test_a_delay_confirmation_says_what_its_impact_says_in_days_and_a_day(
    admin, session, make_contact, campaigns
):
    lead = campaigns["lead"]
    second = lead.steps[1]
    second.delay_days = 0
    session.commit()
    _waiting_at(session, make_contact, lead, [2])
    form = {
        "subject": second.subject,
        "body_html": second.body_html,
        "body_text": second.body_text,
        "delay_days": "1",
    }
    asked = admin.post(f"/campaigns/{lead.id}/steps/{second.id}/edit", form)
    text = asked.get_data(as_text=True)
    assert asked.status_code == 409
    assert "moves contacts" not in text  # they keep their date: nobody moves
    assert (
        "Not saved yet: the new delay applies to contacts who reach this email from now on; "
        "contacts already waiting for it keep their date." in text
    )
    assert "keep their date; the new delay (1 day instead of 0) applies" in text


def test_an_insert_confirmation_says_it_changes_what_waiting_contacts_get(
    admin, session, make_contact, campaigns
):
    client = campaigns["client"]
    _waiting_at(session, make_contact, client, [1, 3])
    form = {**NEW_EMAIL.__dict__, "position": "2"}
    asked = admin.post(f"/campaigns/{client.id}/steps/new", form)
    text = asked.get_data(as_text=True)
    assert asked.status_code == 409
    assert "Not saved yet: it changes which emails contacts who are waiting get." in text
