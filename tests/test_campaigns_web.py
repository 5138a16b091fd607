"""Campaign pages: list, detail with previews, send window and status (admins only)."""

from __future__ import annotations

import html
from datetime import UTC, datetime, time, timedelta

import pytest
import sqlalchemy as sa

from crm_app.drip.audience.enrollment import EnrollmentError, enroll
from crm_app.drip.campaigns.manage import describe_delay, set_campaign_status
from crm_app.drip.campaigns.schedule import is_inside_send_window
from crm_app.extensions import db
from crm_app.models import Activity, Campaign, Enrollment

WEEKEND_MORNINGS = {"weekdays": ["5", "6"], "send_start": "10:00", "send_end": "12:00"}


def reload(campaign: Campaign) -> Campaign:
    db.session.expire_all()
    return db.session.get(Campaign, campaign.id)


def active_enrollments(campaign: Campaign) -> list[Enrollment]:
    return list(
        db.session.scalars(
            sa.select(Enrollment)
            .where(Enrollment.campaign_id == campaign.id, Enrollment.status == "active")
            .order_by(Enrollment.id)
        )
    )


# ---------------------------------------------------------------- list


def test_campaign_list_shows_every_campaign_with_counts_for_staff(staff, campaigns, make_contact):
    make_contact("lead")
    make_contact("lead")
    make_contact("client")
    response = staff.get("/campaigns/")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    for name in ("Networking", "Lead", "Prospect", "Client"):
        assert f">{name}</a>" in page
    rows = {
        name: page.split(f">{name}</a>")[1].split("</tr>")[0]
        for name in ("Networking", "Lead", "Client")
    }
    assert "<td>8</td>" in rows["Networking"] and "<td>0</td>" in rows["Networking"]
    assert "<td>6</td>" in rows["Lead"] and "<td>2</td>" in rows["Lead"]
    assert "<td>4</td>" in rows["Client"] and "<td>1</td>" in rows["Client"]
    assert "badge-active" in rows["Lead"]
    assert "Mon, Tue, Wed, Thu, Fri 09:00-17:00" in rows["Lead"]


def test_campaign_list_counts_in_one_query_whatever_the_enrollments(staff, campaigns, make_contact):
    for contact_type in ("networking", "lead", "prospect", "client", "lead"):
        make_contact(contact_type)
    statements: list[str] = []

    def record(conn, cursor, statement, *args):
        statements.append(statement)

    sa.event.listen(db.engine, "before_cursor_execute", record)
    try:
        assert staff.get("/campaigns/").status_code == 200
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", record)
    touching = [s for s in statements if "campaign" in s.lower() or "enrollments" in s.lower()]
    assert len(touching) == 1, touching


# ---------------------------------------------------------------- detail and previews


def test_detail_lists_steps_in_order_with_delays_and_previews(staff, campaigns):
    lead = campaigns["lead"]
    response = staff.get(f"/campaigns/{lead.id}")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    positions = [page.index(f'id="step-{step.id}"') for step in lead.steps]
    assert positions == sorted(positions)
    # Named by the subject for the sample contact, never by its template source.
    assert "Email 1: Thanks for getting in touch with Drip CRM" in page
    assert "{{ sender.company }}" not in page
    assert "right after enrolment" in page
    assert "2 days after the previous email" in page
    # Rendered against the sample contact, with the logged-in user as the sender.
    assert "&lt;p&gt;Hi Alex,&lt;/p&gt;" in page  # HTML part, escaped into srcdoc
    assert "<iframe sandbox" in page
    assert "Hi Alex,\n\nThank you for reaching out." in page  # plain-text part
    assert "Staff" in page


def test_staff_see_the_window_but_no_admin_controls(staff, campaigns):
    page = staff.get(f"/campaigns/{campaigns['lead'].id}").get_data(as_text=True)
    assert "Mon, Tue, Wed, Thu, Fri 09:00-17:00" in page
    assert "Save send window" not in page
    assert ">Pause</button>" not in page


def test_admins_see_the_controls(admin, campaigns):
    page = admin.get(f"/campaigns/{campaigns['lead'].id}").get_data(as_text=True)
    assert "Save send window" in page
    assert ">Pause</button>" in page and ">Archive</button>" in page


def test_step_preview_renders_merge_fields_with_the_sample_contact(app, staff, campaigns):
    lead = campaigns["lead"]
    step = lead.steps[0]
    response = staff.get(f"/campaigns/{lead.id}/steps/{step.id}/preview")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    company = app.config["SENDER_COMPANY"]
    assert f"Thanks for getting in touch with {company}" in page  # rendered subject
    assert "relevant to Northwind Traders." in page
    assert "{{" not in page.split("<h1>")[1]
    # The sample contact has no custom "interest": listed. (The staff user has no title,
    # but the email uses sender.signature, which needs none.)
    assert "Missing or empty for the sample contact" in page
    assert "<code>contact.custom.interest</code></p>" in page


def test_sender_fields_come_from_the_current_user(app, staff, staff_user, campaigns):
    staff_user.name = "Robin Hale"
    staff_user.title = "Account Director"
    db.session.commit()
    lead = campaigns["lead"]
    page = staff.get(f"/campaigns/{lead.id}/steps/{lead.steps[0].id}/preview")
    text = page.get_data(as_text=True)
    company = app.config["SENDER_COMPANY"]
    assert f"Best,\nRobin Hale\nAccount Director\n{company}" in text  # the signature


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("Hi {{ contact.favourite_colour }}", "favourite_colour"),
        ("{{ ''.__class__.__mro__ }}", "unsafe"),
        ("{% if %}", "cannot be rendered"),
    ],
)
def test_a_broken_template_shows_its_error_instead_of_failing(staff, campaigns, body, message):
    lead = campaigns["lead"]
    step = lead.steps[1]
    step.body_text = body
    db.session.commit()
    for url in (f"/campaigns/{lead.id}", f"/campaigns/{lead.id}/steps/{step.id}/preview"):
        response = staff.get(url)
        assert response.status_code == 200
        page = response.get_data(as_text=True)
        assert message in html.unescape(page)
        assert "&lt;class" not in page and "<class" not in page


def test_preview_of_a_step_from_another_campaign_is_not_found(staff, campaigns):
    step = campaigns["client"].steps[0]
    assert (
        staff.get(f"/campaigns/{campaigns['lead'].id}/steps/{step.id}/preview").status_code == 404
    )
    assert staff.get("/campaigns/9999").status_code == 404


def test_delay_labels():
    assert describe_delay(1, 0) == "right after enrolment"
    assert describe_delay(1, 2) == "2 days after enrolment"
    assert describe_delay(3, 1) == "1 day after the previous email"
    assert describe_delay(3, 3) == "3 days after the previous email"
    assert describe_delay(4, 0) == "same day as the previous email"


# ---------------------------------------------------------------- send window


def test_admin_changes_the_window_and_enrollments_move_into_it(admin, campaigns, make_contact):
    lead = campaigns["lead"]
    for zone in ("UTC", "America/New_York", "Asia/Tokyo"):
        make_contact("lead", timezone=zone)
    before = {e.id: e.next_send_at for e in active_enrollments(lead)}

    response = admin.post(f"/campaigns/{lead.id}/settings", WEEKEND_MORNINGS)
    assert response.status_code == 302
    assert response.headers["Location"] == f"/campaigns/{lead.id}"

    lead = reload(lead)
    assert lead.customized is True
    assert lead.send_weekdays == {5, 6}
    assert (lead.send_start, lead.send_end) == (time(10), time(12))
    moved = active_enrollments(lead)
    assert len(moved) == 3
    for enrollment in moved:
        assert is_inside_send_window(enrollment.next_send_at, lead, enrollment.contact.timezone)
        assert enrollment.next_send_at >= before[enrollment.id] - timedelta(seconds=1)
    kinds = db.session.scalars(sa.select(Activity.kind).where(Activity.kind == "rescheduled"))
    assert len(list(kinds)) == 3
    page = admin.get(f"/campaigns/{lead.id}").get_data(as_text=True)
    assert "Send window saved: Sat, Sun 10:00-12:00. 3 scheduled email(s) moved." in page


def test_window_change_over_htmx_answers_with_the_settings_panel(admin, campaigns):
    lead = campaigns["lead"]
    response = admin.post(f"/campaigns/{lead.id}/settings", WEEKEND_MORNINGS, htmx=True)
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert '<section id="campaign-settings"' in page and "<html" not in page
    assert "Sat, Sun 10:00-12:00" in page


@pytest.mark.parametrize(
    ("form", "field", "message"),
    [
        ({"send_start": "09:00", "send_end": "17:00"}, "weekdays", "Pick at least one day."),
        (
            {"weekdays": ["0"], "send_start": "12:00", "send_end": "12:00"},
            "send_end",
            "The end time must be after the start time.",
        ),
        (
            {"weekdays": ["0"], "send_start": "15:00", "send_end": "09:00"},
            "send_end",
            "The end time must be after the start time.",
        ),
        (
            {"weekdays": ["0"], "send_start": "25:99", "send_end": "17:00"},
            "send_start",
            "Enter a start time as HH:MM.",
        ),
        ({"weekdays": ["0"], "send_start": "09:00"}, "send_end", "Enter an end time as HH:MM."),
        (
            {"weekdays": ["9"], "send_start": "09:00", "send_end": "17:00"},
            "weekdays",
            "is not a weekday.",
        ),
    ],
)
@pytest.mark.parametrize("htmx", [False, True])
def test_an_invalid_window_is_refused_and_nothing_is_saved(
    admin, campaigns, make_contact, form, field, message, htmx
):
    lead = campaigns["lead"]
    make_contact("lead")
    before = [e.next_send_at for e in active_enrollments(lead)]

    response = admin.post(f"/campaigns/{lead.id}/settings", form, htmx=htmx)
    assert response.status_code == 422
    page = html.unescape(response.get_data(as_text=True))
    assert message in page
    # The message sits next to its field: inside the days fieldset or the time's field.
    after_field = page.rsplit(f'name="{field}"', 1)[1]
    closing = "</fieldset>" if field == "weekdays" else "</div>"
    assert message in after_field.split(closing, 1)[0]
    lead = reload(lead)
    assert lead.send_window_label == "Mon, Tue, Wed, Thu, Fri 09:00-17:00"
    assert lead.customized is False
    assert [e.next_send_at for e in active_enrollments(lead)] == before


def test_the_submitted_values_are_shown_again_after_an_error(admin, campaigns):
    lead = campaigns["lead"]
    form = {"weekdays": ["2", "4"], "send_start": "15:00", "send_end": "09:00"}
    page = admin.post(f"/campaigns/{lead.id}/settings", form).get_data(as_text=True)
    assert 'value="15:00"' in page and 'value="09:00"' in page
    assert 'value="2"\n          checked' in page and 'value="4"\n          checked' in page
    assert 'value="0"\n          checked' not in page


@pytest.mark.parametrize("action", ["settings", "status"])
def test_staff_get_403_on_campaign_changes(staff, campaigns, action):
    lead = campaigns["lead"]
    data = {**WEEKEND_MORNINGS, "status": "paused"}
    response = staff.post(f"/campaigns/{lead.id}/{action}", data)
    assert response.status_code == 403
    assert "Only admins" in response.get_data(as_text=True)
    lead = reload(lead)
    assert lead.status == "active" and lead.customized is False


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/campaigns/"),
        ("get", "/campaigns/{id}"),
        ("get", "/campaigns/{id}/steps/{step}/preview"),
        ("post", "/campaigns/{id}/settings"),
        ("post", "/campaigns/{id}/status"),
    ],
)
def test_logged_out_users_are_sent_to_login(web, campaigns, method, path):
    lead = campaigns["lead"]
    url = path.format(id=lead.id, step=lead.steps[0].id)
    response = getattr(web, method)(
        url, **({"data": {"status": "paused"}} if method == "post" else {})
    )
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login")
    assert reload(lead).status == "active"


# ---------------------------------------------------------------- status


def test_paused_campaign_keeps_enrollments_and_refuses_new_ones(admin, campaigns, make_contact):
    lead = campaigns["lead"]
    enrolled = make_contact("lead")
    response = admin.post(f"/campaigns/{lead.id}/status", {"status": "paused"})
    assert response.status_code == 302

    lead = reload(lead)
    assert lead.status == "paused" and lead.customized is True
    assert [e.contact_id for e in active_enrollments(lead)] == [enrolled.id]
    paused_rows = db.session.scalars(sa.select(Activity).where(Activity.kind == "campaign_paused"))
    assert [a.contact_id for a in paused_rows] == [enrolled.id]

    newcomer = make_contact("networking")
    with pytest.raises(EnrollmentError, match="Lead is paused: it takes no new enrolments."):
        enroll(db.session, newcomer, lead, actor="test")
    db.session.rollback()

    assert admin.post(f"/campaigns/{lead.id}/status", {"status": "active"}).status_code == 302
    lead = reload(lead)
    assert enroll(db.session, newcomer, lead, actor="test").status == "active"


def test_archived_campaign_refuses_new_enrollments_and_can_be_restored(
    admin, campaigns, make_contact
):
    client = campaigns["client"]
    response = admin.post(f"/campaigns/{client.id}/status", {"status": "archived"})
    assert response.status_code == 302
    client = reload(client)
    assert client.status == "archived"

    contact = make_contact("client")  # auto-enrolment is refused and recorded
    assert contact.enrollments == []
    note = db.session.scalar(sa.select(Activity.detail).where(Activity.kind == "not_enrolled"))
    assert note == "Client is archived: it takes no new enrolments."

    page = admin.get("/campaigns/").get_data(as_text=True)
    assert page.index(">Client</a>") > page.index(">Prospect</a>")  # archived ones last
    assert "badge-archived" in page
    detail = admin.get(f"/campaigns/{client.id}").get_data(as_text=True)
    assert ">Restore</button>" in detail and ">Pause</button>" not in detail

    assert admin.post(f"/campaigns/{client.id}/status", {"status": "active"}).status_code == 302
    assert reload(client).status == "active"


def test_status_over_htmx_updates_the_panel_and_the_badge(admin, campaigns):
    lead = campaigns["lead"]
    response = admin.post(f"/campaigns/{lead.id}/status", {"status": "paused"}, htmx=True)
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "Lead is now paused." in page
    assert 'id="campaign-status" class="badge badge-paused" hx-swap-oob="true"' in page
    assert ">Resume</button>" in page


@pytest.mark.parametrize(
    ("status", "message"), [("paused", "already paused"), ("deleted", "not a campaign status")]
)
def test_an_invalid_status_change_is_refused(admin, campaigns, status, message):
    lead = campaigns["lead"]
    set_campaign_status(db.session, lead, "paused", actor="test")
    db.session.commit()
    response = admin.post(f"/campaigns/{lead.id}/status", {"status": status})
    assert response.status_code == 422
    assert message in response.get_data(as_text=True)
    assert reload(lead).status == "paused"


def test_resuming_moves_overdue_emails_to_the_next_window_opening(campaigns, make_contact):
    lead = campaigns["lead"]
    make_contact("lead")
    set_campaign_status(db.session, lead, "paused", actor="test")
    enrollment = active_enrollments(lead)[0]
    enrollment.next_send_at = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # fell due while paused
    saturday_morning = datetime(2026, 3, 7, 8, 0, tzinfo=UTC)

    set_campaign_status(db.session, lead, "active", actor="test", now=saturday_morning)
    assert enrollment.next_send_at == datetime(2026, 3, 9, 9, 0, tzinfo=UTC)  # Monday 09:00
    resumed = db.session.scalars(sa.select(Activity.kind).where(Activity.kind.like("campaign_%")))
    assert sorted(resumed) == ["campaign_paused", "campaign_resumed"]


def test_resuming_with_htmx_updates_the_headers_active_enrolments(admin, campaigns, make_contact):
    """Resuming enrols the contacts added while the campaign was stopped: the header's
    count of active enrolments is sent again with the panel (it kept the old one)."""
    client = campaigns["client"]
    admin.post(f"/campaigns/{client.id}/status", {"status": "paused"}, htmx=True)
    make_contact("client")
    make_contact("client")
    db.session.commit()
    response = admin.post(f"/campaigns/{client.id}/status", {"status": "active"}, htmx=True)
    html = response.get_data(as_text=True)
    assert '<span id="active-enrollments" hx-swap-oob="true">2 active enrolments</span>' in html
