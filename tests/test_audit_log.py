"""The audit log: the core paths people use write who did what and when; the admins'
page lists it newest first, filtered by user, kind and date, a page at a time."""

from __future__ import annotations

import ast
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from crm_app.drip.team.audit import AUDIT_KINDS, ENTRIES_PER_PAGE, record_audit
from crm_app.extensions import db
from crm_app.models import AuditEntry, Campaign, Contact, Enrollment, User
from tests.conftest import ROOT


def _entries() -> list[tuple[str, str, str]]:
    """(actor, action, summary), oldest first."""
    db.session.expire_all()
    rows = db.session.execute(
        sa.select(AuditEntry.actor, AuditEntry.action, AuditEntry.summary).order_by(AuditEntry.id)
    )
    return [tuple(row) for row in rows]


def _actions() -> list[str]:
    return [action for _actor, action, _summary in _entries()]


def test_contact_created_edited_deleted_and_its_enrolments_are_logged(admin, campaigns):
    admin.post(
        "/contacts/new",
        {
            "first_name": "Lin",
            "last_name": "Lead",
            "email": "lin@example.com",
            "contact_type": "lead",
            "timezone": "UTC",
        },
    )
    contact = db.session.scalar(sa.select(Contact))
    admin.post(
        f"/contacts/{contact.id}/edit",
        {
            "first_name": "Lin",
            "last_name": "Lead",
            "email": "lin@example.com",
            "contact_type": "lead",
            "timezone": "UTC",
            "company": "Lead Works",
        },
    )
    enrolment_id = db.session.scalar(sa.select(Enrollment.id))
    admin.post(f"/contacts/{contact.id}/enrollments/{enrolment_id}/stop")
    admin.post(f"/contacts/{contact.id}/delete")

    assert _actions() == [
        "contact.created",
        "enrollment.created",
        "contact.edited",
        "enrollment.stopped",
        "contact.deleted",
    ]
    actors = {actor for actor, _action, _summary in _entries()}
    assert actors == {"admin@example.com"}
    summaries = [summary for _actor, _action, summary in _entries()]
    assert summaries[0] == "Created contact Lin Lead (lin@example.com)"
    assert summaries[1] == "Enrolled Lin Lead in Lead (auto)"
    assert summaries[2] == "Edited contact Lin Lead: company"
    assert summaries[3] == "Stopped Lead for Lin Lead: stopped by admin@example.com"
    assert summaries[4] == "Deleted contact Lin Lead (lin@example.com)"
    user_ids = set(db.session.scalars(sa.select(AuditEntry.user_id)))
    assert user_ids == {db.session.scalar(sa.select(User.id))}


def test_campaign_and_email_edits_are_logged_with_versions(admin, campaigns):
    lead = campaigns["lead"]
    step = lead.steps[1]
    admin.post(f"/campaigns/{lead.id}/status", {"status": "paused"})
    admin.post(
        f"/campaigns/{lead.id}/settings",
        {"weekdays": ["0", "1"], "send_start": "10:00", "send_end": "12:00"},
    )
    admin.post(
        f"/campaigns/{lead.id}/steps/{step.id}/edit",
        {
            "subject": "A new subject",
            "body_html": '<p>Hi</p><p><a href="{{ unsubscribe_url }}">Unsubscribe</a></p>',
            "body_text": "Hi\nUnsubscribe: {{ unsubscribe_url }}",
            "delay_days": "2",
        },
    )
    admin.post(f"/campaigns/{lead.id}/steps/{step.id}/move", {"direction": "up"})
    summaries = [summary for _actor, _action, summary in _entries()]
    assert summaries == [
        "Lead paused",
        "Lead: send window set to Mon, Tue 10:00-12:00",
        "Lead: email 2 (A new subject) saved as version 2",
        "Lead: email 1 (A new subject) moved up from position 2",
    ]


def test_campaign_create_edit_clone_and_delete_are_logged(admin, campaigns):
    details = {"name": "Webinar", "description": "", "contact_type": "", "reentry": "never"}
    admin.post("/campaigns/new", details)
    webinar = db.session.scalar(sa.select(Campaign).where(Campaign.name == "Webinar"))
    admin.post(f"/campaigns/{webinar.id}/edit", details)  # nothing changed: no entry
    admin.post(
        f"/campaigns/{webinar.id}/edit", details | {"name": "Webinar 2", "reentry": "restart"}
    )
    admin.post(f"/campaigns/{campaigns['lead'].id}/clone")
    admin.post(f"/campaigns/{webinar.id}/delete")

    entries = _entries()
    lead_emails = len(campaigns["lead"].steps)
    assert {actor for actor, _action, _summary in entries} == {"admin@example.com"}
    assert [(action, summary) for _actor, action, summary in entries] == [
        ("campaign.created", "Created campaign Webinar (manual enrolment only)"),
        ("campaign.edited", "Edited campaign Webinar: name, re-entry rule; now called Webinar 2"),
        ("campaign.cloned", f"Cloned campaign Lead as Copy of Lead ({lead_emails} emails)"),
        ("campaign.deleted", "Deleted campaign Webinar 2 (0 emails)"),
    ]
    kinds = db.session.scalars(sa.select(AuditEntry.target_type).distinct()).all()
    assert kinds == ["campaign"]


def _recorded_kinds() -> set[str]:
    """Every target_type a record_audit call in the app passes (a literal, by design)."""
    kinds = set()
    for path in (ROOT / "crm_app").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "record_audit":
                kind = node.args[3] if len(node.args) > 3 else None
                assert isinstance(kind, ast.Constant), f"{path}:{node.lineno}: not a literal kind"
                kinds.add(kind.value)
    return kinds


def test_every_kind_recorded_can_be_chosen_in_the_filter(admin):
    recorded = _recorded_kinds()
    assert {"campaign", "campaign_step", "content_block"} <= recorded  # the scan finds them
    assert recorded <= set(AUDIT_KINDS)
    page = admin.get("/audit").get_data(as_text=True)
    assert '<option value="campaign_step">' in page and '<option value="content_block">' in page


def test_manual_suppressions_and_settings_are_logged(admin):
    admin.post("/suppressions/", {"email": "gone@example.com", "note": "asked by phone"})
    admin.post("/suppressions/remove", {"email": "gone@example.com", "note": "asked again"})
    admin.post("/settings", {"sender_name": "Sam from Acme"})
    assert _actions() == ["suppression.added", "suppression.removed", "settings.sender"]
    assert _entries()[0][2] == "Suppressed gone@example.com: asked by phone"


def test_user_management_is_logged(admin, staff_user):
    admin.post("/users/", {"name": "Dana", "email": "dana@example.com", "role": "staff"})
    admin.post(
        f"/users/{staff_user.id}",
        {"email": "staff@example.com", "role": "admin", "name": "Staff", "timezone": "UTC"},
    )
    admin.post(f"/users/{staff_user.id}/active", {"active": "0"})
    admin.post(f"/users/{staff_user.id}/active", {"active": "1"})
    assert _actions() == [
        "user.created",
        "user.password_link",
        "user.edited",
        "user.disabled",
        "user.enabled",
    ]
    assert _entries()[2][2] == "Edited staff@example.com: role (now Admin)"


def test_the_systems_own_work_is_not_in_the_log(session, make_contact):
    make_contact("lead")  # the fixture's actor is "test"
    record_audit(session, "system:worker", "enrollment.stopped", "enrollment", 1, "x")
    record_audit(session, "sendgrid:webhook", "suppression.added", "suppression", 1, "x")
    session.commit()
    assert _entries() == []


def _seed(session, users: list[User], count: int) -> None:
    start = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
    for n in range(count):
        user = users[n % 2]
        kind = "contact" if n % 3 else "campaign"
        entry = record_audit(session, user, f"{kind}.x", kind, n, f"entry {n}")
        entry.created_at = start + timedelta(days=n % 10, minutes=n)
    session.commit()


def test_the_page_filters_by_user_kind_and_date_and_pages(admin, admin_user, staff_user):
    _seed(db.session, [admin_user, staff_user], 120)
    first = admin.get("/audit").get_data(as_text=True)
    assert "120 entries" in first and "Page 1 of 3" in first
    assert first.count("<tr>") == ENTRIES_PER_PAGE + 1  # and the header row

    by_staff = admin.get(f"/audit?user={staff_user.id}").get_data(as_text=True)
    assert "60 entries" in by_staff

    by_kind = admin.get("/audit?kind=campaign").get_data(as_text=True)
    assert "40 entries" in by_kind

    one_day = admin.get("/audit?from=2026-11-03&to=2026-11-03").get_data(as_text=True)
    assert "12 entries" in one_day

    page_two = admin.get(f"/audit?user={staff_user.id}&page=2").get_data(as_text=True)
    assert "Page 2 of 2" in page_two
    assert f"user={staff_user.id}" in page_two  # the pages keep the filter


def test_dates_are_whole_days_on_the_viewers_clock(admin, admin_user):
    admin_user.timezone = "Asia/Tokyo"
    entry = record_audit(db.session, admin_user, "contact.x", "contact", 1, "late evening")
    entry.created_at = datetime(2026, 11, 3, 16, 0, tzinfo=UTC)  # 4 Nov 01:00 in Tokyo
    db.session.commit()
    assert "1 entry" in admin.get("/audit?from=2026-11-04&to=2026-11-04").get_data(as_text=True)
    assert "0 entries" in admin.get("/audit?from=2026-11-03&to=2026-11-03").get_data(as_text=True)


def test_a_bad_date_is_named_next_to_its_field(admin):
    response = admin.get("/audit?from=yesterday")
    assert response.status_code == 422
    assert 'id="error-from"' in response.get_data(as_text=True)


@pytest.mark.parametrize("query", ["to=9999-12-31", "from=0001-01-01"])
def test_a_date_off_the_calendar_is_named_next_to_its_field(admin, admin_user, query):
    """The last day's end and, east of UTC, the first day's start fell off Python's
    calendar: a 500."""
    admin_user.timezone = "Asia/Tokyo"
    db.session.commit()
    response = admin.get(f"/audit?{query}")
    assert response.status_code == 422
    field = query.split("=")[0]
    assert f'id="error-{field}"' in response.get_data(as_text=True)
    assert "Choose dates between 1970-01-01 and 9999-12-30" in response.get_data(as_text=True)


def test_the_filter_swaps_only_the_list_with_htmx(admin):
    response = admin.get("/audit?kind=contact", htmx=True, headers={"HX-Target": "audit-list"})
    page = response.get_data(as_text=True)
    assert page.startswith('<div id="audit-list">') and "<html" not in page


def test_the_audit_log_is_for_admins(staff):
    assert staff.get("/audit").status_code == 403
