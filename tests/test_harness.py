"""The test harness: previews for the sample or a real contact (picked by a live search)
with the merge fields it lacks, the editor's live preview of unsaved text, and test
sends through the configured backend that never count as campaign emails."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from crm_app.drip.campaigns.harness import SendTestError, send_test
from crm_app.drip.campaigns.rendering import SAMPLE_CONTACT, build_context
from crm_app.drip.delivery.backends import OutboxBackend
from crm_app.drip.experiments.variants import VariantInput, choose, start_test, stop_test
from crm_app.drip.reporting.analytics import campaign_report, campaigns_overview
from crm_app.drip.reporting.date_range import DateRange
from crm_app.models import Enrollment, Message, TestSend, utcnow


def _use_fake_sendgrid(app, fake_sendgrid, monkeypatch) -> None:
    """The configured backend becomes SendGrid, pointed at the local fake."""
    monkeypatch.setitem(app.config, "SENDGRID_API_KEY", "SG.test-key")
    monkeypatch.setitem(app.config, "SENDGRID_API_HOST", fake_sendgrid.url)


def _period() -> DateRange:
    today = utcnow().date()
    return DateRange(today - timedelta(days=1), today + timedelta(days=1))


def test_preview_for_a_real_contact_uses_its_fields_and_lists_what_it_lacks(
    staff, campaigns, make_contact
):
    contact = make_contact("lead", first_name="Zoë", company="")
    step = campaigns["lead"].steps[0]
    page = staff.get(
        f"/campaigns/{step.campaign_id}/steps/{step.id}/preview?contact_id={contact.id}"
    ).get_data(as_text=True)
    assert "Hi Zoë," in page and "previewed for <strong>Zoë Example</strong>" in page
    assert "Missing or empty for Zoë Example" in page
    for name in ("contact.company", "contact.custom.interest"):
        assert f"<code>{name}</code>" in page
    assert "Northwind" not in page  # nothing from the sample contact


def test_the_contact_picker_searches_live_and_without_javascript(staff, campaigns, make_contact):
    contact = make_contact("lead", first_name="Quentin", last_name="Blake")
    step = campaigns["lead"].steps[0]
    url = f"/campaigns/{step.campaign_id}/steps/{step.id}/preview?q=quent"
    link = f"/campaigns/{step.campaign_id}/steps/{step.id}/preview?contact_id={contact.id}"

    partial = staff.get(url, htmx=True, headers={"HX-Target": "contact-picker"})
    text = partial.get_data(as_text=True)
    assert "<html" not in text and link in text and "Quentin Blake" in text
    full = staff.get(url).get_data(as_text=True)
    assert "<html" in full and link in full
    nobody = staff.get(f"{url}zz", htmx=True, headers={"HX-Target": "contact-picker"})
    assert "No contact matches" in nobody.get_data(as_text=True)


def test_the_live_preview_renders_unsaved_text_through_the_same_checks(admin, session, campaigns):
    lead = campaigns["lead"]
    url = f"/campaigns/{lead.id}/steps/live-preview"
    draft = {
        "subject": "Hello {{ contact.first_name }}",
        "body_html": (
            '<p>From {{ sender.company }}</p><a href="{{ unsubscribe_url }}">Unsubscribe</a>'
        ),
        "body_text": "Hi {{ contact.company }}\nUnsubscribe: {{ unsubscribe_url }}",
        "delay_days": "2",
    }
    page = admin.post(url, draft, htmx=True).get_data(as_text=True)
    assert 'id="live-preview"' in page and "<html" not in page
    assert "Hello Alex" in page and "Hi Northwind Traders" in page

    broken = admin.post(url, draft | {"body_text": "{{ contact.shoe_size }}"}, htmx=True)
    assert "Unknown merge field contact.shoe_size" in broken.get_data(as_text=True)
    assert len(lead.steps) == 6 and lead.steps[0].version == 1  # nothing saved


def test_the_editor_preview_button_works_without_javascript_and_saves_nothing(
    admin, session, campaigns
):
    lead = campaigns["lead"]
    step = lead.steps[1]
    form = {
        "subject": "Draft for {{ contact.first_name }}",
        "body_html": step.body_html,
        "body_text": step.body_text,
        "delay_days": str(step.delay_days),
        "intent": "preview",
    }
    response = admin.post(f"/campaigns/{lead.id}/steps/{step.id}/edit", form)
    page = response.get_data(as_text=True)
    assert response.status_code == 200 and "Draft for Alex" in page
    assert 'value="Draft for {{ contact.first_name }}"' in page  # the typed text is kept
    session.expire_all()
    assert step.version == 1 and step.subject != form["subject"]


def test_a_test_send_reaches_sendgrid_once_and_never_counts_as_a_campaign_email(
    app, admin, session, campaigns, make_contact, fake_sendgrid, monkeypatch
):
    _use_fake_sendgrid(app, fake_sendgrid, monkeypatch)
    contact = make_contact("lead", first_name="Ines")
    lead = campaigns["lead"]
    step = lead.steps[0]
    enrollment_before = session.scalar(
        sa.select(Enrollment).where(Enrollment.contact_id == contact.id)
    )
    state = (enrollment_before.current_step_id, enrollment_before.next_send_at)

    response = admin.post(
        f"/campaigns/{lead.id}/steps/{step.id}/test-send",
        {"to_email": "qa@example.com", "contact_id": str(contact.id)},
    )
    assert response.status_code == 302

    (payload,) = fake_sendgrid.requests  # exactly once
    assert payload["personalizations"][0]["to"][0]["email"] == "qa@example.com"
    assert payload["subject"].startswith("[Test] Thanks for getting in touch with")
    assert "message_id" not in payload["custom_args"]
    sent = session.scalar(sa.select(TestSend))
    assert (sent.status, sent.backend, sent.to_email) == ("sent", "sendgrid", "qa@example.com")
    assert (sent.contact_id, sent.template_version) == (contact.id, 1)
    assert payload["custom_args"] == {"test_send_id": str(sent.id)}
    assert "Hi Ines" in sent.text and "Real emails end with an unsubscribe link" in sent.text
    assert session.scalar(sa.select(sa.func.count(Message.id))) == 0
    assert campaign_report(session, lead, _period()).summary.counts.sent == 0
    assert all(row.counts.sent == 0 for row in campaigns_overview(session, _period()).rows)
    session.expire_all()
    enrollment = session.get(Enrollment, enrollment_before.id)
    assert (enrollment.current_step_id, enrollment.next_send_at) == state


def test_staff_send_tests_to_themselves_only(
    app, staff, session, campaigns, fake_sendgrid, monkeypatch
):
    _use_fake_sendgrid(app, fake_sendgrid, monkeypatch)
    step = campaigns["client"].steps[0]
    url = f"/campaigns/{step.campaign_id}/steps/{step.id}/test-send"
    refused = staff.post(url, {"to_email": "someone@else.example"}, follow_redirects=True)
    assert "Only admins can send a test to another address." in refused.get_data(as_text=True)
    assert fake_sendgrid.requests == []
    staff.post(url, {})
    (payload,) = fake_sendgrid.requests
    assert payload["personalizations"][0]["to"][0]["email"] == "staff@example.com"


def test_a_bad_address_is_refused_and_nothing_is_sent(admin, campaigns, fake_sendgrid):
    step = campaigns["client"].steps[0]
    response = admin.post(
        f"/campaigns/{step.campaign_id}/steps/{step.id}/test-send",
        {"to_email": "not-an-address"},
        follow_redirects=True,
    )
    assert "Not a valid email address" in response.get_data(as_text=True)
    assert fake_sendgrid.requests == []


def test_without_sendgrid_a_test_is_kept_in_the_outbox_as_a_test(admin, session, campaigns):
    step = campaigns["client"].steps[0]
    response = admin.post(f"/campaigns/{step.campaign_id}/steps/{step.id}/test-send", {})
    flashed = admin.get(response.headers["Location"]).get_data(as_text=True)
    assert "Test kept in the Outbox: “[Test] " in flashed
    outbox = admin.get("/admin/outbox").get_data(as_text=True)
    assert 'id="test-sends"' in outbox and "[Test] " in outbox
    sent = session.scalar(sa.select(TestSend))
    assert sent.backend == "outbox" and sent.status == "sent"
    detail = admin.get(f"/campaigns/test-sends/{sent.id}").get_data(as_text=True)
    assert "version 1" in detail and "the sample contact" in detail


@pytest.mark.parametrize("status", ["400", "500"])
def test_a_refused_test_says_why(
    app, admin, session, campaigns, fake_sendgrid, monkeypatch, status
):
    _use_fake_sendgrid(app, fake_sendgrid, monkeypatch)
    fake_sendgrid.script(status)
    step = campaigns["client"].steps[0]
    response = admin.post(
        f"/campaigns/{step.campaign_id}/steps/{step.id}/test-send", {}, follow_redirects=True
    )
    assert "The test to admin@example.com failed" in response.get_data(as_text=True)
    assert session.scalar(sa.select(TestSend.status)) == "failed"


SENDER = {"name": "Sam", "first_name": "Sam", "email": "sam@example.com"}


def _ab_test(session, step):
    inputs = [
        VariantInput("A", "50", subject="Option A for {{ contact.first_name }}"),
        VariantInput("B", "50", body_text=step.body_text + "\nOnly variant B says this."),
    ]
    variants = start_test(session, step, inputs, SENDER, actor="test")
    session.commit()
    return variants


def test_a_test_sends_the_variant_chosen_and_says_which(session, campaigns):
    step = campaigns["lead"].steps[0]
    _ab_test(session, step)
    context = build_context(SAMPLE_CONTACT, SENDER)

    def send(key: str):
        return send_test(
            session,
            step,
            "qa@example.com",
            context,
            contact=None,
            backend=OutboxBackend(),
            actor="test",
            variant_key=key,
        )

    a, b, base = send("A"), send("B"), send("")
    session.commit()
    assert a.subject.startswith("[Test A] Option A for ") and a.variant_key == "A"
    assert b.subject == "[Test B] " + base.subject.removeprefix("[Test] ")
    assert "Only variant B says this." in b.text and "variant B" in b.text
    assert "Only variant B says this." not in base.text and base.variant_key == ""
    with pytest.raises(SendTestError) as refused:
        send("C")
    assert refused.value.errors == {
        "variant": "Choose Base or a variant of the running A/B test (A, B)."
    }
    stop_test(session, step, actor="test")  # an ended test's variants are not sent
    with pytest.raises(SendTestError) as refused:
        send("A")
    assert "runs no A/B test now" in refused.value.errors["variant"]
    assert session.scalar(sa.select(sa.func.count(TestSend.id))) == 3  # nothing recorded


def test_the_test_form_offers_each_running_variant_and_refuses_an_unknown_one(
    admin, session, campaigns
):
    step = campaigns["lead"].steps[0]
    url = f"/campaigns/{step.campaign_id}/steps/{step.id}"
    assert 'name="variant"' not in admin.get(f"{url}/preview").get_data(as_text=True)
    _ab_test(session, step)
    page = admin.get(f"{url}/preview").get_data(as_text=True)
    assert '<option value="" selected>Base</option>' in page
    assert '<option value="B">Variant B</option>' in page

    refused = admin.post(f"{url}/test-send", {"variant": "Z"})
    assert refused.status_code == 422
    body = refused.get_data(as_text=True)
    assert 'class="error-summary"' in body
    assert 'id="error-variant">Choose Base or a variant of the running A/B test (A, B).' in body
    assert session.scalar(sa.select(sa.func.count(TestSend.id))) == 0

    response = admin.post(f"{url}/test-send", {"variant": "B"})
    assert "“[Test B] " in admin.get(response.headers["Location"]).get_data(as_text=True)
    sent = session.scalar(sa.select(TestSend))
    assert "Only variant B says this." in sent.text
    page = admin.get(f"{url}/preview").get_data(as_text=True)
    assert f"(version {step.version}, variant B, outbox)" in page
    detail = admin.get(f"/campaigns/test-sends/{sent.id}").get_data(as_text=True)
    assert "variant B of its A/B test" in detail


def test_the_preview_shows_the_variant_chosen_or_the_one_the_contact_gets(
    admin, session, campaigns, make_contact
):
    step = campaigns["lead"].steps[0]
    url = f"/campaigns/{step.campaign_id}/steps/{step.id}/preview"
    variants = {v.key: v for v in _ab_test(session, step)}
    only_b = "Only variant B says this."

    base = admin.get(url).get_data(as_text=True)  # the sample contact: the base text
    assert only_b not in base and '<option value="" selected>Base</option>' in base
    shown_b = admin.get(url, query_string={"variant": "B"}).get_data(as_text=True)
    assert only_b in shown_b and '<option value="B" selected>Variant B</option>' in shown_b

    # A real contact, without a choice: the variant the running test gives it.
    contact = make_contact(first_name="Ann", last_name="Lee")
    session.commit()
    own = choose(list(variants.values()), step.id, contact.id)
    page = admin.get(url, query_string={"contact_id": contact.id}).get_data(as_text=True)
    assert (only_b in page) == (own.key == "B")
    assert f"Variant {own.key} (Ann Lee’s)</option>" in page
    # ... and its base text when asked for it.
    asked = admin.get(url, query_string={"contact_id": contact.id, "variant": ""})
    assert only_b not in asked.get_data(as_text=True)

    refused = admin.get(url, query_string={"variant": "Z"})
    body = refused.get_data(as_text=True)
    assert refused.status_code == 200 and only_b not in body
    assert 'id="preview-variant-error">Choose Base or a variant' in body


def test_a_custom_field_the_sample_contact_lacks_can_be_saved_and_is_sent_empty(
    admin, session, make_contact, campaigns, backend, settings, fake_sendgrid
):
    """The editor says custom fields are usable as {{ contact.custom.name }}: one the
    sample contact lacks is saved, and a contact without it gets the email, the field
    empty and false (it failed to render, and the save refused any name but the
    sample's)."""
    from crm_app.models import Message
    from tests.authoring_helpers import send_next, step_form

    lead = campaigns["lead"]
    step = lead.steps[0]
    subject = "Your plan{% if contact.custom.plan %}: {{ contact.custom.plan }}{% endif %}"
    form = step_form(step) | {"subject": subject}
    saved = admin.post(f"/campaigns/{lead.id}/steps/{step.id}/edit", form)
    assert saved.status_code == 302, saved.get_data(as_text=True)
    contact = make_contact("lead", first_name="Gus")
    session.commit()
    send_next(session, contact, lead, backend, settings)
    message = session.scalar(sa.select(Message).where(Message.contact_id == contact.id))
    assert (message.status, message.subject) == ("sent", "Your plan")
