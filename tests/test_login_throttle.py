"""Failed logins are throttled by account and by address, with a clear message, and the
throttle lifts once its window has passed (Flask-Limiter on the test run's real Redis)."""

from __future__ import annotations

import time

import pytest
import redis

from crm_app.drip.team.users import NewUser, create_user
from crm_app.extensions import db

WINDOW_SECONDS = 2


@pytest.fixture
def short_limits(app, monkeypatch):
    monkeypatch.setitem(app.config, "LOGIN_LIMIT_PER_ACCOUNT", f"3 per {WINDOW_SECONDS} seconds")
    monkeypatch.setitem(app.config, "LOGIN_LIMIT_PER_ADDRESS", f"5 per {WINDOW_SECONDS} seconds")


def attempt(web, email, password, address="198.51.100.7"):
    return web.post(
        "/login", {"email": email, "password": password}, environ_base={"REMOTE_ADDR": address}
    )


def test_an_account_is_paused_after_3_failures_even_for_the_right_password(
    web, admin_user, short_limits
):
    for n in range(3):  # each from another address: the account's own limit counts them
        assert attempt(web, "admin@example.com", "guess", f"203.0.113.{n}").status_code == 401
    refused = attempt(web, "Admin@Example.com", "admin-password", "203.0.113.99")
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["Retry-After"]) <= WINDOW_SECONDS
    page = refused.get_data(as_text=True)
    assert "Too many failed logins for this account" in page
    assert "try again in 1 minute" in page
    assert 'role="alert"' in page and "Log in to Drip CRM" in page  # the form, with the message


def test_other_spellings_of_an_address_count_for_the_same_account(web, short_limits):
    create_user(
        db.session, NewUser("bob@bücher.ch", "Bob", "staff", "x-ray-violet-lamp"), actor="t"
    )
    db.session.commit()
    spellings = ["bob@bücher.ch", "bob@xn--bcher-kva.ch", "BOB@XN--BCHER-KVA.CH"]
    for n, spelling in enumerate(spellings):
        assert attempt(web, spelling, "guess", f"203.0.113.{n}").status_code == 401
    refused = attempt(web, "bob@bücher.ch", "x-ray-violet-lamp", "203.0.113.99")
    assert refused.status_code == 429


def test_the_account_recovers_once_the_window_has_passed(web, admin_user, short_limits):
    for _ in range(3):
        attempt(web, "admin@example.com", "guess")
    assert attempt(web, "admin@example.com", "admin-password").status_code == 429
    time.sleep(WINDOW_SECONDS + 0.5)
    assert attempt(web, "admin@example.com", "admin-password").status_code == 302


def test_one_address_trying_many_accounts_is_paused(web, admin_user, short_limits):
    for n in range(5):
        assert attempt(web, f"nobody{n}@example.com", "guess").status_code == 401
    refused = attempt(web, "admin@example.com", "admin-password")
    assert refused.status_code == 429
    assert "from your network address" in refused.get_data(as_text=True)
    # Another address is not affected, and neither is the account itself from there.
    assert attempt(web, "admin@example.com", "admin-password", "192.0.2.1").status_code == 302


def test_successful_logins_do_not_count(web, admin_user, short_limits):
    for _ in range(6):
        answer = attempt(web, "admin@example.com", "admin-password")
        assert answer.status_code == 302
        assert "Retry-After" not in answer.headers  # only a refusal says to wait


def test_the_default_limits_allow_a_few_typos_then_stop_a_brute_force(web, admin_user):
    statuses = [attempt(web, "admin@example.com", f"guess{n}").status_code for n in range(11)]
    assert statuses == [401] * 10 + [429]


def test_the_counters_live_in_the_apps_redis_shared_by_every_web_process(web, app, admin_user):
    attempt(web, "admin@example.com", "guess")
    keys = redis.Redis.from_url(app.config["REDIS_URL"]).keys("LIMITS*")
    assert any(b"login-account:" in key for key in keys)
    assert any(b"login-address:198.51.100.7" in key for key in keys)
    assert not any(b"admin@example.com" in key for key in keys)  # hashed, not stored


def change_password(web, current, new="violet-harbour-lamp", confirm=None):
    return web.post(
        "/profile/password",
        {"current_password": current, "password": new, "password_confirm": confirm or new},
    )


def test_wrong_current_passwords_are_throttled_like_failed_logins(staff, short_limits):
    # A mistake in the new password is no guess: it does not count.
    for _ in range(3):
        assert change_password(staff, "staff-password", "short").status_code == 422
    for _ in range(3):
        assert change_password(staff, "guess").status_code == 422
    refused = change_password(staff, "staff-password")  # even the right one waits now
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["Retry-After"]) <= WINDOW_SECONDS
    page = refused.get_data(as_text=True)
    assert "Too many wrong current passwords for this account" in page
    assert "changing your password is paused: try again in 1 minute" in page
    assert "Change your password" in page  # the form, with the message
    time.sleep(WINDOW_SECONDS + 0.5)
    assert change_password(staff, "staff-password").status_code == 302
