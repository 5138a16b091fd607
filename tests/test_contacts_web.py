"""Contact pages: list (search, filter, pagination), create, edit, delete, access."""

from __future__ import annotations

import html
import re
from datetime import timedelta

import pytest
import sqlalchemy as sa

from crm_app.drip.audience.contacts import CONTACT_FIELDS
from crm_app.drip.audience.panel import TIMELINE_LIMIT
from crm_app.drip.audience.suppression import suppress
from crm_app.drip.common.activity import activity_row, record_activities
from crm_app.drip.delivery.tick import run_tick
from crm_app.extensions import db
from crm_app.models import Activity, Contact, Enrollment, Message, utcnow
from tests.conftest import make_user
from tests.delivery_helpers import open_all_week

VALID = {
    "first_name": "Ada",
    "last_name": "Lovelace",
    "email": "ada@example.com",
    "phone": "+44 20 7946 0000",
    "company": "Analytical Engines",
    "title": "Engineer",
    "industry": "Computing",
    "contact_type": "lead",
    "timezone": "Europe/London",
    "owner_id": "",
    "notes": "Met at the conference.",
    "custom_fields": "interest: process automation\nreferrer: Charles",
}


def contact_count() -> int:
    return db.session.scalar(sa.select(sa.func.count(Contact.id)))


def the_contact(email: str) -> Contact | None:
    db.session.expire_all()
    return db.session.scalar(sa.select(Contact).where(Contact.email == email))


def active_campaigns(contact: Contact) -> list[str]:
    return sorted(e.campaign.name for e in contact.enrollments if e.status == "active")


# --- create ---


def test_create_contact_saves_it_and_auto_enrols_in_its_type_campaign(admin, admin_user, campaigns):
    response = admin.post("/contacts/new", {**VALID, "owner_id": str(admin_user.id)})
    assert response.status_code == 302
    contact = the_contact("ada@example.com")
    assert contact is not None
    assert response.headers["Location"].endswith(f"/contacts/{contact.id}")
    assert contact.custom_fields == {"interest": "process automation", "referrer": "Charles"}
    assert contact.owner_id == admin_user.id
    assert contact.timezone == "Europe/London"
    assert active_campaigns(contact) == ["Lead"]

    page = admin.get(f"/contacts/{contact.id}").get_data(as_text=True)
    assert "Saved Ada Lovelace" in page  # the success flash
    assert "Analytical Engines" in page and "process automation" in page
    assert 'id="campaign-panel"' in page and "Lead" in page
    assert "step 1 of 6" in page
    assert 'id="timeline"' in page and "Enrolled in Lead (when created)" in page


def test_new_contact_form_renders_every_field(admin, campaigns):
    page = admin.get("/contacts/new").get_data(as_text=True)
    for name in CONTACT_FIELDS:  # the core's one list of a contact's fields
        assert f'name="{name}"' in page
    assert '<option value="Europe/Paris">' in page  # the time zone datalist


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"email": "not-an-email"}, "email", "Not a valid email address"),
        ({"contact_type": "customer"}, "contact_type", "Choose one of"),
        ({"timezone": "Mars/Olympus"}, "timezone", "Unknown time zone"),
        ({"custom_fields": "this line has no colon"}, "custom_fields", "Line 1"),
        ({"custom_fields": "bad key: x"}, "custom_fields", "name: value"),
    ],
)
def test_bad_input_is_shown_next_to_its_field_and_nothing_is_saved(
    admin, campaigns, change, field, message
):
    response = admin.post("/contacts/new", {**VALID, **change})
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    # The message sits right under its own field, and the user's input is kept.
    assert f'id="error-{field}">' in page
    error_html = page.split(f'id="error-{field}">', 1)[1].split("</p>", 1)[0]
    assert message in error_html
    assert 'value="Analytical Engines"' in page
    assert contact_count() == 0
    assert db.session.scalar(sa.select(sa.func.count(Activity.id))) == 0


@pytest.mark.parametrize("email", ["taken@example.com", "TAKEN@Example.com"])
def test_duplicate_email_even_differing_in_case_is_refused(admin, make_contact, email):
    make_contact("lead", email="taken@example.com")
    response = admin.post("/contacts/new", {**VALID, "email": email})
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert 'id="error-email"' in page
    assert "Another contact already has this email address." in page
    assert contact_count() == 1


def test_every_bad_field_is_reported_at_once_with_malformed_custom_fields(admin, campaigns):
    response = admin.post(
        "/contacts/new", {**VALID, "email": "nope", "custom_fields": "no colon here"}
    )
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert 'id="error-email"' in page and 'id="error-custom_fields"' in page
    assert contact_count() == 0


# --- edit / delete ---


def test_a_custom_field_given_twice_is_refused_naming_it(admin, make_contact):
    twice = {**VALID, "custom_fields": "a: 1\nb: 2\na: 2"}
    response = admin.post("/contacts/new", twice)
    assert response.status_code == 422
    message = 'Line 3: the field "a" is given twice (also on line 1): keep one.'
    assert message in html.unescape(response.get_data(as_text=True))
    assert contact_count() == 0

    contact = make_contact("lead", custom_fields={"a": "1"})
    response = admin.post(f"/contacts/{contact.id}/edit", {**twice, "email": contact.email})
    assert response.status_code == 422 and message in html.unescape(response.get_data(as_text=True))
    assert the_contact(contact.email).custom_fields == {"a": "1"}


def test_edit_saves_the_changes(admin, make_contact):
    contact = make_contact("lead", company="Old Co")
    form = admin.get(f"/contacts/{contact.id}/edit").get_data(as_text=True)
    assert 'value="Old Co"' in form
    response = admin.post(
        f"/contacts/{contact.id}/edit",
        {**VALID, "email": contact.email, "company": "New Co", "custom_fields": "tier: gold"},
    )
    assert response.status_code == 302
    edited = the_contact(contact.email)
    assert edited.company == "New Co"
    assert edited.custom_fields == {"tier": "gold"}
    assert active_campaigns(edited) == ["Lead"]  # same type: nothing stopped


def test_edit_keeps_a_disabled_owner_who_cannot_own_other_contacts(admin, make_contact):
    former = make_user("former@example.com", "staff", "former-password")
    owned = make_contact("lead", owner_id=former.id)
    other = make_contact("lead")
    former.is_active_user = False
    db.session.commit()

    form = admin.get(f"/contacts/{owned.id}/edit").get_data(as_text=True)
    assert f'<option value="{former.id}" selected>Former (disabled)</option>' in form
    # The form saved as the browser sends it back, owner unchanged: the owner stays.
    unchanged = {**VALID, "email": owned.email, "owner_id": str(former.id)}
    assert admin.post(f"/contacts/{owned.id}/edit", unchanged).status_code == 302
    assert the_contact(owned.email).owner_id == former.id

    # Nobody else gets a disabled owner, from any form.
    assert f'value="{former.id}"' not in admin.get(f"/contacts/{other.id}/edit").get_data(
        as_text=True
    )
    assert f'value="{former.id}"' not in admin.get("/contacts/new").get_data(as_text=True)
    taken = {**VALID, "email": other.email, "owner_id": str(former.id)}
    response = admin.post(f"/contacts/{other.id}/edit", taken)
    assert response.status_code == 422
    assert "Former is disabled: choose an active user." in response.get_data(as_text=True)
    assert the_contact(other.email).owner_id is None


def test_editing_the_email_to_a_suppressed_address_stops_its_campaigns(admin, make_contact):
    contact = make_contact("lead")
    suppress(db.session, "gone@example.com", reason="bounce", source="sendgrid", actor="test")
    enrollment = contact.enrollments[0]
    open_all_week(enrollment.campaign)
    enrollment.next_send_at = utcnow() - timedelta(seconds=1)  # its email is due
    db.session.commit()

    edit = {**VALID, "email": "Gone@example.com"}
    assert admin.post(f"/contacts/{contact.id}/edit", edit).status_code == 302

    edited = the_contact("Gone@example.com")
    assert edited.email_status == "bounced"
    stopped = db.session.get(Enrollment, enrollment.id)
    assert stopped.status == "stopped" and stopped.next_send_at is None
    assert stopped.end_reason == "email changed: the address is on the suppression list (bounced)"
    details = db.session.scalars(
        sa.select(Activity.detail).where(Activity.contact_id == contact.id)
    ).all()
    assert "Stopped Lead: " + stopped.end_reason in details
    enqueued: list[int] = []
    run_tick(db.session, enqueued.extend, now=utcnow())
    assert enqueued == [] and db.session.scalar(sa.select(sa.func.count(Message.id))) == 0


def edited_rows(contact: Contact) -> list[str]:
    return db.session.scalars(
        sa.select(Activity.detail)
        .where(Activity.contact_id == contact.id, Activity.kind == "updated")
        .order_by(Activity.id)
    ).all()


def test_an_edit_names_the_changed_fields_and_an_unchanged_save_records_nothing(
    admin, make_contact
):
    contact = make_contact("lead", company="Old Co")
    form = {**VALID, "email": contact.email}
    assert admin.post(f"/contacts/{contact.id}/edit", form).status_code == 302
    assert edited_rows(contact) == [
        "Contact details edited: first name, last name, phone, company, title, industry, "
        "notes, time zone, custom fields"
    ]
    for _ in range(2):  # saved again as it is: nothing changed, nothing recorded
        assert admin.post(f"/contacts/{contact.id}/edit", form).status_code == 302
    assert len(edited_rows(contact)) == 1
    owner = make_user("owner@example.com", "staff", "owner-password")
    changed = {**form, "company": "New Co", "owner_id": str(owner.id)}
    assert admin.post(f"/contacts/{contact.id}/edit", changed).status_code == 302
    assert edited_rows(contact)[-1] == "Contact details edited: company, owner"


def test_the_timeline_says_when_older_entries_are_not_shown(admin, make_contact):
    contact = make_contact("lead")
    shown = db.session.scalar(
        sa.select(sa.func.count(Activity.id)).where(Activity.contact_id == contact.id)
    )
    rows = [
        activity_row(contact.id, "note", f"Entry {n}", actor="test", campaign_id=None,
                     enrollment_id=None, created_at=utcnow())
        for n in range(TIMELINE_LIMIT - shown)
    ]  # fmt: skip
    record_activities(db.session, rows)
    db.session.commit()
    page = admin.get(f"/contacts/{contact.id}").get_data(as_text=True)
    assert page.count('<li data-kind="') == TIMELINE_LIMIT
    assert "Showing the latest" not in page

    record_activities(db.session, rows[:1])
    db.session.commit()
    page = admin.get(f"/contacts/{contact.id}").get_data(as_text=True)
    assert page.count('<li data-kind="') == TIMELINE_LIMIT
    assert f"Showing the latest {TIMELINE_LIMIT} entries; older ones are not shown." in page


def test_edit_with_bad_input_changes_nothing(admin, make_contact):
    contact = make_contact("lead", company="Old Co")
    response = admin.post(
        f"/contacts/{contact.id}/edit",
        {**VALID, "email": contact.email, "company": "New Co", "timezone": "Nowhere/City"},
    )
    assert response.status_code == 422
    assert "Unknown time zone" in response.get_data(as_text=True)
    assert the_contact(contact.email).company == "Old Co"


def test_type_change_via_edit_stops_lead_and_enrols_in_client(admin, make_contact):
    contact = make_contact("lead")
    response = admin.post(
        f"/contacts/{contact.id}/edit",
        {**VALID, "email": contact.email, "contact_type": "client"},
    )
    assert response.status_code == 302
    edited = the_contact(contact.email)
    assert edited.contact_type == "client"
    by_campaign = {e.campaign.name: e for e in edited.enrollments}
    assert by_campaign["Lead"].status == "stopped"
    assert by_campaign["Lead"].end_reason == "type changed to client"
    assert by_campaign["Client"].status == "active"
    page = admin.get(f"/contacts/{contact.id}").get_data(as_text=True)
    assert "type changed to client" in page


def test_delete_asks_for_confirmation_then_removes_the_contact(admin, make_contact):
    contact = make_contact("lead")
    contact_id = contact.id
    confirm = admin.get(f"/contacts/{contact_id}/delete")
    assert confirm.status_code == 200
    text = confirm.get_data(as_text=True)
    assert "cannot be undone" in " ".join(text.split())
    assert "emails, replies and timeline" in text
    assert contact_count() == 1  # a GET deletes nothing

    response = admin.post(f"/contacts/{contact_id}/delete")
    assert response.status_code == 302
    assert response.headers["Location"].endswith("/contacts/")
    db.session.expire_all()
    assert db.session.get(Contact, contact_id) is None
    assert admin.get(f"/contacts/{contact_id}").status_code == 404


def test_delete_removes_the_contacts_enrollments_so_nothing_is_mailed(admin, make_contact):
    contact = make_contact("lead")
    contact_id = contact.id
    admin.post(f"/contacts/{contact_id}/delete")
    db.session.expire_all()
    left = db.session.scalar(
        sa.select(sa.func.count(Enrollment.id)).where(Enrollment.contact_id == contact_id)
    )
    assert left == 0


def test_unknown_contact_is_404(admin, campaigns):
    assert admin.get("/contacts/999").status_code == 404
    assert admin.get("/contacts/999/edit").status_code == 404


# --- list: search, filter, pagination ---


def test_list_shows_name_email_company_type_owner_and_active_campaign(
    admin, admin_user, make_contact
):
    make_contact(
        "prospect",
        first_name="Grace",
        last_name="Hopper",
        email="grace@navy.example",
        company="US Navy",
        owner_id=admin_user.id,
    )
    page = admin.get("/contacts/").get_data(as_text=True)
    for text in ("Grace Hopper", "grace@navy.example", "US Navy", "prospect", "Admin", "Prospect"):
        assert text in page


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("grace", {"Grace Hopper"}),
        ("GRACE HOPPER", {"Grace Hopper"}),
        ("@navy.EXAMPLE", {"Grace Hopper"}),
        ("analytical", {"Ada Lovelace"}),
        # Under three characters: the start of a first or last name.
        ("a", {"Ada Lovelace", "Alan Turing"}),
        ("ho", {"Grace Hopper"}),
        ("100%", set()),  # LIKE wildcards are taken literally
        ("a_a", set()),
    ],
)
def test_search_matches_name_email_and_company_case_insensitively(
    admin, make_contact, query, expected
):
    make_contact(first_name="Grace", last_name="Hopper", email="g@navy.example", company="Navy")
    make_contact(first_name="Ada", last_name="Lovelace", company="Analytical Engines")
    make_contact(first_name="Alan", last_name="Turing", company="Bletchley")
    page = admin.get("/contacts/", query_string={"q": query}).get_data(as_text=True)
    shown = {n for n in ("Grace Hopper", "Ada Lovelace", "Alan Turing") if n in page}
    assert shown == expected


def test_filter_by_type(admin, make_contact):
    make_contact("lead", first_name="Leah", last_name="Lead")
    make_contact("client", first_name="Cleo", last_name="Client")
    page = admin.get("/contacts/", query_string={"type": "client"}).get_data(as_text=True)
    assert "Cleo Client" in page and "Leah Lead" not in page


def _next_link(page: str) -> str | None:
    match = re.search(r'href="(/contacts/\?[^"]*)" rel="next"', page)
    return html.unescape(match.group(1)) if match else None


def test_pages_follow_one_another_by_next_links(admin, app, make_contact, monkeypatch):
    monkeypatch.setitem(app.config, "CONTACTS_PER_PAGE", 2)
    for last in ("Alpha", "Bravo", "Charlie", "Delta", "Echo"):
        make_contact(first_name="P", last_name=last)
    first = admin.get("/contacts/").get_data(as_text=True)
    assert "P Alpha" in first and "P Bravo" in first and "P Charlie" not in first
    second = admin.get(_next_link(first)).get_data(as_text=True)
    assert "P Charlie" in second and "P Delta" in second and "P Bravo" not in second
    third = admin.get(_next_link(second)).get_data(as_text=True)
    assert "P Echo" in third and _next_link(third) is None
    assert admin.get("/contacts/", query_string={"after": "x"}).status_code == 200
    unknown = admin.get("/contacts/", query_string={"after": "999999"}).get_data(as_text=True)
    assert "P Alpha" in unknown  # a boundary that no longer exists: the first page


def test_pagination_keeps_the_search_and_filter(admin, app, make_contact, monkeypatch):
    monkeypatch.setitem(app.config, "CONTACTS_PER_PAGE", 1)
    make_contact("lead", company="Acme")
    make_contact("lead", company="Acme")
    page = admin.get("/contacts/", query_string={"q": "acme", "type": "lead"}).get_data(
        as_text=True
    )
    link = _next_link(page)
    assert "q=acme" in link and "type=lead" in link and "after=" in link


def test_list_runs_a_fixed_number_of_queries_whatever_the_page_size(admin, make_contact):
    from sqlalchemy import event

    for _ in range(6):
        make_contact("lead")
    statements: list[str] = []

    def count(conn, cursor, statement, *args):
        statements.append(statement)

    event.listen(db.engine, "before_cursor_execute", count)
    try:
        admin.get("/contacts/")
        with_six = len(statements)
        for _ in range(6):
            make_contact("client")
        statements.clear()
        admin.get("/contacts/")
        with_twelve = len(statements)
    finally:
        event.remove(db.engine, "before_cursor_execute", count)
    assert with_twelve == with_six  # no per-row queries


def test_search_box_htmx_request_returns_only_the_list(admin, make_contact):
    make_contact(first_name="Grace", last_name="Hopper")
    response = admin.get(
        "/contacts/", htmx=True, query_string={"q": "grace"}, headers={"HX-Target": "contact-list"}
    )
    page = response.get_data(as_text=True)
    assert "<html" not in page and 'id="contact-list"' in page and "Grace Hopper" in page


# --- access ---


def test_logged_out_is_sent_to_login(web, campaigns):
    for url in ("/contacts/", "/contacts/new"):
        response = web.get(url)
        assert response.status_code == 302
        assert "/login" in response.headers["Location"]


def test_staff_can_create_and_edit_contacts(staff, staff_user, campaigns):
    assert staff.get("/contacts/").status_code == 200
    response = staff.post("/contacts/new", {**VALID, "owner_id": str(staff_user.id)})
    assert response.status_code == 302
    contact = the_contact("ada@example.com")
    assert contact.owner_id == staff_user.id
    response = staff.post(f"/contacts/{contact.id}/edit", {**VALID, "company": "Staff Co"})
    assert response.status_code == 302
    assert the_contact("ada@example.com").company == "Staff Co"


def test_create_without_csrf_token_is_refused(admin, campaigns):
    response = admin.post("/contacts/new", VALID, csrf=False)
    assert response.status_code == 400
    assert contact_count() == 0
