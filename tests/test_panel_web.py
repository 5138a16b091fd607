"""The contact page's campaign panel: every action inline (HTMX) and without JavaScript."""

from __future__ import annotations

import re

import pytest
import sqlalchemy as sa

from crm_app.drip.audience.ending import stop_all
from crm_app.drip.audience.suppression import suppress
from crm_app.extensions import db
from crm_app.models import Contact, Enrollment
from crm_app.web.filters import local_time
from tests.panel_helpers import current_email_in_state

TIMELINE_OOB = '<section id="timeline" class="card" hx-swap-oob="true">'


def enrollments(contact_id: int) -> list[Enrollment]:
    db.session.expire_all()
    return list(
        db.session.scalars(
            sa.select(Enrollment).where(Enrollment.contact_id == contact_id).order_by(Enrollment.id)
        )
    )


def active_names(contact_id: int) -> list[str]:
    return sorted(e.campaign.name for e in enrollments(contact_id) if e.status == "active")


def assert_panel_partial(response) -> str:
    """An HTMX answer: 200, the panel alone, plus the timeline as an out-of-band swap."""
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert "<html" not in page and "<body" not in page
    assert page.lstrip().startswith(("{#", '<section id="campaign-panel"'))
    assert '<section id="campaign-panel"' in page
    assert TIMELINE_OOB in page
    return page


def assert_redirects_to_detail(response, contact_id: int) -> None:
    assert response.status_code == 302
    assert response.headers["Location"].endswith(f"/contacts/{contact_id}")


def strip_stop_all(contact: Contact) -> None:
    stop_all(db.session, contact, reason="test setup", actor="test")
    db.session.commit()


# --- the panel as rendered on the contact page ---


def test_panel_shows_step_and_next_email_in_contact_and_viewer_time_zones(
    admin, admin_user, make_contact
):
    admin_user.timezone = "Asia/Tokyo"
    db.session.commit()
    contact = make_contact("lead", timezone="America/New_York")
    enrollment = enrollments(contact.id)[0]
    page = admin.get(f"/contacts/{contact.id}").get_data(as_text=True)
    assert "step 1 of 6" in page
    assert local_time(enrollment.next_send_at, "America/New_York") in page
    assert local_time(enrollment.next_send_at, "Asia/Tokyo") in page


def test_panel_lists_finished_enrollments_with_status_and_reason(admin, make_contact):
    contact = make_contact("lead")
    strip_stop_all(contact)
    page = admin.get(f"/contacts/{contact.id}").get_data(as_text=True)
    finished = page.split("Finished", 1)[1]
    assert "Lead" in finished and "stopped" in finished and "test setup" in finished


def test_dropdown_offers_only_active_campaigns_not_already_running(admin, make_contact, campaigns):
    campaigns["prospect"].status = "paused"
    db.session.commit()
    contact = make_contact("lead")
    page = admin.get(f"/contacts/{contact.id}").get_data(as_text=True)
    dropdown = page.split('name="campaign_id"', 1)[1].split("</select>", 1)[0]
    assert f'value="{campaigns["networking"].id}"' in dropdown
    assert f'value="{campaigns["client"].id}"' in dropdown
    assert f'value="{campaigns["prospect"].id}"' not in dropdown  # paused
    assert f'value="{campaigns["lead"].id}"' not in dropdown  # already active


def test_every_panel_control_works_without_javascript(admin, make_contact):
    """Plain forms with a csrf_token field and an action, next to their hx-post."""
    contact = make_contact("lead")
    page = admin.get(f"/contacts/{contact.id}").get_data(as_text=True)
    panel = page.split('<section id="campaign-panel"', 1)[1].split("</section>", 1)[0]
    forms = panel.split("<form")[1:]
    assert len(forms) == 5  # stop (one active), enrol, enrol by type, stop all, record goal
    for form in forms:
        assert 'hx-post="/contacts/' in form and 'hx-target="#campaign-panel"' in form
        if "stop-all" in form:  # without JavaScript it asks first, on a page of its own
            assert 'method="get" action="/contacts/' in form
            continue
        assert 'method="post"' in form and 'action="/contacts/' in form
        assert 'name="csrf_token"' in form


def test_stop_all_without_javascript_asks_first_then_stops(admin, make_contact, campaigns):
    contact = make_contact("lead")
    admin.post(f"/contacts/{contact.id}/enrollments", {"campaign_id": campaigns["client"].id})
    question = admin.get(f"/contacts/{contact.id}/enrollments/stop-all")
    page = question.get_data(as_text=True)
    assert question.status_code == 200
    assert "Stop 2 enrolments of Person1 Example?" in page and "Lead" in page
    assert sorted(active_names(contact.id)) == ["Client", "Lead"]  # asking stops nothing
    form = page.split(f'<form method="post" action="/contacts/{contact.id}/enrollments/stop-all"')[
        1
    ]
    form = form.split("</form>", 1)[0]
    assert 'name="csrf_token"' in form
    done = admin.post(f"/contacts/{contact.id}/enrollments/stop-all")
    assert done.status_code == 302 and active_names(contact.id) == []


def test_stop_all_page_with_nothing_to_stop_goes_back_to_the_contact(admin, make_contact):
    contact = make_contact("lead")
    admin.post(f"/contacts/{contact.id}/enrollments/stop-all")
    response = admin.get(f"/contacts/{contact.id}/enrollments/stop-all")
    assert response.status_code == 302
    assert response.headers["Location"] == f"/contacts/{contact.id}"


def test_panel_says_why_a_bounced_contact_is_not_mailed(admin, make_contact):
    contact = make_contact("lead")
    contact.email_status = "bounced"
    db.session.commit()
    page = admin.get(f"/contacts/{contact.id}").get_data(as_text=True)
    assert "The contact&#39;s address bounced: it is never mailed and cannot be enrolled." in page


def test_panel_says_a_suppressed_address_is_not_mailed_even_if_the_contact_says_ok(
    admin, make_contact
):
    # Enrolment and the tick refuse an address on the suppression list whatever the
    # contact row says; the panel must say so too (it used to read email_status only).
    contact = make_contact("lead", email="listed@example.com")
    suppress(db.session, "listed@example.com", reason="bounce", source="test", actor="test")
    contact.email_status = "ok"
    db.session.commit()
    page = admin.get(f"/contacts/{contact.id}").get_data(as_text=True)
    panel = page.split('<section id="campaign-panel"', 1)[1].split("</section>", 1)[0]
    assert "The address is on the suppression list (bounced): it is never mailed" in panel


# --- manual enrolment ---


def test_enrol_from_dropdown_with_htmx_returns_panel_and_timeline(admin, make_contact, campaigns):
    contact = make_contact("lead")
    response = admin.post(
        f"/contacts/{contact.id}/enrollments",
        {"campaign_id": campaigns["networking"].id},
        htmx=True,
    )
    page = assert_panel_partial(response)
    assert "Enrolled in Networking." in page
    assert "Enrolled in Networking (by hand)" in page.split(TIMELINE_OOB, 1)[1]
    assert active_names(contact.id) == ["Lead", "Networking"]


def test_enrol_from_dropdown_without_js_redirects_to_the_contact(admin, make_contact, campaigns):
    contact = make_contact("lead")
    response = admin.post(
        f"/contacts/{contact.id}/enrollments", {"campaign_id": campaigns["client"].id}
    )
    assert_redirects_to_detail(response, contact.id)
    assert active_names(contact.id) == ["Client", "Lead"]
    assert "Enrolled in Client." in admin.get(f"/contacts/{contact.id}").get_data(as_text=True)


def test_enrol_twice_gives_a_clear_message_and_one_active_enrollment(
    admin, make_contact, campaigns
):
    contact = make_contact("lead")
    url = f"/contacts/{contact.id}/enrollments"
    response = admin.post(url, {"campaign_id": campaigns["lead"].id}, htmx=True)
    page = assert_panel_partial(response)
    assert "already enrolled in Lead" in page and "flash-error" in page

    response = admin.post(url, {"campaign_id": campaigns["lead"].id})
    assert_redirects_to_detail(response, contact.id)
    assert "already enrolled in Lead" in admin.get(f"/contacts/{contact.id}").get_data(as_text=True)
    assert active_names(contact.id) == ["Lead"]


def test_enrol_in_paused_campaign_is_refused_with_a_message(admin, make_contact, campaigns):
    campaigns["networking"].status = "paused"
    db.session.commit()
    contact = make_contact("lead")
    response = admin.post(
        f"/contacts/{contact.id}/enrollments",
        {"campaign_id": campaigns["networking"].id},
        htmx=True,
    )
    page = assert_panel_partial(response)
    assert "Networking is paused" in page
    assert active_names(contact.id) == ["Lead"]


def test_unsubscribed_contact_cannot_be_enrolled(admin, make_contact, campaigns):
    contact = make_contact("lead")
    strip_stop_all(contact)
    contact.email_status = "unsubscribed"
    db.session.commit()
    response = admin.post(
        f"/contacts/{contact.id}/enrollments", {"campaign_id": campaigns["lead"].id}, htmx=True
    )
    assert "cannot be enrolled: the contact unsubscribed" in assert_panel_partial(response)
    assert active_names(contact.id) == []


@pytest.mark.parametrize("campaign_id", ["", "abc", "99999"])
def test_enrol_without_a_real_campaign_asks_to_choose_one(admin, make_contact, campaign_id):
    contact = make_contact("lead")
    response = admin.post(
        f"/contacts/{contact.id}/enrollments", {"campaign_id": campaign_id}, htmx=True
    )
    assert "Choose a campaign" in assert_panel_partial(response)
    assert active_names(contact.id) == ["Lead"]


# --- enrol by type ---


def test_enrol_by_type_with_htmx(admin, make_contact):
    contact = make_contact("prospect")
    strip_stop_all(contact)
    page = assert_panel_partial(
        admin.post(f"/contacts/{contact.id}/enrollments/by-type", htmx=True)
    )
    assert "Enrolled in Prospect again: resuming at Email 1 of Prospect" in page
    assert active_names(contact.id) == ["Prospect"]


def test_enrol_by_type_without_js(admin, make_contact):
    contact = make_contact("client")
    strip_stop_all(contact)
    response = admin.post(f"/contacts/{contact.id}/enrollments/by-type")
    assert_redirects_to_detail(response, contact.id)
    assert active_names(contact.id) == ["Client"]


def test_enrol_by_type_when_already_enrolled_is_a_message_not_a_500(admin, make_contact):
    contact = make_contact("lead")
    page = assert_panel_partial(
        admin.post(f"/contacts/{contact.id}/enrollments/by-type", htmx=True)
    )
    assert "already enrolled in Lead" in page
    assert active_names(contact.id) == ["Lead"]


# --- stop one / stop all ---


def test_stop_with_htmx_records_who_stopped_it(admin, make_contact):
    contact = make_contact("lead")
    enrollment = enrollments(contact.id)[0]
    response = admin.post(f"/contacts/{contact.id}/enrollments/{enrollment.id}/stop", htmx=True)
    page = assert_panel_partial(response)
    assert "Stopped Lead." in page
    [stopped] = enrollments(contact.id)
    assert stopped.status == "stopped"
    assert stopped.end_reason == "stopped by admin@example.com"
    assert stopped.next_send_at is None
    timeline = page.split(TIMELINE_OOB, 1)[1]
    assert "Stopped Lead: stopped by admin@example.com" in timeline
    # Who did it, as a person reads it (the stored actor is "user:admin@example.com").
    assert "admin@example.com ·" in timeline and "user:" not in timeline


def test_stop_without_js(admin, make_contact):
    contact = make_contact("lead")
    enrollment = enrollments(contact.id)[0]
    response = admin.post(f"/contacts/{contact.id}/enrollments/{enrollment.id}/stop")
    assert_redirects_to_detail(response, contact.id)
    assert active_names(contact.id) == []


def test_stopping_an_ended_enrollment_is_a_message(admin, make_contact):
    contact = make_contact("lead")
    enrollment = enrollments(contact.id)[0]
    strip_stop_all(contact)
    page = assert_panel_partial(
        admin.post(f"/contacts/{contact.id}/enrollments/{enrollment.id}/stop", htmx=True)
    )
    assert "already ended" in page


def test_stop_another_contacts_enrollment_is_404(admin, make_contact):
    mine, theirs = make_contact("lead"), make_contact("lead")
    their_enrollment = enrollments(theirs.id)[0]
    response = admin.post(f"/contacts/{mine.id}/enrollments/{their_enrollment.id}/stop", htmx=True)
    assert response.status_code == 404
    assert active_names(theirs.id) == ["Lead"]


def test_stop_all_with_htmx(admin, make_contact, campaigns):
    contact = make_contact("lead")
    admin.post(f"/contacts/{contact.id}/enrollments", {"campaign_id": campaigns["client"].id})
    page = assert_panel_partial(
        admin.post(f"/contacts/{contact.id}/enrollments/stop-all", htmx=True)
    )
    assert "Stopped 2 enrolments." in page
    assert active_names(contact.id) == []
    assert {e.end_reason for e in enrollments(contact.id)} == {"stopped by admin@example.com"}


def test_stop_all_without_js(admin, make_contact):
    contact = make_contact("lead")
    response = admin.post(f"/contacts/{contact.id}/enrollments/stop-all")
    assert_redirects_to_detail(response, contact.id)
    assert active_names(contact.id) == []


def test_stop_all_with_nothing_active_says_so(admin, make_contact):
    contact = make_contact("lead")
    strip_stop_all(contact)
    page = assert_panel_partial(
        admin.post(f"/contacts/{contact.id}/enrollments/stop-all", htmx=True)
    )
    assert "no active enrolment to stop" in page


# --- protection and access ---

PANEL_POSTS = [
    "/contacts/{id}/enrollments",
    "/contacts/{id}/enrollments/by-type",
    "/contacts/{id}/enrollments/{enrollment}/stop",
    "/contacts/{id}/enrollments/stop-all",
]


@pytest.mark.parametrize("url", PANEL_POSTS)
@pytest.mark.parametrize("htmx", [True, False])
def test_panel_post_without_csrf_token_is_400(admin, make_contact, campaigns, url, htmx):
    contact = make_contact("lead")
    enrollment = enrollments(contact.id)[0]
    response = admin.post(
        url.format(id=contact.id, enrollment=enrollment.id),
        {"campaign_id": campaigns["client"].id},
        htmx=htmx,
        csrf=False,
    )
    assert response.status_code == 400
    assert active_names(contact.id) == ["Lead"]


@pytest.mark.parametrize("url", PANEL_POSTS)
def test_logged_out_panel_post_goes_to_login(web, make_contact, campaigns, url):
    contact = make_contact("lead")
    enrollment = enrollments(contact.id)[0]
    url = url.format(id=contact.id, enrollment=enrollment.id)
    plain = web.post(url, {"campaign_id": campaigns["client"].id})
    assert plain.status_code == 302 and "/login" in plain.headers["Location"]
    # An htmx action is answered where it was made: signed out, with a way back in.
    inline = web.post(url, {"campaign_id": campaigns["client"].id}, htmx=True)
    assert inline.status_code == 401 and inline.headers["X-Action-Error"]
    assert "You were signed out" in inline.get_data(as_text=True)
    assert "/login" in inline.get_data(as_text=True)
    assert active_names(contact.id) == ["Lead"]


def test_logged_out_contact_page_goes_to_login(web, make_contact):
    contact = make_contact("lead")
    response = web.get(f"/contacts/{contact.id}")
    assert response.status_code == 302 and "/login" in response.headers["Location"]


def test_staff_can_use_the_panel(staff, make_contact, campaigns):
    contact = make_contact("lead")
    assert staff.get(f"/contacts/{contact.id}").status_code == 200
    assert_panel_partial(
        staff.post(
            f"/contacts/{contact.id}/enrollments",
            {"campaign_id": campaigns["networking"].id},
            htmx=True,
        )
    )
    assert_panel_partial(staff.post(f"/contacts/{contact.id}/enrollments/stop-all", htmx=True))
    assert active_names(contact.id) == []
    assert {e.end_reason for e in enrollments(contact.id)} == {"stopped by staff@example.com"}


def test_timeline_is_newest_first(admin, make_contact):
    contact = make_contact("lead")
    strip_stop_all(contact)
    page = admin.get(f"/contacts/{contact.id}").get_data(as_text=True)
    timeline = page.split('<section id="timeline"', 1)[1]
    assert (
        timeline.index("Stopped Lead")
        < timeline.index("Enrolled in Lead")
        < timeline.index("Contact created")
    )


def test_recording_a_goal_counts_for_conversion(admin, make_contact):
    from crm_app.models import ContactGoal

    contact = make_contact("lead")
    response = admin.post(f"/contacts/{contact.id}/goals", {"name": "demo booked"}, htmx=True)
    assert response.status_code == 200
    assert "Recorded the goal: demo booked" in response.get_data(as_text=True)
    db.session.expire_all()
    names = db.session.scalars(
        sa.select(ContactGoal.name).where(ContactGoal.contact_id == contact.id)
    ).all()
    assert names == ["goal:demo booked"]


def test_a_goal_needs_a_name(admin, make_contact):
    from crm_app.models import ContactGoal

    contact = make_contact("lead")
    response = admin.post(f"/contacts/{contact.id}/goals", {"name": "  "}, htmx=True)
    assert "Name the goal" in response.get_data(as_text=True)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(ContactGoal)) == 0


def test_panel_says_when_the_current_email_failed(admin, make_contact):
    contact = make_contact("lead")
    message = current_email_in_state(db.session, contact, "failed")
    message.error = "400: invalid from address"
    db.session.commit()
    page = admin.get(f"/contacts/{contact.id}").get_data(as_text=True)
    assert "step 1 failed to send" in page
    assert "/admin/messages?status=failed" in page


def test_the_contact_page_reads_each_thing_once_and_loads_nothing_lazily(admin, make_contact):
    """The login, the contact with its owner, the panel (campaigns, enrolments, their
    steps, the suppression list), the workspace's sender (a Lead subject names
    `sender.company`, rendered for this contact), the running A/B tests' variants (the
    subjects the contact gets), the timeline (the tests run with no frequency cap, so
    no recent sends): six statements. No campaign or step is loaded lazily by the
    itinerary or the template, with nothing else in the process holding them."""
    contact_id = make_contact("lead").id
    db.session.commit()
    db.session.expunge_all()  # the request alone holds what it reads
    statements: list[str] = []
    listener = lambda *args: statements.append(args[2])  # noqa: E731
    sa.event.listen(db.engine, "before_cursor_execute", listener)
    try:
        page = admin.get(f"/contacts/{contact_id}").get_data(as_text=True)
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", listener)
    assert "step 1 of 6" in page
    lazy = [s for s in statements if "WHERE campaigns.id =" in s or "campaign_steps.id =" in s]
    assert lazy == []
    assert len(statements) == 6


def test_every_column_of_the_contact_page_has_a_header_a_screen_reader_reads(admin, make_contact):
    # The action columns (Stop, Why?) had an empty <th>: a screen reader named those
    # cells by nothing when moving along a row.
    contact = make_contact("lead")
    page = admin.get(f"/contacts/{contact.id}").get_data(as_text=True)
    headers = re.findall(r"<th\b[^>]*>(.*?)</th>", page, flags=re.S)
    assert len(headers) >= 7
    assert all(re.sub(r"<[^>]+>", "", header).strip() for header in headers), headers
