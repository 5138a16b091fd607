"""CR/LF in a contact's name never reaches a header of the email (the SendGrid payload)."""

from __future__ import annotations

import pytest

from crm_app.drip.common.headers import header_safe
from crm_app.drip.delivery.pipeline import deliver_messages
from tests.test_delivery import _tick

INJECTED_FIRST_NAME = "Eve\r\nBcc: spy@evil.example"


@pytest.mark.parametrize(
    ("raw", "safe"),
    [
        ("Eve\r\nBcc: spy@evil.example", "Eve Bcc: spy@evil.example"),
        ("Ann\nLee", "Ann Lee"),
        ("Tab\there\x00and\x7fnul", "Tab here and nul"),
        ("Line\u2028separator\u0085next", "Line separator next"),
        ("\r\nAda Lovelace\r\n", "Ada Lovelace"),
        ("Zoë O'Brien-Łukasz", "Zoë O'Brien-Łukasz"),
    ],
)
def test_header_safe_keeps_one_line(raw, safe):
    assert header_safe(raw) == safe


def test_a_name_with_cr_lf_is_one_line_in_the_sendgrid_payload(
    session, make_contact, backend, settings, fake_sendgrid
):
    contact = make_contact("lead")
    # The contact rules refuse a line break in a name now; one stored before still
    # never reaches a header.
    contact.first_name, contact.last_name = INJECTED_FIRST_NAME, "Smith\n"
    session.commit()
    message = _tick(session, contact)
    # A subject that merges the name, to check the rendered subject too.
    message.step.subject = "Hello {{ contact.first_name }}"
    session.commit()

    report = deliver_messages(session, [message.id], backend, settings)

    assert report.sent == [message.id]
    assert fake_sendgrid.deliveries == {str(message.id): 1}  # sent, once
    payload = fake_sendgrid.requests[0]
    recipient = payload["personalizations"][0]["to"][0]
    assert recipient == {"email": contact.email, "name": "Eve Bcc: spy@evil.example Smith"}
    assert payload["subject"] == "Hello Eve Bcc: spy@evil.example"
    for value in (payload["from"]["name"], *payload["headers"].values()):
        assert "\r" not in value and "\n" not in value
    assert "bcc" not in payload["personalizations"][0]


def test_a_download_name_with_cr_lf_stays_one_quoted_header(staff, session, campaigns):
    campaigns["lead"].slug = 'lead"\r\nX-Evil: 1'
    session.commit()
    response = staff.get(f"/analytics/campaigns/{campaigns['lead'].id}.csv")
    assert response.status_code == 200
    disposition = response.headers["Content-Disposition"]
    assert disposition.startswith('attachment; filename="lead\\" X-Evil: 1-')
    assert "X-Evil" not in response.headers
