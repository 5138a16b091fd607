"""Wherever an email is named (campaign pages, analytics and its CSV, flash messages,
the timeline), people read its subject for the sample contact, never template source."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import sqlalchemy as sa
from test_analytics import PERIOD, RANGE_QS
from test_analytics_data import build_analytics_fixture

from crm_app.drip.campaigns.naming import UNRENDERABLE, email_name, subject_title
from crm_app.drip.campaigns.steps import move_step
from crm_app.drip.delivery.pipeline import deliver_messages
from crm_app.drip.delivery.tick import run_tick
from crm_app.drip.reporting.analytics import campaign_report
from crm_app.models import Activity, Message, utcnow
from tests.authoring_helpers import active_enrollment_of
from tests.delivery_helpers import open_all_week

LEAD_FIRST = "Thanks for getting in touch with Drip CRM"  # {{ sender.company }} for the sample


def test_an_email_is_named_by_its_subject_for_the_sample_contact():
    assert subject_title("Hi {{ contact.first_name }} at {{ company.name }}") == (
        "Hi Alex at Northwind Traders"
    )
    assert email_name(2, "Lead", "Hello {{ contact.first_name }}") == "Email 2 of Lead “Hello Alex”"
    assert email_name(None, "Lead", None) == "A removed email of Lead"
    assert subject_title("{{ contact.nope }}") == UNRENDERABLE


def test_analytics_rows_and_csv_name_emails_readably(staff, session, campaigns):
    data = build_analytics_fixture(session, campaigns)
    lead = data["A"]
    page = staff.get(f"/analytics/campaigns/{lead.id}?{RANGE_QS}").get_data(as_text=True)
    assert f'<td class="subject-cell">{LEAD_FIRST}</td>' in page and "{{" not in page
    text = staff.get(f"/analytics/campaigns/{lead.id}.csv?{RANGE_QS}").get_data(as_text=True)
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[1][:2] == ["1", LEAD_FIRST] and "{{" not in text


def test_analytics_follow_an_email_when_it_moves(session, campaigns):
    data = build_analytics_fixture(session, campaigns)
    lead = data["A"]
    first, second = lead.steps[0], lead.steps[1]
    before = {row.subject: row.counts.sent for row in campaign_report(session, lead, PERIOD).steps}
    move_step(session, second, "up", actor="test", confirmed=True)
    session.commit()
    report = campaign_report(session, lead, PERIOD)
    after = {row.subject: row.counts.sent for row in report.steps}
    assert after == before  # each email keeps its own figures...
    assert report.steps[0].subject == subject_title(second.subject)  # ...at its new place
    assert report.steps[1].subject == subject_title(first.subject)


def test_flash_messages_name_emails_readably(admin, campaigns):
    prospect = campaigns["prospect"]
    step = prospect.steps[1]
    response = admin.post(
        f"/campaigns/{prospect.id}/steps/{step.id}/move",
        {"direction": "up"},
        follow_redirects=True,
    )
    page = response.get_data(as_text=True)
    assert "Moved up: Email 1 of Prospect “" in page and "{{" not in page


def test_a_skipped_email_on_the_timeline_is_named_readably(
    session, make_contact, campaigns, backend, settings
):
    lead = campaigns["lead"]
    contact = make_contact("lead")
    enrollment = active_enrollment_of(session, contact, lead)
    open_all_week(lead)
    enrollment.next_send_at = utcnow() - timedelta(seconds=1)
    session.commit()
    ids = run_tick(session, lambda ids: None, now=utcnow()).enqueued
    lead.status = "paused"  # paused after the tick: the worker skips it
    session.commit()
    deliver_messages(session, ids, backend, settings)
    detail = session.scalar(
        sa.select(Activity.detail).where(
            Activity.contact_id == contact.id, Activity.kind == "email_skipped"
        )
    )
    assert detail == f"Email 1 of Lead “{LEAD_FIRST}” skipped: the campaign is paused"
    assert session.scalar(sa.select(Message.status)) == "skipped"
