"""The contact panel's core (crm_app/drip/audience/panel.py): what it says, what it refuses."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from crm_app.drip.audience.ending import stop_all
from crm_app.drip.audience.enrollment import EnrollmentError
from crm_app.drip.audience.panel import (
    campaign_panel,
    enroll_chosen,
    stop_all_or_refuse,
)
from crm_app.drip.audience.suppression import lift_suppression, suppress
from crm_app.models import Campaign, CampaignStep, Enrollment
from tests.panel_helpers import current_email_in_state


def test_a_mailable_contact_has_no_block_reason(session, make_contact):
    assert campaign_panel(session, make_contact("lead")).block_reason is None


def test_the_block_reason_names_the_contacts_email_status(session, make_contact):
    contact = make_contact("lead")
    contact.email_status = "bounced"
    assert campaign_panel(session, contact).block_reason == "the contact's address bounced"


def test_the_block_reason_includes_a_suppressed_address_whatever_the_contact_row_says(
    session, make_contact
):
    # The address is on the list but the contact row says "ok" (suppressed under another
    # contact's row, or the status set back by hand): the panel used to say nothing,
    # while enrol refused and the tick skipped it.
    contact = make_contact("lead", email="Listed@Example.com")
    suppress(session, "listed@example.com", reason="bounce", source="test", actor="test")
    contact.email_status = "ok"
    reason = campaign_panel(session, contact).block_reason
    assert reason == "the address is on the suppression list (bounced)"


def test_a_lifted_suppression_clears_the_block_reason(session, make_contact):
    contact = make_contact("lead", email="back@example.com")
    suppress(session, "back@example.com", reason="unsubscribe", source="test", actor="test")
    lift_suppression(session, "back@example.com", actor="test", note="resubscribed")
    assert campaign_panel(session, contact).block_reason is None


@pytest.mark.parametrize(
    ("status", "problem"),
    [("failed", "failed"), ("in_doubt", "in_doubt"), ("queued", None), ("sending", None)],
)
def test_delivery_problem_is_set_only_for_emails_an_admin_must_act_on(
    session, make_contact, status, problem
):
    contact = make_contact("lead")
    enrollment = contact.enrollments[0]
    current_email_in_state(session, contact, status)
    panel = campaign_panel(session, contact)
    assert panel.in_flight == {enrollment.id: status}
    assert panel.delivery_problem(enrollment) == problem


def test_stop_all_or_refuse_stops_every_active_enrollment(session, make_contact, campaigns):
    contact = make_contact("lead")
    enroll_chosen(session, contact, campaigns["client"].id, actor="test")
    assert stop_all_or_refuse(session, contact, reason="test", actor="test") == 2
    assert campaign_panel(session, contact).active == []


def test_stop_all_with_nothing_active_is_refused(session, make_contact):
    contact = make_contact("lead")
    stop_all(session, contact, reason="test", actor="test")
    with pytest.raises(EnrollmentError, match="no active enrolment to stop"):
        stop_all_or_refuse(session, contact, reason="again", actor="test")


@pytest.mark.parametrize("campaign_id", [None, 99999])
def test_enrolling_without_a_real_campaign_asks_to_choose_one(session, make_contact, campaign_id):
    contact = make_contact("lead")
    with pytest.raises(EnrollmentError, match="Choose a campaign"):
        enroll_chosen(session, contact, campaign_id, actor="test")


def test_a_manual_enrollment_is_recorded_as_manual(session, make_contact, campaigns):
    contact = make_contact("lead")
    enrollment = enroll_chosen(session, contact, campaigns["networking"].id, actor="test")
    assert (enrollment.campaign.name, enrollment.source) == ("Networking", "manual")


def test_the_panel_is_one_query_its_steps_loaded_with_it_the_itinerary_none(
    app, session, make_contact, campaigns
):
    from sqlalchemy import event

    from crm_app.config import settings_of
    from crm_app.drip.audience.itinerary import contact_itinerary
    from crm_app.drip.delivery.frequency_cap import FrequencyCap

    contact = make_contact("lead")
    enroll_chosen(session, contact, campaigns["client"].id, actor="test")
    stop_all(session, contact, reason="test", actor="test")
    enroll_chosen(session, contact, campaigns["client"].id, actor="test")  # resumes
    session.commit()
    session.expire_all()
    assert contact.email  # the contact read again before counting, as a page reads it
    statements: list[str] = []
    listener = lambda *args: statements.append(args[2])  # noqa: E731
    event.listen(session.get_bind(), "before_cursor_execute", listener)
    try:
        panel = campaign_panel(session, contact)
        read = len(statements)
        steps = {c.name: [s.position for s in c.steps] for c in panel.enrolled_campaigns}
        assert len(statements) == read  # the steps were loaded with the panel
        cap = FrequencyCap.from_settings(settings_of(app))
        contact_itinerary(session, contact, cap=cap, panel=panel)
        itinerary_reads = [s for s in statements[read:] if "campaign" in s]
    finally:
        event.remove(session.get_bind(), "before_cursor_execute", listener)
    # One statement: the campaigns, the enrolments, their steps and the suppression list.
    assert read == 1
    # Two enrolments in Client (one row per enrolment and step), each listed once.
    assert [e.campaign.name for e in panel.active] == ["Client"]
    assert [e.campaign.name for e in panel.finished] == ["Client", "Lead"]  # newest first
    assert panel.step_counts == {c.id: len(c.steps) for c in campaigns.values()}
    assert steps == {
        name: sorted(step.position for step in campaigns[kind].steps)
        for kind, name in (("lead", "Lead"), ("client", "Client"))
    }
    assert itinerary_reads == []


def test_the_panel_reads_the_suppression_list_with_no_campaign_at_all(session, make_contact):
    """The suppression list's reason rides on the panel's rows; with no campaign there
    is no row, and the list is read on its own."""
    contact = make_contact("lead")
    suppress(session, contact.email, reason="manual", source="test", actor="test")
    session.execute(sa.delete(Enrollment))
    session.execute(sa.delete(CampaignStep))
    session.execute(sa.delete(Campaign))
    session.commit()
    panel = campaign_panel(session, contact)
    assert panel.available == [] and panel.active == []
    assert panel.not_mailed == "suppressed by staff"
    assert panel.block_reason == "the address is on the suppression list (suppressed by staff)"


def test_an_erased_address_outranks_its_plain_entry_on_the_panel(session, make_contact):
    """A hashed (erased) entry for the address wins over its plain one, as
    suppression_reasons has it."""
    from crm_app.drip.audience.address_hash import address_hash, app_erasure_key, key_id
    from crm_app.models import HashedSuppression

    contact = make_contact("lead")
    suppress(session, contact.email, reason="bounce", source="test", actor="test")
    key = app_erasure_key()
    digest = address_hash(contact.email.lower(), key)
    session.add(HashedSuppression(email_hash=digest, key_id=key_id(key), reason="erased"))
    session.commit()
    panel = campaign_panel(session, contact)
    assert panel.block_reason == "the address was erased at the person's request (GDPR)"
