"""Login, logout, redirects, roles, CSRF and session expiry."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from flask import g
from itsdangerous import TimestampSigner

from crm_app.drip.team.users import NewUser, create_user
from crm_app.extensions import db
from crm_app.models import Campaign


def test_login_with_the_right_password_opens_the_app(web, admin_user):
    response = web.post("/login", {"email": "Admin@Example.com ", "password": "admin-password"})
    assert response.status_code == 302
    assert response.headers["Location"] == "/"
    assert web.get("/").status_code == 200


def _user_added_as(email: str) -> None:
    """Added as on the Users page: the address is stored normalised."""
    create_user(db.session, NewUser(email, "Intl", "staff", "violet-harbour-lamp"), actor="test")
    db.session.commit()


@pytest.mark.parametrize(
    ("added_as", "typed"),
    [
        ("bob@bücher.ch", "bob@xn--bcher-kva.ch"),  # what Chromium sends for an IDN domain
        ("josé@example.com", "Jose\u0301@example.com"),  # a decomposed é
    ],
)
def test_an_international_address_logs_in_as_the_browser_sends_it(web, added_as, typed):
    _user_added_as(added_as)
    response = web.post("/login", {"email": typed, "password": "violet-harbour-lamp"})
    assert response.status_code == 302
    assert web.get("/").status_code == 200


def test_the_login_field_lets_the_browser_send_a_non_ascii_address(web):
    # type="email" makes Chromium refuse josé@... before sending it, and rewrite bücher.ch.
    page = web.get("/login").get_data(as_text=True)
    field = page.split('name="email"', 1)[1].split(">", 1)[0]
    assert 'type="text"' in field and 'inputmode="email"' in field


def test_bad_password_and_unknown_email_get_the_same_answer(web, admin_user):
    wrong_password = web.post("/login", {"email": "admin@example.com", "password": "nope-nope"})
    unknown_email = web.post("/login", {"email": "ghost@example.com", "password": "nope-nope"})
    for response in (wrong_password, unknown_email):
        assert response.status_code == 401
        assert "Wrong email or password." in response.get_data(as_text=True)
    assert web.get("/").status_code == 302  # still logged out


def test_a_disabled_account_is_only_named_after_the_right_password(web, staff_user):
    staff_user.is_active_user = False
    db.session.commit()
    wrong = web.post("/login", {"email": "staff@example.com", "password": "wrong-password"})
    assert "disabled" not in wrong.get_data(as_text=True)
    right = web.post("/login", {"email": "staff@example.com", "password": "staff-password"})
    assert right.status_code == 401
    assert "disabled" in right.get_data(as_text=True)
    assert web.get("/").status_code == 302


def test_logout_ends_the_session(admin):
    response = admin.logout()
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login")
    assert admin.get("/").status_code == 302


def test_logout_is_not_a_get_link(admin):
    # A GET logout could be triggered by any <img> on another site: GET only asks.
    page = admin.get("/logout")
    assert page.status_code == 200
    assert 'method="post" action="/logout"' in page.get_data(as_text=True)
    assert admin.get("/").status_code == 200


def test_get_logout_when_logged_out_goes_to_the_login_page(web):
    response = web.get("/logout")
    assert response.status_code == 302 and response.headers["Location"] == "/login"


@pytest.mark.parametrize("path", ["/", "/campaigns/", "/campaigns/1", "/contacts/"])
def test_logged_out_pages_redirect_to_login_with_next(web, path):
    response = web.get(path)
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login?next=")


def test_logged_out_htmx_request_gets_hx_redirect_to_login(web):
    response = web.get("/campaigns/", htmx=True)
    assert response.status_code == 401
    assert response.headers["HX-Redirect"].startswith("/login")


def test_next_parameter_is_honoured_after_login(web, admin_user):
    response = web.post(
        "/login?next=/campaigns/%3Fx%3D1",
        {"email": "admin@example.com", "password": "admin-password"},
    )
    assert response.headers["Location"] == "/campaigns/?x=1"


@pytest.mark.parametrize(
    "target",
    [
        "https://evil.example/",
        "//evil.example/",
        "/\\evil.example/",
        "/\t/evil.example/",
        "javascript:alert(1)",
        "campaigns/",
    ],
)
def test_next_parameter_never_leads_to_another_site(web, admin_user, target):
    response = web.client.post(
        "/login",
        query_string={"next": target},
        data={
            "email": "admin@example.com",
            "password": "admin-password",
            "csrf_token": web.csrf_token(),
        },
    )
    assert response.status_code == 302
    assert response.headers["Location"] == "/"


@pytest.mark.parametrize("action", ["settings", "status"])
def test_staff_cannot_use_admin_only_posts(staff, campaigns, action):
    lead = campaigns["lead"]
    data = {"status": "paused", "weekdays": ["5"], "send_start": "10:00", "send_end": "11:00"}
    assert staff.post(f"/campaigns/{lead.id}/{action}", data).status_code == 403
    assert staff.post(f"/campaigns/{lead.id}/{action}", data, htmx=True).status_code == 403
    db.session.expire_all()
    assert lead.status == "active"
    assert lead.send_window_label == "Mon, Tue, Wed, Thu, Fri 09:00-17:00"
    assert lead.customized is False


def test_post_without_csrf_token_is_refused_with_an_explanation(admin, campaigns):
    lead = campaigns["lead"]
    response = admin.post(f"/campaigns/{lead.id}/status", {"status": "paused"}, csrf=False)
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert "out of date" in page and "CSRF session token" not in page
    assert "Nothing was saved" in page
    db.session.expire_all()
    assert db.session.get(Campaign, lead.id).status == "active"


def test_htmx_post_without_csrf_header_is_refused(admin, campaigns):
    lead = campaigns["lead"]
    response = admin.post(
        f"/campaigns/{lead.id}/status", {"status": "paused"}, htmx=True, csrf=False
    )
    assert response.status_code == 400
    # Never swapped into the panel it targeted: shown next to the action by
    # static/js/app.js (X-Action-Error), else in the page's alert area.
    assert response.headers["X-Action-Error"] and response.headers["HX-Retarget"] == "#htmx-alerts"
    assert "out of date" in response.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(Campaign, lead.id).status == "active"


def test_htmx_post_with_csrf_header_is_accepted(admin, campaigns):
    lead = campaigns["lead"]
    response = admin.post(f"/campaigns/{lead.id}/status", {"status": "paused"}, htmx=True)
    assert response.status_code == 200
    db.session.expire_all()
    assert db.session.get(Campaign, lead.id).status == "paused"


def test_login_form_itself_needs_the_csrf_token(web, admin_user):
    response = web.post(
        "/login", {"email": "admin@example.com", "password": "admin-password"}, csrf=False
    )
    assert response.status_code == 400
    assert web.get("/").status_code == 302


def test_expired_session_sends_the_user_back_to_login(app, admin, monkeypatch):
    monkeypatch.setitem(app.config, "PERMANENT_SESSION_LIFETIME", timedelta(minutes=5))
    assert admin.get("/campaigns/").status_code == 200
    # Ten minutes later, as far as the signed session cookie's timestamp check can tell.
    later = int(time.time()) + 600
    monkeypatch.setattr(TimestampSigner, "get_timestamp", lambda self: later)
    # The test's app context outlives requests, and Flask-Login caches the user on `g`.
    g.pop("_login_user", None)
    response = admin.get("/campaigns/")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login")


def test_head_on_a_confirm_page_asks_like_get_and_deletes_nothing(admin, campaigns, make_contact):
    """HEAD runs the GET view (Flask), and is no CSRF-checked method: a view that took
    "not GET" for a submitted form deleted on HEAD, from any link checker or page."""
    from crm_app.drip.campaigns.lifecycle import clone_campaign
    from crm_app.models import CampaignStep, Contact

    contact = make_contact("lead")
    unused = clone_campaign(db.session, campaigns["lead"], actor="test")  # no enrolment yet
    db.session.commit()
    step_id = unused.steps[0].id
    for url in (
        f"/contacts/{contact.id}/delete",
        f"/campaigns/{unused.id}/steps/{step_id}/delete",
        f"/campaigns/{unused.id}/delete",
    ):
        with admin._fresh_context():
            assert admin.client.head(url).status_code == 200, url
    db.session.expire_all()
    assert db.session.get(Contact, contact.id) is not None
    assert db.session.get(CampaignStep, step_id) is not None
    assert db.session.get(Campaign, unused.id) is not None
