"""The suppression list page: admins add, search and lift addresses; staff may not."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa

from crm_app.drip.audience.suppression import suppress
from crm_app.models import Activity, Enrollment, Suppression, utcnow


def listed(session) -> set[str]:
    session.expire_all()
    return set(session.scalars(sa.select(Suppression.email)))


def test_admin_adds_an_address_which_stops_the_contact(admin, session, make_contact):
    contact = make_contact("lead", email="Pat@Example.com")
    response = admin.post(
        "/suppressions/", {"email": " pat@example.COM ", "note": "Asked by phone"}
    )
    assert response.status_code == 302
    assert listed(session) == {"pat@example.com"}
    entry = session.scalar(sa.select(Suppression))
    assert (entry.reason, entry.source) == ("manual", "user:admin@example.com")
    session.refresh(contact)
    assert contact.email_status == "unsubscribed"
    statuses = set(
        session.scalars(sa.select(Enrollment.status).where(Enrollment.contact_id == contact.id))
    )
    assert statuses == {"stopped"}
    details = session.scalars(
        sa.select(Activity.detail).where(Activity.contact_id == contact.id)
    ).all()
    assert any("Asked by phone" in d for d in details)
    page = admin.get("/suppressions/").get_data(as_text=True)
    assert "pat@example.com" in page and "suppressed by staff" in page


def test_adding_an_address_twice_keeps_one_entry(admin, session):
    admin.post("/suppressions/", {"email": "twice@example.com"})
    response = admin.post("/suppressions/", {"email": "TWICE@example.com"}, follow_redirects=True)
    assert "already on the list" in response.get_data(as_text=True)
    assert listed(session) == {"twice@example.com"}


def test_invalid_address_is_refused_next_to_the_field(admin, session):
    for bad in ("", "not-an-email", "a@b@c.com"):
        response = admin.post("/suppressions/", {"email": bad, "note": "keep me"})
        assert response.status_code == 422
        html = response.get_data(as_text=True)
        assert 'id="error-email"' in html and "Not a valid email address" in html
        assert 'value="keep me"' in html  # nothing typed is lost
    assert listed(session) == set()


def test_admin_removes_an_address_with_a_reason_on_the_timeline(admin, session, make_contact):
    contact = make_contact("lead", email="back@example.com")
    suppress(session, "back@example.com", reason="unsubscribe", source="test", actor="test")
    session.commit()
    response = admin.post(
        "/suppressions/remove", {"email": "back@example.com", "note": "Resubscribed in writing"}
    )
    assert response.status_code == 302
    assert listed(session) == set()
    session.refresh(contact)
    assert contact.email_status == "ok"
    row = session.scalar(
        sa.select(Activity).where(
            Activity.contact_id == contact.id, Activity.kind == "unsuppressed"
        )
    )
    assert "Resubscribed in writing" in row.detail
    assert row.actor == "user:admin@example.com"


def test_removing_needs_a_reason(admin, session):
    suppress(session, "stay@example.com", reason="bounce", source="test", actor="test")
    session.commit()
    response = admin.post("/suppressions/remove", {"email": "stay@example.com", "note": "  "})
    assert response.status_code == 422
    assert "Give a reason for removing this address." in response.get_data(as_text=True)
    assert listed(session) == {"stay@example.com"}


def test_removing_an_unknown_address_says_so(admin):
    response = admin.post(
        "/suppressions/remove", {"email": "ghost@example.com", "note": "x"}, follow_redirects=True
    )
    assert response.status_code == 200
    assert "is not on the suppression list" in response.get_data(as_text=True)


def test_search_and_pagination(admin, session):
    start = utcnow()
    for n in range(60):
        suppress(
            session,
            f"user{n:02d}@{'acme' if n % 3 == 0 else 'other'}.com",
            reason="bounce",
            source="sendgrid",
            actor="test",
            now=start + timedelta(seconds=n),
        )
    session.commit()
    html = admin.get("/suppressions/?q=acme").get_data(as_text=True)
    assert "20 addresses found" in html
    assert "user03@acme.com" in html and "user01@other.com" not in html
    first = admin.get("/suppressions/").get_data(as_text=True)
    assert "Page 1 of 2" in first and "user59@other.com" in first  # newest first
    assert "user00@acme.com" not in first
    second = admin.get("/suppressions/?page=2").get_data(as_text=True)
    assert "user00@acme.com" in second and "user59@other.com" not in second
    assert admin.get("/suppressions/?page=abc").status_code == 200
    # The live search (htmx) gets only the list.
    partial = admin.get(
        "/suppressions/?q=acme", headers={"HX-Target": "suppression-list"}, htmx=True
    )
    body = partial.get_data(as_text=True)
    assert body.lstrip().startswith('<div id="suppression-list">') and "<html" not in body


def test_staff_get_403_and_change_nothing(staff, session):
    suppress(session, "kept@example.com", reason="bounce", source="test", actor="test")
    session.commit()
    assert staff.get("/suppressions/").status_code == 403
    assert staff.post("/suppressions/", {"email": "new@example.com"}).status_code == 403
    response = staff.post("/suppressions/remove", {"email": "kept@example.com", "note": "x"})
    assert response.status_code == 403
    assert listed(session) == {"kept@example.com"}
    assert "/suppressions/" not in staff.get("/").get_data(as_text=True)  # no nav link


def test_logged_out_goes_to_login_and_csrf_is_required(web, admin):
    response = admin.post("/suppressions/", {"email": "x@example.com"}, csrf=False)
    assert response.status_code == 400
    admin.logout()
    assert admin.get("/suppressions/").status_code == 302


def test_a_suppression_is_seen_at_once_by_objects_already_loaded(session, make_contact):
    """The contacts and enrolments are changed set-based: what the session loaded before
    reads the new state in the same transaction, and each stop has its audit entry."""
    from crm_app.models import AuditEntry

    contact = make_contact("lead", email="seen@example.com", first_name="Sam", last_name="Seen")
    enrollment = session.scalar(sa.select(Enrollment).where(Enrollment.contact_id == contact.id))
    assert (contact.email_status, enrollment.status) == ("ok", "active")
    result = suppress(
        session, "seen@example.com", reason="manual", source="staff", actor="user:admin@example.com"
    )
    assert (result.changed, result.stopped) == (True, 1)
    assert contact.email_status == "unsubscribed"
    assert (enrollment.status, enrollment.next_send_at) == ("stopped", None)
    summaries = session.scalars(
        sa.select(AuditEntry.summary).where(AuditEntry.action == "enrollment.stopped")
    ).all()
    assert summaries == [f"Stopped {enrollment.campaign.name} for Sam Seen: suppressed by staff"]
    kinds = session.scalars(
        sa.select(Activity.kind).where(Activity.contact_id == contact.id).order_by(Activity.id)
    ).all()
    assert kinds[-2:] == ["stopped", "suppressed"]
