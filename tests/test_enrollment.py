"""The enrolment rules of the drip core."""

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from crm_app.drip.audience.contacts import ContactInput, update_contact
from crm_app.drip.audience.ending import stop, stop_all
from crm_app.drip.audience.enrollment import (
    EnrollmentError,
    change_contact_type,
    enroll,
    enroll_by_type,
)
from crm_app.models import Activity, Enrollment, Suppression


def kinds(session, contact) -> list[str]:
    return list(
        session.scalars(
            sa.select(Activity.kind).where(Activity.contact_id == contact.id).order_by(Activity.id)
        )
    )


def active(contact):
    return sorted(e.campaign.name for e in contact.enrollments if e.status == "active")


def test_create_enrols_in_the_campaign_mapped_to_the_type(session, make_contact):
    contact = make_contact("prospect")
    assert active(contact) == ["Prospect"]
    enrollment = contact.enrollments[0]
    assert enrollment.current_step == 1
    assert enrollment.next_send_at is not None
    assert enrollment.source == "auto"
    assert kinds(session, contact) == ["created", "enrolled"]


def test_first_email_waits_for_the_send_window(session, campaigns, make_contact):
    saturday = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
    contact = make_contact("networking")
    stop_all(session, contact, reason="test", actor="test")
    enrollment = enroll(session, contact, campaigns["lead"], actor="test", now=saturday)
    assert enrollment.next_send_at == datetime(2026, 11, 30, 9, 0, tzinfo=UTC)


def test_type_change_stops_lead_and_enrols_in_client(session, campaigns, make_contact):
    contact = make_contact("lead")
    change_contact_type(session, contact, "client", actor="user:a@example.com")
    session.commit()
    lead = next(e for e in contact.enrollments if e.campaign.contact_type == "lead")
    assert lead.status == "stopped"
    assert lead.end_reason == "type changed to client"
    assert active(contact) == ["Client"]
    assert "type_changed" in kinds(session, contact)


def test_type_change_through_contact_edit(session, campaigns, make_contact):
    contact = make_contact("lead", email="switch@example.com")
    data = ContactInput(email="switch@example.com", contact_type="client", timezone="UTC")
    update_contact(session, contact, data, actor="test")
    session.commit()
    assert contact.contact_type == "client"
    assert active(contact) == ["Client"]


def test_type_change_keeps_manual_enrollments_in_other_campaigns(session, campaigns, make_contact):
    contact = make_contact("lead")
    enroll(session, contact, campaigns["networking"], actor="test")
    change_contact_type(session, contact, "prospect", actor="test")
    session.commit()
    assert active(contact) == ["Networking", "Prospect"]


def test_never_twice_in_the_same_campaign(session, campaigns, make_contact):
    contact = make_contact("lead")
    with pytest.raises(EnrollmentError, match="already enrolled in Lead"):
        enroll(session, contact, campaigns["lead"], actor="test")
    session.commit()
    count = session.scalar(
        sa.select(sa.func.count()).where(
            Enrollment.contact_id == contact.id, Enrollment.status == "active"
        )
    )
    assert count == 1


def test_the_database_refuses_a_second_active_enrollment(session, campaigns, make_contact):
    contact = make_contact("lead")
    session.add(
        Enrollment(contact_id=contact.id, campaign_id=campaigns["lead"].id, status="active")
    )
    with pytest.raises(IntegrityError):
        session.commit()
    session.rollback()


def test_re_enrol_after_stop_is_allowed(session, campaigns, make_contact):
    contact = make_contact("lead")
    stop(session, contact.enrollments[0], reason="pause for now", actor="test")
    enroll(session, contact, campaigns["lead"], actor="test")
    session.commit()
    assert [e.status for e in contact.enrollments] == ["stopped", "active"]


@pytest.mark.parametrize("status", ["paused", "archived"])
def test_paused_or_archived_campaign_refuses_enrollment(session, campaigns, make_contact, status):
    contact = make_contact("networking")
    campaigns["lead"].status = status
    session.commit()
    with pytest.raises(EnrollmentError, match=f"Lead is {status}"):
        enroll(session, contact, campaigns["lead"], actor="test")


def test_auto_enrol_into_paused_campaign_is_recorded_not_raised(session, campaigns, make_contact):
    campaigns["client"].status = "paused"
    session.commit()
    contact = make_contact("client")
    assert active(contact) == []
    assert kinds(session, contact) == ["created", "not_enrolled"]


def test_stop_one_records_reason_and_activity(session, make_contact):
    contact = make_contact("lead")
    enrollment = contact.enrollments[0]
    stop(session, enrollment, reason="asked to pause", actor="user:a@example.com")
    session.commit()
    assert enrollment.status == "stopped"
    assert enrollment.next_send_at is None
    assert enrollment.end_reason == "asked to pause"
    row = session.scalars(sa.select(Activity).where(Activity.kind == "stopped")).one()
    assert row.actor == "user:a@example.com"
    with pytest.raises(EnrollmentError, match="already ended"):
        stop(session, enrollment, reason="again", actor="test")


def test_stop_all(session, campaigns, make_contact):
    contact = make_contact("lead")
    enroll(session, contact, campaigns["networking"], actor="test")
    assert stop_all(session, contact, reason="stop all", actor="test") == 2
    session.commit()
    assert active(contact) == []


def test_unsubscribed_contact_cannot_be_enrolled(session, campaigns, make_contact):
    contact = make_contact("lead")
    stop_all(session, contact, reason="test", actor="test")
    contact.email_status = "unsubscribed"
    session.commit()
    with pytest.raises(EnrollmentError, match="unsubscribed"):
        enroll_by_type(session, contact, actor="test")


def test_suppressed_address_cannot_be_enrolled(session, campaigns, make_contact):
    session.add(Suppression(email="blocked@example.com", reason="bounce", source="test"))
    session.commit()
    contact = make_contact("lead", email="Blocked@Example.com")
    assert active(contact) == []
    with pytest.raises(EnrollmentError, match="suppression list"):
        enroll(session, contact, campaigns["networking"], actor="test")
