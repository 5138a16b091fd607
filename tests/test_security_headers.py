"""Security headers on public and authenticated pages; no inline script in any template."""

from __future__ import annotations

import re

import pytest

from crm_app import create_app
from crm_app.drip.audience.unsubscribe import make_unsubscribe_token
from tests.conftest import ROOT

EVERY_RESPONSE = {
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
}


def directives(response) -> dict[str, str]:
    policy = response.headers["Content-Security-Policy"]
    parts = (part.strip().split(" ", 1) for part in policy.split(";"))
    return {name: (rest[0] if rest else "") for name, *rest in parts}


def assert_protected(response) -> None:
    for name, value in EVERY_RESPONSE.items():
        assert response.headers[name] == value, name
    assert "camera=()" in response.headers["Permissions-Policy"]
    policy = directives(response)
    assert policy["default-src"] == "'self'"
    # Script only from our own files: no inline script, no eval, no nonce needed.
    assert policy["script-src"] == "'self'"
    assert policy["frame-ancestors"] == "'none'"
    assert policy["object-src"] == "'none'" and policy["base-uri"] == "'none'"
    assert response.headers["Cache-Control"] == "no-store"


def test_public_login_page_carries_every_header(web):
    response = web.get("/login")
    assert response.status_code == 200
    assert_protected(response)
    assert "Strict-Transport-Security" not in response.headers  # not configured


def test_authenticated_pages_carry_every_header_and_are_never_cached(admin, make_contact):
    contact = make_contact("lead")
    for url in ("/", "/contacts/", f"/contacts/{contact.id}", "/campaigns/", "/analytics/"):
        response = admin.get(url)
        assert response.status_code == 200, url
        assert_protected(response)


def test_the_unsubscribe_page_shows_an_address_so_it_is_not_cached_either(web, make_contact):
    contact = make_contact("lead", email="private@example.com")
    response = web.get(f"/unsubscribe/{make_unsubscribe_token(contact.id, contact.email)}")
    assert b"private@example.com" in response.data
    assert_protected(response)


def test_error_pages_and_json_carry_the_headers_too(web):
    assert_protected(web.get("/no-such-page"))
    assert_protected(web.get("/health"))


def test_static_files_stay_cacheable(web):
    response = web.get("/static/css/app.css")
    assert response.status_code == 200
    assert response.headers.get("Cache-Control") != "no-store"
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_hsts_is_sent_over_https_only_when_configured(web, app, monkeypatch):
    monkeypatch.setitem(app.config, "HSTS_SECONDS", 31536000)
    secure = web.get("/login", base_url="https://localhost")
    assert secure.headers["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains"
    plain = web.get("/login")
    assert "Strict-Transport-Security" not in plain.headers  # RFC 6797 7.2


@pytest.fixture
def app_behind_one_proxy(_migrated_app):
    config = {**_migrated_app.config, "TRUSTED_PROXY_COUNT": 1, "HSTS_SECONDS": 600}
    return create_app({k: v for k, v in config.items() if k.isupper()})


def test_behind_a_trusted_proxy_the_forwarded_scheme_and_address_count(app_behind_one_proxy):
    forwarded = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.9"}
    with app_behind_one_proxy.test_client() as client:
        response = client.get("/login", headers=forwarded)
        assert response.headers["Strict-Transport-Security"] == "max-age=600; includeSubDomains"
        from flask import request

        assert request.remote_addr == "203.0.113.9"


def test_without_a_trusted_proxy_forwarded_headers_are_ignored(web, app, monkeypatch):
    monkeypatch.setitem(app.config, "HSTS_SECONDS", 600)
    response = web.get("/login", headers={"X-Forwarded-Proto": "https"})
    assert "Strict-Transport-Security" not in response.headers


# An inline <script> (without src, other than a JSON data block), an on*= handler, or
# htmx's hx-on (htmx compiles it with eval, which the policy refuses).
INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)(?![^>]*application/json)[^>]*>", re.I)
INLINE_HANDLER = re.compile(r"""\s(?:data-)?(?:hx-)?on[a-z:-]*\s*=\s*["']""", re.I)


def test_no_template_of_ours_has_inline_script_or_event_handlers():
    offenders = []
    for path in sorted((ROOT / "templates").rglob("*.html")):
        if path.relative_to(ROOT / "templates").parts[0] == "rq_dashboard":
            continue  # its own inline script runs by nonce (test_rq_dashboard.py)
        text = path.read_text()
        if INLINE_SCRIPT.search(text) or INLINE_HANDLER.search(text):
            offenders.append(str(path.relative_to(ROOT)))
    assert offenders == [], "move the script to static/js (our CSP refuses it)"
