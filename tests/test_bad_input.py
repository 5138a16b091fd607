"""Bad input on every state-changing route, walked from the url_map: a valid request
(the form its page shows, or the API's body) with one field at a time missing, empty,
blank, 10 KB long, with control characters, invalid UTF-8, emoji and right-to-left text,
HTML, numbers out of shape or range, given twice. No answer is a 500; a NUL is a 400;
a refused form keeps what was typed; a refused API call is a problem and writes nothing.

A route added later fails test_every_state_changing_route_is_walked until it is listed
here (its page, or why it is left to another test file)."""

from __future__ import annotations

import csv
import io
import json
from html.parser import HTMLParser
from urllib.parse import urlencode

import pytest
import sqlalchemy as sa
from flask import url_for
from markupsafe import escape

from crm_app.drip.audience.imports import create_import
from crm_app.models import ApiToken, ContactGoal, ContentBlock, Enrollment
from crm_app.models import Contact as ContactRow
from tests.api_helpers import make_token
from tests.conftest import make_user

STATE_CHANGING = {"POST", "PUT", "PATCH", "DELETE"}

# endpoint -> the page whose form posts to it (formatted with the seeded ids), or None:
# the route has no form fields of its own (a button), and gets a bare post and an
# unknown field.
FORM_PAGES: dict[str, str | None] = {
    "account.change_password": "/profile/password",
    "account.profile": "/profile",
    "account.set_password": None,
    "admin.message_action": None,
    "auth.login": "/login",
    "auth.logout": None,
    "blocks.delete": None,
    "blocks.edit": "/blocks/{block_id}/edit",
    "blocks.new": "/blocks/new",
    "campaigns.clone": None,
    "campaigns.delete": None,
    "campaigns.delete_step": None,
    "campaigns.edit": "/campaigns/{campaign_id}/edit",
    "campaigns.edit_step": "/campaigns/{campaign_id}/steps/{step_id}/edit",
    "campaigns.live_preview": "/campaigns/{campaign_id}/steps/{step_id}/edit",
    "campaigns.move_step_view": "/campaigns/{campaign_id}",
    "campaigns.new": "/campaigns/new",
    "campaigns.new_step": "/campaigns/{campaign_id}/steps/new",
    "campaigns.promote_variant": None,
    "campaigns.restore": None,
    "campaigns.save_condition": "/campaigns/{campaign_id}/steps/{step_id}/experiment",
    "campaigns.start_experiment": "/campaigns/{campaign_id}/steps/{step_id}/experiment",
    "campaigns.stop_experiment": None,
    "campaigns.test_send": "/campaigns/{campaign_id}/steps/{step_id}/preview",
    "campaigns.update_breaker_settings": "/campaigns/{campaign_id}",
    "campaigns.update_replies": "/campaigns/{campaign_id}",
    "campaigns.update_settings": "/campaigns/{campaign_id}",
    "campaigns.update_status": "/campaigns/{campaign_id}",
    "contacts.delete": None,
    "contacts.edit": "/contacts/{contact_id}/edit",
    "contacts.enroll": "/contacts/{contact_id}",
    "contacts.enroll_by_type": None,
    "contacts.erase": "/contacts/{contact_id}/erase",
    "contacts.export": None,
    "contacts.new": "/contacts/new",
    "contacts.record_goal": "/contacts/{contact_id}",
    "contacts.stop": None,
    "contacts.stop_all": None,
    "contacts_bulk.apply": None,
    "contacts_bulk.confirm": "/contacts/",
    "imports.resume": None,
    "imports.start": "/imports/{import_id}",
    "imports.upload": "/imports/",
    "integrations.edit_endpoint": "/admin/integrations/webhooks/{endpoint_id}",
    "integrations.new_endpoint": "/admin/integrations/",
    "integrations.new_secret": None,
    "integrations.new_token": "/admin/integrations/",
    "integrations.redeliver_event": None,
    "integrations.remove_endpoint": None,
    "integrations.revoke": None,
    "suppressions.add": "/suppressions/",
    "suppressions.remove": None,
    "unsubscribe.one_click": None,
    "users.create": "/users/",
    "users.edit": "/users/{user_id}",
    "users.password_link": None,
    "users.set_password": "/users/{user_id}",
    "users.toggle_active": "/users/{user_id}",
    "workspace.settings": "/settings",
}
# Routes whose input is not a person's form, each covered by its own tests.
ELSEWHERE = {
    "webhooks.sendgrid_events": "signed SendGrid events: test_webhook.py, test_nul_input.py",
    "webhooks.inbound_parse": "SendGrid Inbound Parse: test_replies.py, test_nul_input.py",
}
ELSEWHERE_PREFIXES = {
    "rq_dashboard.": "rq-dashboard's own views, mounted for admins: test_rq_dashboard.py",
    "api.": "the JSON API: test_the_api_answers_bad_json_without_a_500 below",
}

# Values for a path's own non-id arguments.
PATH_VALUES = {"action": "retry", "token": "not-a-token", "number": 1, "variant_id": 1,
               "delivery_id": 1}  # fmt: skip

EMOJI_RTL = "Zoë 😀 שלום עולם \u202eevil"
HTML = '<script>alert("x")</script>&amp;'
MUTATIONS: dict[str, str | list[str] | None] = {
    "missing": None,
    "empty": "",
    "blank": "   ",
    "10kb": "x" * 10_000,
    "control": "a\x01\x1b\x7fb",
    "nul": "a\x00b",
    "emoji_rtl": EMOJI_RTL,
    "html": HTML,
    "negative": "-1",
    "huge": str(2**63),
    "fraction": "1.5",
    "plus": "+1",
    "date": "2026-13-45",
    "twice": ["a", "b"],
}
KEPT = ("emoji_rtl", "html")  # a refused form shows them again
INVALID_UTF8 = b"a%ED%A0%80%FFb"  # a lone surrogate encoded, and a byte no UTF-8 has


class FormReader(HTMLParser):
    """The POST forms of a page: where each posts (its action, or the page; its hx-post)
    and the [name, value, kind] of each field a browser would send, kind "text" for
    what a person types."""

    TEXT_TYPES = {"", "text", "email", "url", "tel", "search", "number"}

    def __init__(self, page_url: str) -> None:
        super().__init__()
        self.page_url = page_url
        self.forms: list[dict] = []
        self._form: dict | None = None
        self._select: list | None = None
        self._textarea: list | None = None

    def handle_starttag(self, tag: str, attrs) -> None:
        a = dict(attrs)
        if tag == "form":
            post = (a.get("method") or "get").lower() == "post"
            action = a.get("action") or self.page_url
            self._form = {"targets": {action, a.get("hx-post") or action}, "fields": []}
            if post:
                self.forms.append(self._form)
            return
        name = a.get("name")
        if self._form is None or not name or name == "csrf_token":
            if tag == "option" and self._select is not None and self._form is not None:
                self._option(a)
            return
        fields = self._form["fields"]
        kind = (a.get("type") or "").lower()
        if tag == "input":
            if kind in ("checkbox", "radio") and "checked" not in a:
                return
            if kind in ("submit", "button", "image", "reset"):
                return
            label = "text" if kind in self.TEXT_TYPES else kind
            fields.append([name, a.get("value", ""), label])
        elif tag == "textarea":
            self._textarea = [name, "", "text"]
            fields.append(self._textarea)
        elif tag == "select":
            self._select = [name, None, "choice"]
            fields.append(self._select)

    def _option(self, a: dict) -> None:
        if self._select[1] is None or "selected" in a:
            self._select[1] = a.get("value", "")

    def handle_data(self, data: str) -> None:
        if self._textarea is not None:
            self._textarea[1] += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._form = None
        elif tag == "select":
            if self._select is not None and self._select[1] is None:
                self._select[1] = ""
            self._select = None
        elif tag == "textarea":
            self._textarea = None


def state_changing_endpoints(app) -> set[str]:
    return {
        rule.endpoint
        for rule in app.url_map.iter_rules()
        if rule.methods and rule.methods & STATE_CHANGING
    }


def test_every_state_changing_route_is_walked(app):
    left_out = {
        endpoint
        for endpoint in state_changing_endpoints(app)
        if endpoint not in FORM_PAGES
        and endpoint not in ELSEWHERE
        and not endpoint.startswith(tuple(ELSEWHERE_PREFIXES))
    }
    assert not left_out, f"add these routes to FORM_PAGES (or ELSEWHERE): {sorted(left_out)}"
    assert not set(FORM_PAGES) - state_changing_endpoints(app), "a listed route is gone"


@pytest.fixture
def world(app, session, make_contact, make_endpoint):
    """One of everything a route can name, and its ids."""
    contact = make_contact("lead", custom_fields={"plan": "pro"})
    enrollment = session.scalar(sa.select(Enrollment).where(Enrollment.contact_id == contact.id))
    block = ContentBlock(name="intro", default_content="Hello")
    session.add(block)
    staff = make_user("staff@example.com", "staff", "staff-password")
    make_token()
    endpoint = make_endpoint()
    contact_import = create_import(
        session, filename="contacts.csv", content=b"email,first_name\nada@example.com,Ada\n",
        actor="test", max_bytes=10_000,
    )  # fmt: skip
    session.commit()
    return {
        "contact_id": contact.id,
        "campaign_id": enrollment.campaign_id,
        "step_id": enrollment.campaign.steps[0].id,
        "enrollment_id": enrollment.id,
        "block_id": block.id,
        "user_id": staff.id,
        "token_id": session.scalar(sa.select(ApiToken.id)),
        "endpoint_id": endpoint.id,
        "import_id": contact_import.id,
        "message_id": 1,
        **PATH_VALUES,
    }


def _url(app, endpoint: str, ids: dict) -> str:
    (rule,) = [r for r in app.url_map.iter_rules() if r.endpoint == endpoint]
    with app.test_request_context():
        return url_for(endpoint, **{name: ids[name] for name in rule.arguments})


def _valid_form(admin, page: str | None, url: str) -> list[list[str]]:
    if page is None:
        return []
    response = admin.get(page)
    assert response.status_code == 200, page
    reader = FormReader(page)
    reader.feed(response.get_data(as_text=True))
    forms = [form for form in reader.forms if url in {t.split("?")[0] for t in form["targets"]}]
    assert forms, f"no form on {page} posts to {url}"
    return forms[0]["fields"]


def _post(admin, url: str, fields: list[list[str]], name: str, value) -> object:
    data: dict[str, list] = {}
    for field, field_value, _ in fields:
        if field != name:
            data.setdefault(field, []).append(field_value)
    if isinstance(value, bytes):  # bytes no browser would send as UTF-8
        data["csrf_token"] = [admin.csrf_token()]
        body = urlencode(data, doseq=True) + f"&{name}=" + value.decode()
        with admin._fresh_context():
            return admin.client.post(
                url, data=body, content_type="application/x-www-form-urlencoded"
            )
    if value is not None:
        data[name] = value
    return admin.post(url, data)


@pytest.mark.parametrize("endpoint", sorted(FORM_PAGES))
def test_no_bad_value_in_any_form_field_is_a_500(app, admin, world, endpoint, monkeypatch):
    monkeypatch.setitem(app.config, "PROPAGATE_EXCEPTIONS", False)  # a 500, as in production
    page = FORM_PAGES[endpoint]
    url = _url(app, endpoint, world)
    fields = _valid_form(admin, page and page.format(**world), url)
    names = {name: kind for name, _, kind in fields} or {"unknown_field": "unknown"}
    refused = []
    for name, kind in names.items():
        for label, value in [*MUTATIONS.items(), ("invalid_utf8", INVALID_UTF8)]:
            response = _post(admin, url, fields, name, value)
            status, page_text = response.status_code, response.get_data(as_text=True)
            if status >= 500 or (label == "nul" and status != 400):
                refused.append((name, label, status))
            elif status == 422 and kind == "text" and label in KEPT:
                # The form shown again, with this field, but not with what was typed.
                shown = f'name="{name}"' in page_text
                if shown and str(escape(value)) not in page_text:
                    refused.append((name, label, "422 without the typed value"))
    assert not refused, refused


# --- the JSON API -------------------------------------------------------------------

JSON_VALUES = {
    "null": None, "empty": "", "blank": "  ", "10kb": "x" * 10_000, "control": "a\x01\x7fb",
    "emoji_rtl": EMOJI_RTL, "html": HTML, "negative": -1, "zero": 0, "huge": 2**63,
    "huger": 10**40, "fraction": 1.5, "string": "abc", "plus": "+1", "list": [1],
    "object": {"a": 1}, "true": True, "lone_surrogate": "a\ud800b",
}  # fmt: skip
WRONG_BODIES = ["[]", '"x"', "1", "null", "{", '{"a": "\\ud800"}', "\ufeff{}"]
CONTACT = {"email": "ada@example.com", "contact_type": "lead", "first_name": "Ada",
           "last_name": "Lovelace", "phone": "+44 1", "company": "Engines", "title": "Countess",
           "industry": "Maths", "timezone": "UTC", "notes": "n", "owner_id": None,
           "custom_fields": {"plan": "pro"}}  # fmt: skip


def _api_calls(ids: dict) -> list[tuple[str, str, dict]]:
    contact = f"/api/v1/contacts/{ids['contact_id']}"
    return [
        ("POST", "/api/v1/contacts", CONTACT),
        ("PATCH", contact, {k: v for k, v in CONTACT.items() if k != "email"}),
        ("POST", f"{contact}/enrollments", {"campaign_id": ids["campaign_id"], "restart": False}),
        ("POST", f"{contact}/goals", {"name": "demo booked"}),
        ("POST", f"{contact}/type", {"contact_type": "client"}),
        ("POST", f"{contact}/stop-all", {"reason": "asked"}),
        ("POST", f"/api/v1/enrollments/{ids['enrollment_id']}/stop", {"reason": "asked"}),
    ]


def _written(session, contact_id: int) -> tuple:
    session.expire_all()
    contact = session.get(ContactRow, contact_id)
    return (
        session.scalar(sa.select(sa.func.count(ContactRow.id))),
        session.scalar(sa.select(sa.func.count(ContactGoal.id))),
        tuple(session.execute(sa.select(Enrollment.id, Enrollment.status)).all()),
        contact.updated_at,
    )


def test_the_api_answers_bad_json_without_a_500(app, api, session, world, monkeypatch):
    monkeypatch.setitem(app.config, "PROPAGATE_EXCEPTIONS", False)
    monkeypatch.setitem(app.config, "API_RATE_LIMIT", "100000 per minute")
    wrong = []
    for method, url, valid in _api_calls(world):
        bodies = [
            (f"{field}={label}", json.dumps({**valid, field: value}))
            for field in [*valid, "unknown_field"]
            for label, value in JSON_VALUES.items()
        ]
        bodies += [
            (f"without {field}", json.dumps({k: v for k, v in valid.items() if k != field}))
            for field in valid
        ]
        bodies += [(f"body {body!r}", body) for body in WRONG_BODIES]
        for label, body in bodies:
            before = _written(session, world["contact_id"])
            response = api.request(method, url, data=body, content_type="application/json")
            status = response.status_code
            if status >= 500:
                wrong.append((method, url, label, status))
            elif status >= 400:
                if response.content_type != "application/problem+json":
                    wrong.append((method, url, label, "not a problem"))
                elif _written(session, world["contact_id"]) != before:
                    wrong.append((method, url, label, "refused, yet written"))
    assert not wrong, wrong


# --- what was accepted shows, and saves again unchanged -------------------------------

ACCEPTED = {
    "first_name": "Zoë 😀",
    "last_name": "שלום עולם",
    "company": HTML,
    "title": "\u202eevil title",
    "notes": "\n".join(["Met at the fair 😀; <b>call back</b>."] * 26)[:1000],
    "custom_fields": {"plan": EMOJI_RTL, "html_bit": HTML},
}


def _browser_form(fields: list[list[str]]) -> dict[str, list[str]]:
    """The form as a browser posts it: a textarea's line breaks as CRLF."""
    data: dict[str, list[str]] = {}
    for name, value, kind in fields:
        sent = value.replace("\n", "\r\n") if kind == "text" else value
        data.setdefault(name, []).append(sent)
    return data


def test_what_the_api_accepts_shows_and_saves_again_unchanged(api, admin, campaigns):
    created = api.post(
        "/api/v1/contacts", {"email": "zoe@example.com", "contact_type": "lead", **ACCEPTED}
    )
    assert created.status_code == 201, created.get_json()
    contact_id = created.get_json()["id"]
    step = campaigns["lead"].steps[0]
    pages = [
        f"/contacts/{contact_id}",
        "/contacts/?q=zoe",
        f"/campaigns/{step.campaign_id}/steps/{step.id}/preview?contact_id={contact_id}",
    ]
    for url in pages:
        page = admin.get(url).get_data(as_text=True)
        assert str(escape("Zoë 😀")) in page, url
        assert HTML not in page  # escaped everywhere
    detail = admin.get(f"/contacts/{contact_id}").get_data(as_text=True)
    for shown in (ACCEPTED["last_name"], HTML, EMOJI_RTL, "Met at the fair 😀"):
        assert str(escape(shown)) in detail, shown
    export = admin.get("/contacts/export.csv").get_data(as_text=True)
    (row,) = csv.DictReader(io.StringIO(export.removeprefix("\ufeff")))
    for name in ("first_name", "last_name", "company", "title", "notes"):
        assert row[name] == ACCEPTED[name], name
    assert set(ACCEPTED["custom_fields"].values()) <= set(row.values())

    edit = f"/contacts/{contact_id}/edit"
    saved = admin.post(edit, _browser_form(_valid_form(admin, edit, edit)))

    assert saved.status_code == 302, saved.get_data(as_text=True)
    after = api.get(f"/api/v1/contacts/{contact_id}").get_json()
    before = created.get_json()
    for name in ("email", "contact_type", "timezone", *ACCEPTED):
        assert after[name] == before[name], name
