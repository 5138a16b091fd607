"""Bulk enrolment (a CSV import's chunk) agrees with the one-contact enrolment core: both
run on twin contacts in the same situation, and their enrolments, timelines and goals
must come out the same."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from crm_app.drip.audience.bulk_enrollment import (
    ContactFacts,
    enroll_by_type_many,
    switch_types_many,
)
from crm_app.drip.audience.enrollment import change_contact_type, enroll, enroll_by_type_or_note
from crm_app.models import Activity, Contact, ContactGoal, Enrollment, Suppression

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)  # a Saturday: the window moves the first send
ACTOR = "user:importer@example.com"


def _twins(session, tag: str, **fields) -> tuple[Contact, Contact]:
    """Two contacts alike but for their address, neither enrolled yet."""
    twins = []
    for side in ("core", "bulk"):
        values = {"first_name": "Twin", "last_name": "Case", "contact_type": "lead", **fields}
        contact = Contact(email=f"{tag}-{side}@example.com", custom_fields={}, **values)
        session.add(contact)
        twins.append(contact)
    session.flush()
    return twins[0], twins[1]


def facts(contact: Contact, contact_type: str | None = None) -> ContactFacts:
    return ContactFacts(
        id=contact.id,
        email=contact.email,
        first_name=contact.first_name,
        last_name=contact.last_name,
        contact_type=contact_type or contact.contact_type,
        timezone=contact.timezone,
        email_status=contact.email_status,
    )


def outcome(session, contact: Contact) -> dict:
    """Everything enrolment wrote for a contact, with its address replaced by a marker."""
    session.flush()
    session.expire_all()

    def anonymous(text: str) -> str:
        return text.replace(contact.email, "<email>")

    enrollments = session.execute(
        sa.select(
            Enrollment.campaign_id,
            Enrollment.status,
            Enrollment.current_step_id,
            Enrollment.entry,
            Enrollment.next_send_at,
            Enrollment.source,
            Enrollment.enrolled_by,
            Enrollment.end_reason,
            Enrollment.ended_at,
            Enrollment.converted_at,
        )
        .where(Enrollment.contact_id == contact.id)
        .order_by(Enrollment.id)
    ).all()
    activities = [
        (a.kind, anonymous(a.detail), a.actor, a.campaign_id, a.enrollment_id is not None)
        for a in session.scalars(
            sa.select(Activity).where(Activity.contact_id == contact.id).order_by(Activity.id)
        )
    ]
    goals = session.execute(
        sa.select(ContactGoal.name, ContactGoal.occurred_at, ContactGoal.actor).where(
            ContactGoal.contact_id == contact.id
        )
    ).all()
    return {"enrollments": enrollments, "activities": activities, "goals": goals}


def _pause(campaigns):
    campaigns["lead"].status = "paused"


def _archive(campaigns):
    campaigns["lead"].status = "archived"


def _remove_steps(campaigns):
    campaigns["lead"].steps.clear()


def _unmap(campaigns):
    campaigns["lead"].contact_type = None


SITUATIONS = {
    "enrolled": ({}, None),
    "enrolled_in_the_contacts_time_zone": ({"timezone": "Asia/Tokyo"}, None),
    "campaign_paused": ({}, _pause),
    "campaign_archived": ({}, _archive),
    "campaign_without_steps": ({}, _remove_steps),
    "no_campaign_for_the_type": ({}, _unmap),
    "contact_bounced": ({"email_status": "bounced"}, None),
    "contact_unsubscribed_without_a_name": (
        {"email_status": "unsubscribed", "first_name": "", "last_name": ""},
        None,
    ),
}


@pytest.mark.parametrize("situation", list(SITUATIONS))
def test_bulk_enrolment_does_what_the_enrolment_core_does(session, campaigns, situation):
    fields, arrange = SITUATIONS[situation]
    if arrange:
        arrange(campaigns)
    core, bulk = _twins(session, situation, **fields)

    enroll_by_type_or_note(session, core, actor=ACTOR, source="import", now=NOW)
    result = enroll_by_type_many(session, [facts(bulk)], actor=ACTOR, source="import", now=NOW)

    assert outcome(session, bulk) == outcome(session, core)
    assert bool(result.enrolled) == bool(outcome(session, core)["enrollments"])


def test_a_suppressed_address_is_refused_by_both(session, campaigns):
    core, bulk = _twins(session, "suppressed")
    session.add_all(
        [Suppression(email=c.email, reason="bounce", source="test") for c in (core, bulk)]
    )
    session.flush()

    enroll_by_type_or_note(session, core, actor=ACTOR, source="import", now=NOW)
    result = enroll_by_type_many(session, [facts(bulk)], actor=ACTOR, source="import", now=NOW)

    assert outcome(session, bulk) == outcome(session, core)
    assert "suppression list (bounced)" in result.refused[bulk.id]


def test_an_active_enrolment_is_refused_by_both_and_a_contact_listed_twice_enrols_once(
    session, campaigns
):
    core, bulk = _twins(session, "active")
    for contact in (core, bulk):
        enroll(session, contact, campaigns["lead"], actor="earlier", source="manual", now=NOW)

    enroll_by_type_or_note(session, core, actor=ACTOR, source="import", now=NOW)
    enroll_by_type_many(session, [facts(bulk)], actor=ACTOR, source="import", now=NOW)
    assert outcome(session, bulk) == outcome(session, core)

    twice_core, twice_bulk = _twins(session, "twice")
    for _ in range(2):
        enroll_by_type_or_note(session, twice_core, actor=ACTOR, source="import", now=NOW)
    enroll_by_type_many(session, [facts(twice_bulk)] * 2, actor=ACTOR, source="import", now=NOW)
    assert outcome(session, twice_bulk) == outcome(session, twice_core)
    assert len(outcome(session, twice_bulk)["enrollments"]) == 1


def _enrol_in_lead(session, campaigns, contact):
    enroll(session, contact, campaigns["lead"], actor="earlier", source="auto", now=NOW)


def _enrol_in_lead_and_networking(session, campaigns, contact):
    _enrol_in_lead(session, campaigns, contact)
    enroll(session, contact, campaigns["networking"], actor="earlier", source="manual", now=NOW)


SWITCHES = {
    "lead_to_client": ("client", _enrol_in_lead, None),
    "lead_to_a_paused_client_campaign": ("client", _enrol_in_lead, "paused"),
    "lead_to_prospect_keeps_a_manual_networking_enrolment": (
        "prospect",
        _enrol_in_lead_and_networking,
        None,
    ),
    "lead_to_client_without_an_active_lead_enrolment": ("client", lambda *a: None, None),
}


@pytest.mark.parametrize("switch", list(SWITCHES))
def test_bulk_type_switch_does_what_change_contact_type_does(session, campaigns, switch):
    new_type, arrange, new_campaign_status = SWITCHES[switch]
    if new_campaign_status:
        campaigns[new_type].status = new_campaign_status
    core, bulk = _twins(session, switch)
    for contact in (core, bulk):
        arrange(session, campaigns, contact)

    change_contact_type(session, core, new_type, actor=ACTOR, now=NOW)
    bulk.contact_type = new_type  # the import's UPDATE of the contact row
    session.flush()
    switch_types_many(session, [(facts(bulk), "lead")], actor=ACTOR, now=NOW)

    assert outcome(session, bulk) == outcome(session, core)


def _received_lead_email_1_then_stopped(session, campaigns, contact) -> None:
    """An earlier Lead enrolment whose first email went out, then stopped."""
    from crm_app.drip.audience.ending import stop
    from crm_app.models import Message

    enrollment = enroll(session, contact, campaigns["lead"], actor="earlier", now=NOW)
    first = campaigns["lead"].steps[0]
    session.add(
        Message(
            enrollment_id=enrollment.id,
            step_id=first.id,
            contact_id=contact.id,
            campaign_id=campaigns["lead"].id,
            status="sent",
            attempts=1,
            to_email=contact.email,
            subject="",
            html="",
            text="",
            headers={},
            error="",
            created_at=NOW,
            enqueued_at=NOW,
            sent_at=NOW,
        )
    )
    stop(session, enrollment, reason="stopped by hand", actor="earlier", now=NOW)
    session.flush()


@pytest.mark.parametrize("rule", ["resume", "never", "restart"])
def test_bulk_enrolment_obeys_the_campaigns_re_entry_rule_as_the_core_does(
    session, campaigns, rule
):
    campaigns["lead"].reentry = rule
    core, bulk = _twins(session, f"reentry-{rule}")
    for contact in (core, bulk):
        _received_lead_email_1_then_stopped(session, campaigns, contact)

    enroll_by_type_or_note(session, core, actor=ACTOR, source="import", now=NOW)
    enroll_by_type_many(session, [facts(bulk)], actor=ACTOR, source="import", now=NOW)

    assert outcome(session, bulk) == outcome(session, core)
    enrollments = outcome(session, bulk)["enrollments"]
    if rule == "resume":  # email 1 is never sent again: the new enrolment starts at email 2
        assert enrollments[-1].current_step_id == campaigns["lead"].steps[1].id
    else:  # never, and restart without a confirmation: not enrolled again
        assert len(enrollments) == 1
