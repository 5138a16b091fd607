"""A template's work and the values it builds are bounded, at save and at send
(crm_app/drip/campaigns/sandbox.py)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from crm_app.drip.campaigns import sandbox
from crm_app.drip.campaigns.rendering import (
    SAMPLE_CONTACT,
    TemplateRenderError,
    build_context,
    render_email,
    sender_context,
)
from crm_app.drip.delivery.pipeline import deliver_messages
from crm_app.drip.team.workspace import WorkspaceSender
from crm_app.extensions import db
from crm_app.models import Activity, CampaignStep, Message
from tests.test_delivery import _tick

SENDER = sender_context(
    None,
    WorkspaceSender(name="Sam", signature="", email="s@example.com", company="Acme", website=""),
)


def render(source: str, contact: dict | None = None):
    context = build_context(contact or SAMPLE_CONTACT, SENDER)
    return render_email("Subject", source, source, context)


# Each builds a huge value, or does endless work, in a few characters of template.
AMPLIFIERS = {
    "center filter (the audit's)": "{{ 'a'|center(50000000) }}",
    "center method": "{{ 'a'.center(50000000) }}",
    "ljust method": "{{ 'a'.ljust(50000000) }}",
    "zfill method": "{{ '1'.zfill(50000000) }}",
    "expandtabs": "{{ ('\\t' * 1000).expandtabs(100000) }}",
    "indent": "{{ ('a\\n' * 1000)|indent(100000) }}",
    "printf filter": "{{ '%050000000d'|format(1) }}",
    "printf operator": "{{ '%050000000d' % 1 }}",
    "str.format": "{{ '{:>50000000}'.format('a') }}",
    "replace filter": "{{ ('a' * 10000)|replace('a', 'b' * 10000) }}",
    "replace method": "{{ ''.replace('', 'x' * 99999) ~ ('a' * 99)|replace('', 'yy' * 9999) }}",
    "join filter": "{{ range(100000)|join('x' * 100) }}",
    "join method": "{{ ('x' * 1000).join(range(1000)|map('string')) }}",
    "wordwrap": "{{ ('a' * 99999)|wordwrap(1, true, 'xxxxxxxx') }}",
    "concatenation": "{% set a = 'x' * 90000 %}{{ a ~ a }}",
    "plus": "{% set a = 'x' * 90000 %}{{ a + a }}",
    "doubling in a loop": (
        "{% set ns = namespace(s='x') %}{% for i in range(40) %}"
        "{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s|length }}"
    ),
    "doubling in a set block": (
        "{% set ns = namespace(s='x') %}{% for i in range(40) %}"
        "{% set ns.s %}{{ ns.s }}{{ ns.s }}{% endset %}{% endfor %}"
    ),
    "batch padding": "{{ [1]|batch(100000000, 'x')|list|length }}",
    "quadratic sum": "{{ range(5000)|batch(1)|sum(start=[])|length }}",
    "nested loops (the audit's)": (
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
    ),
    "exponential macro": (
        "{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(40) }}"
    ),
    "filters in a loop": "{% for i in range(100000) %}{{ range(100)|sum }}{% endfor %}",
    "string iteration": (
        "{% set s = 'x' * 99999 %}{% for a in s %}{% for b in s %}{% endfor %}{% endfor %}"
    ),
}


@pytest.mark.parametrize("source", AMPLIFIERS.values(), ids=AMPLIFIERS.keys())
def test_templates_that_build_huge_values_or_work_endlessly_are_refused(source):
    with pytest.raises(TemplateRenderError) as refused:
        render(source)
    message = str(refused.value)
    assert any(
        reason in message
        for reason in ("too long", "too much work", "builds over", "numbers only", "took over")
    ), message


def test_a_render_that_runs_out_of_time_is_stopped(monkeypatch):
    monkeypatch.setattr(sandbox, "MAX_RENDER_SECONDS", 0.0)  # the deadline: now
    with pytest.raises(TemplateRenderError, match="took over 0 s to render"):
        render("{% for i in range(1000) %}{{ i }}{% endfor %}")


def test_ordinary_templates_still_render():
    html = render(
        "{% for key, value in contact.custom|dictsort %}{{ key|title }}: {{ value }}{% endfor %}"
        " {{ contact.first_name|center(11) }}|{{ '%05d'|format(42) }}|{{ '{:>4}'.format(7) }}"
        "|{{ ['a', 'b']|join(', ') }}|{{ contact.last_name ~ '!' }}"
        "|{% for i in range(3) %}{{ loop.index }}{% endfor %}|{{ range(4)|sum }}"
        "|{{ 'x' * 3 }}|{{ 'Ab'.replace('b', 'c') }}|{{ 'a b'|wordwrap(1) }}"
    ).html
    assert html == (
        "Met_at: the Spring Growth Summit     Alex   |00042|   7|a, b|Morgan!|123|6|xxx|Ac|a\nb"
    )


def test_a_step_that_breaks_the_limits_is_refused_at_save_next_to_its_field(admin, campaigns):
    lead = campaigns["lead"]
    step = lead.steps[0]
    before = (step.body_html, step.version)
    response = admin.post(
        f"/campaigns/{lead.id}/steps/{step.id}/edit",
        {
            "delay_days": "0",
            "subject": "Hi",
            "body_html": "<p>{{ 'a'|center(50000000) }}</p>",
            "body_text": "Hi",
        },
    )
    assert response.status_code == 422
    assert 'id="error-body_html">The template cannot be rendered: a value would be too long' in (
        response.get_data(as_text=True)
    )
    db.session.expire_all()
    saved = db.session.get(CampaignStep, step.id)
    assert (saved.body_html, saved.version) == before


def test_a_template_too_long_for_an_email_is_refused_at_save(admin, campaigns):
    lead = campaigns["lead"]
    step = lead.steps[0]
    response = admin.post(
        f"/campaigns/{lead.id}/steps/{step.id}/edit",
        {"delay_days": "0", "subject": "Hi", "body_html": "x" * 100_001, "body_text": "Hi"},
    )
    assert response.status_code == 422
    assert 'id="error-body_html">At most 100,000 characters.' in response.get_data(as_text=True)


def test_a_contact_whose_data_breaks_the_limits_fails_at_send_and_nothing_goes_out(
    session, make_contact, backend, settings, fake_sendgrid
):
    # Fine for the sample contact (saved), huge for this one: refused at send time.
    contact = make_contact("lead", custom_fields={"width": "50000000"})
    message = _tick(session, contact)
    message.step.body_html = "<p>{{ 'a'|center(contact.custom.get('width', 1)|int) }}</p>"
    session.commit()

    report = deliver_messages(session, [message.id], backend, settings)

    assert report.sent == []
    assert fake_sendgrid.deliveries == {}
    session.expire_all()
    failed = session.get(Message, message.id)
    assert failed.status == "failed" and "a value would be too long" in failed.error
    assert session.scalar(
        sa.select(Activity.kind).where(
            Activity.contact_id == contact.id, Activity.kind == "email_failed"
        )
    )
