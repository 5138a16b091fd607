"""Sessions that can be revoked (issue 9 item 4): a copied cookie is refused after
logout, a new password or a disabled account ends every session, and login starts a
new session with a new CSRF token."""

from __future__ import annotations

import time
from datetime import timedelta

from flask import g
from itsdangerous import TimestampSigner

from crm_app.extensions import db
from crm_app.models import User
from crm_app.web import session_cookie
from tests.conftest import WebClient

STRONG = "violet-harbour-lamp"


def _session_cookie(web: WebClient) -> str:
    cookie = web.client.get_cookie("session")
    assert cookie is not None
    return cookie.value


def _replay(app, cookie: str) -> WebClient:
    """A fresh browser that only has the copied cookie."""
    thief = WebClient(app.test_client())
    thief.client.set_cookie("session", cookie)
    return thief


def test_a_cookie_copied_before_logout_is_refused_after_it(app, admin):
    copied = _session_cookie(admin)
    assert _replay(app, copied).get("/").status_code == 200  # the copy works while logged in

    assert admin.logout().status_code == 302

    response = _replay(app, copied).get("/")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login")


def test_logout_ends_the_sessions_on_every_device(app, admin_user):
    laptop, phone = WebClient(app.test_client()), WebClient(app.test_client())
    laptop.login()
    phone.login()
    laptop.logout()
    assert phone.get("/").status_code == 302


def test_changing_the_password_ends_other_sessions_but_keeps_this_one(app, staff, staff_user):
    other_device = WebClient(app.test_client())
    other_device.login("staff@example.com", "staff-password")
    copied = _session_cookie(staff)

    response = staff.post(
        "/profile/password",
        {"current_password": "staff-password", "password": STRONG, "password_confirm": STRONG},
    )
    assert response.status_code == 302
    assert staff.get("/").status_code == 200  # renewed, still logged in
    assert other_device.get("/").status_code == 302
    assert _replay(app, copied).get("/").status_code == 302


def test_disabling_a_user_ends_their_session_at_once(app, admin, staff_user):
    staff = WebClient(app.test_client())
    staff.login("staff@example.com", "staff-password")
    assert staff.get("/contacts/").status_code == 200

    response = admin.post(f"/users/{staff_user.id}/active", {"active": "0"})
    assert response.status_code == 302

    assert staff.get("/contacts/").status_code == 302
    refused = staff.post("/login", {"email": "staff@example.com", "password": "staff-password"})
    assert refused.status_code == 401
    assert "disabled" in refused.get_data(as_text=True)


def test_a_re_enabled_user_logs_in_again_but_old_cookies_stay_dead(app, admin, staff_user):
    staff = WebClient(app.test_client())
    staff.login("staff@example.com", "staff-password")
    copied = _session_cookie(staff)
    admin.post(f"/users/{staff_user.id}/active", {"active": "0"})
    admin.post(f"/users/{staff_user.id}/active", {"active": "1"})

    assert _replay(app, copied).get("/").status_code == 302
    staff.login("staff@example.com", "staff-password")
    assert staff.get("/").status_code == 200


def test_login_renews_the_session_and_its_csrf_token(web, admin_user):
    before_login = web.csrf_token()
    cookie_before = _session_cookie(web)
    web.login()
    assert web.csrf_token() != before_login
    assert _session_cookie(web) != cookie_before


def test_logout_drops_the_csrf_token(admin):
    before = admin.csrf_token()
    admin.logout()
    assert admin.csrf_token() != before


def test_a_session_from_before_session_versions_is_refused(app, admin_user):
    """Cookies that carry only the user id (the format before) must not log anyone in."""
    web = WebClient(app.test_client())
    with web.client.session_transaction() as session:
        session["_user_id"] = str(admin_user.id)
        session["_fresh"] = True
    assert web.get("/").status_code == 302


def test_the_session_carries_the_users_current_version(admin, admin_user):
    with admin.client.session_transaction() as session:
        stored = session["_user_id"]
    db.session.expire_all()
    user = db.session.get(User, admin_user.id)
    assert stored == f"{user.id}:{user.session_version}"


class _Clock:
    """The time both the cookie signer and the session interface read, moved by hand."""

    def __init__(self, monkeypatch) -> None:
        self.now = time.time()
        monkeypatch.setattr(TimestampSigner, "get_timestamp", lambda signer: int(self.now))
        monkeypatch.setattr(session_cookie.time, "time", lambda: self.now)


def _request_again(web: WebClient, path: str = "/"):
    g.pop("_login_user", None)  # the test's app context outlives requests
    return web.client.get(path)


def test_an_unchanged_session_is_signed_again_only_once_its_cookie_is_a_minute_old(
    app, admin, monkeypatch
):
    clock = _Clock(monkeypatch)
    admin.get("/")  # the cookie as of now
    first = _session_cookie(admin)
    clock.now += 30
    response = _request_again(admin)
    assert response.status_code == 200
    assert "Set-Cookie" not in response.headers
    assert _session_cookie(admin) == first

    clock.now += app.config["SESSION_REFRESH_SECONDS"]
    response = _request_again(admin)
    assert response.status_code == 200
    assert "session=" in response.headers["Set-Cookie"]
    assert _session_cookie(admin) != first


def test_a_session_in_use_outlives_its_lifetime_and_an_idle_one_ends(app, admin, monkeypatch):
    monkeypatch.setitem(app.config, "PERMANENT_SESSION_LIFETIME", timedelta(minutes=5))
    clock = _Clock(monkeypatch)
    admin.get("/")
    for _ in range(3):  # twelve minutes of use, a request every four
        clock.now += 240
        assert _request_again(admin).status_code == 200
    clock.now += 301  # then five minutes idle
    response = _request_again(admin)
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login")


def test_a_changed_session_is_sent_at_once(app, admin, monkeypatch):
    _Clock(monkeypatch)
    admin.get("/")
    # Logging out changes the session within the refresh interval: its cookie goes at once.
    response = admin.logout()
    assert "session=" in response.headers["Set-Cookie"]


def test_a_form_posted_after_logout_on_another_device_leads_back_to_its_page(app, admin_user):
    laptop, phone = WebClient(app.test_client()), WebClient(app.test_client())
    laptop.login()
    phone.login()
    token = phone.csrf_token()  # the form's token, from before the logout elsewhere
    laptop.logout()
    with phone._fresh_context():
        response = phone.client.post(
            "/profile",
            data={"csrf_token": token, "name": "Typed for half an hour", "timezone": "UTC"},
            headers={"Referer": "http://localhost/profile"},
        )
    assert response.status_code == 302
    assert response.headers["Location"] == "/login?next=/profile"
    page = phone.get(response.headers["Location"]).get_data(as_text=True)
    assert "You were signed out; sign in again." in page
    assert db.session.get(User, admin_user.id).name != "Typed for half an hour"
