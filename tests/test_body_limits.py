"""Request bodies have limits, enforced before they are read; contact fields have sizes."""

from __future__ import annotations

import io

import pytest
import sqlalchemy as sa
from markupsafe import escape
from werkzeug.test import EnvironBuilder, run_wsgi_app

from crm_app.drip.audience.contacts import (
    CUSTOM_FIELD_NAME_MAX,
    CUSTOM_FIELD_VALUE_MAX,
    MAX_CUSTOM_FIELDS,
    TEXT_FIELDS,
    ContactInput,
    ContactValidationError,
    create_contact,
)
from crm_app.models import Contact
from tests.webhook_signing import WebhookSigner, encode

MB = 1_000_000


class UnreadableBody(io.RawIOBase):
    """A body that must not be read at all: reading it fails the test."""

    bytes_read = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        raise AssertionError("the body was read")


class EndlessBody(io.RawIOBase):
    """A chunked upload that never ends: counts what the app reads of it."""

    def __init__(self) -> None:
        self.bytes_read = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        buffer[:] = b"[" * len(buffer)
        self.bytes_read += len(buffer)
        return len(buffer)


def send_raw(app, path, body, *, content_length=None, content_type="application/json", **kw):
    """POST through the WSGI app with our own input stream and Content-Length (or none:
    a chunked body, which the server marks wsgi.input_terminated)."""
    environ = EnvironBuilder(
        path=path, method="POST", content_type=content_type, **kw
    ).get_environ()
    environ["wsgi.input"] = body
    if content_length is None:
        environ.pop("CONTENT_LENGTH", None)
        environ["HTTP_TRANSFER_ENCODING"] = "chunked"
        environ["wsgi.input_terminated"] = True
    else:
        environ["CONTENT_LENGTH"] = str(content_length)
    app_iter, status, headers = run_wsgi_app(app, environ, buffered=True)
    return int(status.split()[0]), headers, b"".join(app_iter)


def test_a_200_mb_webhook_post_is_refused_by_content_length_without_reading_it(app):
    status, headers, body = send_raw(
        app, "/webhooks/sendgrid", UnreadableBody(), content_length=200 * MB
    )
    assert status == 413
    assert headers["Content-Type"] == "application/json"
    assert b"too large (5 MB at most here)" in body


def test_a_chunked_webhook_post_is_refused_once_past_the_limit(app):
    endless = EndlessBody()
    status, _, body = send_raw(app, "/webhooks/sendgrid", endless)
    assert status == 413
    assert endless.bytes_read == app.config["WEBHOOK_MAX_BYTES"]


def test_a_chunked_form_is_refused_not_saved_cut_short(app):
    endless = EndlessBody()
    status, _, _ = send_raw(
        app, "/login", endless, content_type="application/x-www-form-urlencoded"
    )
    assert status == 413
    assert endless.bytes_read == 8 * 1024


def test_a_chunked_webhook_post_within_the_limit_is_processed(app, web, monkeypatch):
    signer = WebhookSigner()
    monkeypatch.setitem(app.config, "SENDGRID_WEBHOOK_PUBLIC_KEY", signer.public_key_b64)
    body = encode([])
    headers = {f"HTTP_{k.upper().replace('-', '_')}": v for k, v in signer.headers(body).items()}
    status, _, answer = send_raw(
        app, "/webhooks/sendgrid", io.BytesIO(body), environ_overrides=headers
    )
    assert status == 200, answer


def test_a_50_mb_login_is_refused_with_a_page_before_the_form_is_read(app):
    status, headers, body = send_raw(
        app,
        "/login",
        UnreadableBody(),
        content_length=50 * MB,
        content_type="application/x-www-form-urlencoded",
    )
    assert status == 413
    assert headers["Content-Type"].startswith("text/html")
    assert b"Too large (413)" in body and b"8.192 KB at most here" in body


def test_form_posts_have_their_own_smaller_limit(admin, app, monkeypatch):
    monkeypatch.setitem(app.config, "MAX_FORM_BYTES", 20_000)
    too_big = admin.post("/contacts/new", {"email": "a@example.com", "notes": "x" * 30_000})
    assert too_big.status_code == 413
    assert "20 KB at most here" in too_big.get_data(as_text=True)
    # With htmx the refusal lands in the page's alert area, not in the fragment.
    swapped = admin.post("/contacts/new", {"notes": "x" * 30_000}, htmx=True)
    assert swapped.status_code == 413
    assert swapped.headers["HX-Retarget"] == "#htmx-alerts"


def test_the_global_limit_covers_every_other_body(app, monkeypatch):
    monkeypatch.setitem(app.config, "MAX_CONTENT_LENGTH", 1_000)
    status, _, _ = send_raw(app, "/contacts/new", UnreadableBody(), content_length=5_000)
    assert status == 413


# --- field sizes (the core's validation, shown next to the field) -----------------------


def contact_form(**fields):
    return {"email": "big@example.com", "contact_type": "lead", "timezone": "UTC", **fields}


@pytest.mark.parametrize(
    ("custom_fields", "message"),
    [
        (
            "\n".join(f"f{i}: v" for i in range(MAX_CUSTOM_FIELDS + 1)),
            f"At most {MAX_CUSTOM_FIELDS} custom fields (this has {MAX_CUSTOM_FIELDS + 1})",
        ),
        (
            "n" * (CUSTOM_FIELD_NAME_MAX + 1) + ": v",
            f'The name "{"n" * 20}..." is too long: at most {CUSTOM_FIELD_NAME_MAX} characters',
        ),
        (
            "met_at: " + "v" * (CUSTOM_FIELD_VALUE_MAX + 1),
            'The value of "met_at" is too long: at most 1,000 characters (1,001).',
        ),
    ],
    ids=["count", "name", "value"],
)
def test_custom_fields_have_limits_shown_next_to_the_field(
    admin, campaigns, custom_fields, message
):
    response = admin.post("/contacts/new", contact_form(custom_fields=custom_fields))
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert f'id="error-custom_fields">{escape(message)}' in page
    assert "big@example.com" in page  # what was typed is still there


def test_notes_have_a_limit_and_nothing_is_saved(admin, campaigns, session):
    limit = TEXT_FIELDS["notes"]
    response = admin.post("/contacts/new", contact_form(notes="n" * (limit + 1)))
    assert response.status_code == 422
    assert f'id="error-notes">At most {limit:,} characters' in response.get_data(as_text=True)
    assert admin.get("/contacts/?q=big").get_data(as_text=True).count("big@example.com") == 0


def test_a_note_typed_in_a_browser_counts_each_line_break_once(admin, campaigns, session):
    # A browser sends CRLF: a note of 10,000 characters over many lines was refused as
    # longer, and one saved from the browser kept a CR before each line break.
    limit = TEXT_FIELDS["notes"]
    typed = "\n".join(["note"] * (limit // 5)) + "x" * (limit % 5 + 1)
    assert len(typed) == limit
    response = admin.post("/contacts/new", contact_form(notes=typed.replace("\n", "\r\n")))
    assert response.status_code == 302, response.get_data(as_text=True)
    contact = session.scalar(sa.select(Contact).where(Contact.email == "big@example.com"))
    assert contact.notes == typed


def test_the_core_applies_the_same_limits_to_every_caller(session, campaigns):
    data = ContactInput(
        email="api@example.com",
        contact_type="lead",
        custom_fields={f"f{i}": "v" for i in range(5_000)},
    )
    with pytest.raises(ContactValidationError) as refused:
        create_contact(session, data, actor="api:test")
    assert "custom_fields" in refused.value.errors
