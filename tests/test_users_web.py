"""The Users page (admins): add, edit, disable and re-enable, roles, one-time
set-password links, an admin setting a password; everyone's profile and password."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
import sqlalchemy as sa

from crm_app.extensions import db
from crm_app.models import PasswordLink, User
from tests.conftest import WebClient

STRONG = "violet-harbour-lamp"
LINK = re.compile(r'value="http://localhost(/set-password/[^"]+)"')


def _user(email: str) -> User:
    db.session.expire_all()
    return db.session.scalar(sa.select(User).where(User.email == email))


def _add(admin, **fields):
    data = {"name": "Dana Reyes", "email": "dana@example.com", "role": "staff"} | fields
    return admin.post("/users/", data)


def test_staff_cannot_see_or_use_the_users_pages(staff, staff_user):
    assert staff.get("/users/").status_code == 403
    assert _add(staff, password_mode="set", password=STRONG).status_code == 403
    assert staff.post(f"/users/{staff_user.id}", {"role": "admin"}).status_code == 403
    assert _user("dana@example.com") is None


def test_an_admin_adds_a_user_who_sets_a_password_from_the_one_time_link(app, admin):
    response = _add(admin, password_mode="link")
    assert response.status_code == 201
    page = response.get_data(as_text=True)
    path = LINK.search(page).group(1)
    dana = _user("dana@example.com")
    assert dana.role == "staff" and dana.name == "Dana Reyes"
    # Only the hash is stored: the page's secret is nowhere in the database.
    token = path.rsplit("/", 1)[1]
    assert token not in db.session.scalar(sa.select(PasswordLink.token_hash))

    newcomer = WebClient(app.test_client())
    assert "For <strong>dana@example.com</strong>" in newcomer.get(path).get_data(as_text=True)
    done = newcomer.post(path, {"password": STRONG, "password_confirm": STRONG})
    assert done.status_code == 302
    # The address is no part of the URL (it would stay in logs and the history).
    assert done.headers["Location"] == "/login"
    assert "Your password is set. Log in with it now." in newcomer.get("/login").text
    newcomer.login("dana@example.com", STRONG)
    assert newcomer.get("/").status_code == 200


def test_a_link_works_once(app, admin):
    path = LINK.search(_add(admin).get_data(as_text=True)).group(1)
    newcomer = WebClient(app.test_client())
    newcomer.post(path, {"password": STRONG, "password_confirm": STRONG})
    again = newcomer.post(
        path, {"password": "amber-quarry-socks", "password_confirm": "amber-quarry-socks"}
    )
    assert again.status_code == 404
    assert "expired or was already used" in again.get_data(as_text=True)
    assert _user("dana@example.com").check_password(STRONG)


def test_an_expired_link_is_refused(app, admin):
    path = LINK.search(_add(admin).get_data(as_text=True)).group(1)
    link = db.session.scalar(sa.select(PasswordLink))
    link.expires_at = link.created_at - timedelta(seconds=1)
    db.session.commit()
    response = WebClient(app.test_client()).get(path)
    assert response.status_code == 404
    assert "Ask an admin for a new one" in response.get_data(as_text=True)


def test_a_new_link_replaces_the_previous_one(app, admin):
    first = LINK.search(_add(admin).get_data(as_text=True)).group(1)
    dana = _user("dana@example.com")
    second = LINK.search(
        admin.post(f"/users/{dana.id}/password-link").get_data(as_text=True)
    ).group(1)
    newcomer = WebClient(app.test_client())
    assert newcomer.get(first).status_code == 404
    assert newcomer.get(second).status_code == 200


def test_a_weak_password_on_the_link_page_is_refused_next_to_the_field(app, admin):
    path = LINK.search(_add(admin).get_data(as_text=True)).group(1)
    response = WebClient(app.test_client()).post(
        path, {"password": "password", "password_confirm": "password"}
    )
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert 'id="error-password"' in page and "at least 12 characters" in page
    assert db.session.scalar(sa.select(PasswordLink.used_at)) is None  # still usable


def test_an_admin_sets_the_password_when_adding(web, admin):
    assert _add(admin, password_mode="set", password=STRONG).status_code == 302
    dana = WebClient(web.client.application.test_client())
    dana.login("dana@example.com", STRONG)


@pytest.mark.parametrize(
    ("password", "message"),
    [("password", "at least 12 characters"), ("qwerty123456", "too common")],
)
def test_the_users_page_refuses_a_weak_password_and_keeps_the_form(admin, password, message):
    response = _add(admin, password_mode="set", password=password)
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert message in page
    assert 'value="dana@example.com"' in page and 'value="Dana Reyes"' in page
    assert _user("dana@example.com") is None


@pytest.mark.parametrize("name", ["", "  \n "])
def test_a_user_without_a_name_is_refused_as_on_the_profile(admin, name):
    response = _add(admin, name=name, password_mode="set", password=STRONG)
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert 'id="error-name"' in page and "Enter a name: it signs the emails" in page
    assert _user("dana@example.com") is None


def test_a_duplicate_or_bad_email_is_refused_next_to_the_field(admin):
    assert _add(admin, email="ADMIN@example.com").status_code == 422
    response = _add(admin, email="not an address")
    assert response.status_code == 422
    assert 'id="error-email"' in response.get_data(as_text=True)


def test_an_admin_edits_a_user_and_sets_their_role(admin, staff_user):
    data = {
        "email": "robin@example.com",
        "role": "admin",
        "name": "Robin Hale",
        "title": "Account Director",
        "timezone": "Asia/Tokyo",
    }
    assert admin.post(f"/users/{staff_user.id}", data).status_code == 302
    robin = _user("robin@example.com")
    assert (robin.role, robin.name, robin.title, robin.timezone) == (
        "admin",
        "Robin Hale",
        "Account Director",
        "Asia/Tokyo",
    )


def test_the_last_admin_cannot_be_demoted_or_disable_themselves(admin, admin_user):
    data = {"email": "admin@example.com", "role": "staff", "name": "Admin", "timezone": "UTC"}
    response = admin.post(f"/users/{admin_user.id}", data)
    assert response.status_code == 422
    assert "only active admin" in response.get_data(as_text=True)
    refused = admin.post(f"/users/{admin_user.id}/active", {"active": "0"})
    assert refused.status_code == 422
    assert "cannot disable your own account" in refused.get_data(as_text=True)
    assert _user("admin@example.com").is_admin and _user("admin@example.com").is_active_user


def test_an_admin_sets_a_password_for_someone(app, admin, staff_user):
    response = admin.post(
        f"/users/{staff_user.id}/password", {"password": STRONG, "password_confirm": STRONG}
    )
    assert response.status_code == 302
    WebClient(app.test_client()).login("staff@example.com", STRONG)


def test_an_admin_setting_their_own_password_stays_logged_in(admin, admin_user):
    response = admin.post(
        f"/users/{admin_user.id}/password", {"password": STRONG, "password_confirm": STRONG}
    )
    assert response.status_code == 302
    assert admin.get("/users/").status_code == 200


def test_everyone_edits_their_own_profile(staff, staff_user):
    data = {
        "name": "Robin Hale",
        "title": "Account Director",
        "phone": "+1 555 0142",
        "timezone": "America/New_York",
        "from_name": "Robin at Northwind",
        "signature": "Robin Hale\r\nAccount Director\r\nNorthwind",
        "role": "admin",  # not theirs to change: ignored
    }
    assert staff.post("/profile", data).status_code == 302
    robin = _user("staff@example.com")
    assert robin.timezone == "America/New_York" and robin.from_name == "Robin at Northwind"
    assert robin.signature == "Robin Hale\nAccount Director\nNorthwind"
    assert robin.role == "staff"
    page = staff.get("/profile").get_data(as_text=True)
    assert "Robin at Northwind &lt;hello@example.com&gt;" in page
    assert "Robin Hale<br>\nAccount Director<br>\nNorthwind" in page


def test_a_bad_time_zone_is_refused_and_nothing_is_lost(staff):
    data = {"name": "Robin Hale", "title": "Director", "timezone": "Mars/Olympus"}
    response = staff.post("/profile", data)
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert 'id="error-timezone"' in page
    assert 'value="Director"' in page and 'value="Mars/Olympus"' in page


def test_changing_your_password_needs_the_current_one_and_the_policy(staff, staff_user):
    wrong = staff.post(
        "/profile/password",
        {"current_password": "nope", "password": STRONG, "password_confirm": STRONG},
    )
    assert wrong.status_code == 422
    assert "not your current password" in wrong.get_data(as_text=True)
    weak = staff.post(
        "/profile/password",
        {
            "current_password": "staff-password",
            "password": "staff@example.com-1",
            "password_confirm": "staff@example.com-1",
        },
    )
    assert weak.status_code == 422
    assert "name or email address" in weak.get_data(as_text=True)
    mismatch = staff.post(
        "/profile/password",
        {"current_password": "staff-password", "password": STRONG, "password_confirm": "other"},
    )
    assert 'id="error-password_confirm"' in mismatch.get_data(as_text=True)
    assert _user("staff@example.com").check_password("staff-password")


def test_changing_your_own_password_ends_a_set_password_link(app, admin, staff, staff_user):
    # `admin` and `staff` share one browser: the admin hands out the link first.
    admin.login()
    path = LINK.search(
        admin.post(f"/users/{staff_user.id}/password-link").get_data(as_text=True)
    ).group(1)
    staff.login("staff@example.com", "staff-password")
    changed = staff.post(
        "/profile/password",
        {"current_password": "staff-password", "password": STRONG, "password_confirm": STRONG},
    )
    assert changed.status_code == 302

    stranger = WebClient(app.test_client())
    assert stranger.get(path).status_code == 404
    reset = stranger.post(
        path, {"password": "amber-quarry-socks", "password_confirm": "amber-quarry-socks"}
    )
    assert reset.status_code == 404
    assert _user("staff@example.com").check_password(STRONG)


def test_the_viewers_time_zone_is_your_time_on_the_contact_panel(staff, make_contact):
    assert staff.post("/profile", {"name": "Staff", "timezone": "Asia/Tokyo"}).status_code == 302
    contact = make_contact("lead", timezone="America/New_York")
    page = staff.get(f"/contacts/{contact.id}").get_data(as_text=True)
    next_send = " ".join(page.split('class="next-send"')[1].split("</td>")[0].split())
    assert re.search(r"E[SD]T <span class=\"muted\">contact's time</span>", next_send)
    assert re.search(r"JST <span class=\"muted\">your time</span>", next_send)
