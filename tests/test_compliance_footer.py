"""Compliance in every email: the postal address (a workspace setting) and a visible
unsubscribe link in the body, which a template cannot be saved without."""

from __future__ import annotations

import time

import pytest
import sqlalchemy as sa

from crm_app.drip.campaigns.rendering import PREVIEW_UNSUBSCRIBE_URL, check_template
from crm_app.drip.campaigns.unsubscribe_link import links_visibly
from crm_app.extensions import db
from crm_app.models import AuditEntry, CampaignStep, WorkspaceSettings
from tests.delivery_helpers import send_due_email

LINK_HTML = '<p><a href="{{ unsubscribe_url }}">Unsubscribe</a></p>'
LINK_TEXT = "Unsubscribe: {{ unsubscribe_url }}"
POSTAL = "Northwind Traders\n1 Harbour Street\nSpringfield, IL 62701"


def edit(admin, step: CampaignStep, **changes):
    values = {
        "delay_days": str(step.delay_days),
        "subject": step.subject,
        "body_html": "<p>Hi {{ contact.first_name }}</p>" + LINK_HTML,
        "body_text": "Hi {{ contact.first_name }}\n" + LINK_TEXT,
    }
    return admin.post(f"/campaigns/{step.campaign_id}/steps/{step.id}/edit", values | changes)


def version_of(step: CampaignStep) -> int:
    db.session.expire_all()
    return db.session.get(CampaignStep, step.id).version


@pytest.mark.parametrize(
    ("changes", "field", "why"),
    [
        ({"body_html": "<p>Hi there</p>"}, "body_html", "no link"),
        ({"body_text": "Hi there"}, "body_text", "no link"),
        (
            {"body_html": '<p><a href="{{ unsubscribe_url }}"></a></p>'},
            "body_html",
            "nothing to see",
        ),
        ({"body_html": "<!-- {{ unsubscribe_url }} --><p>Hi</p>"}, "body_html", "in a comment"),
        ({"body_html": "<p>Unsubscribe: {{ unsubscribe_url }}</p>"}, "body_html", "not a link"),
        (
            {
                "body_html": "{% if contact.custom.vip %}"
                '<a href="{{ unsubscribe_url }}">x</a>{% endif %}'
            },
            "body_html",
            "hidden by a condition",
        ),
    ],
)
def test_an_email_without_a_visible_unsubscribe_link_cannot_be_saved(
    admin, campaigns, changes, field, why
):
    step = campaigns["lead"].steps[1]

    response = edit(admin, step, **changes)

    assert response.status_code == 422, why
    page = response.get_data(as_text=True)
    assert 'id="error-' + field + '"' in page and "unsubscribe_url" in page
    assert version_of(step) == 1  # nothing saved


def test_an_email_with_the_link_in_both_bodies_is_saved(admin, campaigns):
    step = campaigns["lead"].steps[1]
    assert edit(admin, step).status_code == 302
    assert version_of(step) == 2


def test_unsubscribe_url_is_a_merge_field_and_previews_show_a_placeholder(staff, campaigns):
    assert check_template("{{ unsubscribe_url }}") == []
    assert "unsubscribe_url" in check_template("{{ unsubscribe_link }}")[0]
    lead = campaigns["lead"]
    page = staff.get(f"/campaigns/{lead.id}/steps/{lead.steps[0].id}/preview")
    assert PREVIEW_UNSUBSCRIBE_URL in page.get_data(as_text=True)


def test_the_settings_page_saves_the_postal_address_and_warns_while_it_is_missing(admin):
    page = admin.get("/settings").get_data(as_text=True)
    assert "No postal address yet" in page

    response = admin.post("/settings", {"sender_name": "", "postal_address": POSTAL + "\n\n"})

    assert response.status_code == 302
    assert db.session.get(WorkspaceSettings, 1).postal_address == POSTAL
    assert "No postal address yet" not in admin.get("/settings").get_data(as_text=True)
    summary = db.session.scalars(sa.select(AuditEntry.summary)).one()
    assert "postal address" in summary
    too_long = admin.post("/settings", {"postal_address": "x" * 501})
    assert too_long.status_code == 422 and 'id="error-postal_address"' in too_long.get_data(
        as_text=True
    )


def _sent(session, make_contact, backend, settings, fake_sendgrid) -> tuple[str, str, str]:
    """(html, text, the contact's real unsubscribe link) of a sent email."""
    session.merge(WorkspaceSettings(id=1, postal_address=POSTAL))
    session.commit()
    contact = make_contact("lead")
    send_due_email(session, contact.enrollments[0], backend, settings)
    payload = fake_sendgrid.requests[-1]
    text, html = (part["value"] for part in payload["content"])
    link = payload["headers"]["List-Unsubscribe"].split(", <")[1].rstrip(">")
    return html, text, link


def test_every_sent_email_carries_the_postal_address_and_one_visible_unsubscribe_link(
    session, make_contact, campaigns, backend, settings, fake_sendgrid
):
    html, text, link = _sent(session, make_contact, backend, settings, fake_sendgrid)

    postal_line = "Northwind Traders, 1 Harbour Street, Springfield, IL 62701"
    assert postal_line in html and postal_line in text
    assert links_visibly(html, link) and link in text
    # The template links it already: the footer adds no second link.
    assert html.count(link) == 1 and text.count(link) == 1
    assert PREVIEW_UNSUBSCRIBE_URL not in html + text


def test_a_template_without_the_link_still_gets_one_in_the_footer(
    session, make_contact, campaigns, backend, settings, fake_sendgrid
):
    # Saved before the rule existed (or a condition left the link out for this contact).
    step = campaigns["lead"].steps[0]
    step.body_html, step.body_text = "<p>Hello</p>", "Hello"
    session.commit()

    html, text, link = _sent(session, make_contact, backend, settings, fake_sendgrid)

    assert links_visibly(html, link) and link in text
    assert "Northwind Traders" in html and "Northwind Traders" in text


def test_a_new_email_starts_with_the_unsubscribe_link_and_saves_with_it(admin, campaigns):
    lead = campaigns["lead"]
    form = admin.get(f"/campaigns/{lead.id}/steps/new").get_data(as_text=True)
    assert form.count("{{ unsubscribe_url }}") >= 3  # the hint and both bodies

    response = admin.post(
        f"/campaigns/{lead.id}/steps/new",
        {
            "delay_days": "3",
            "subject": "One more idea",
            "body_html": "<p>Hi</p>\n" + LINK_HTML,
            "body_text": "Hi\n\n" + LINK_TEXT,
        },
    )
    assert response.status_code == 302


@pytest.mark.parametrize(
    ("html", "visible"),
    [
        ('<a href="L">Unsubscribe</a>', True),
        ("<a href='L'><b>Stop</b> these emails</a>", True),
        ("<a href=L>x</a>", True),
        ('<a href="L"><img src="i.png" alt="Unsubscribe"></a>', True),
        ('<a href="L"> </a><a href="L">ok</a>', True),
        ('<a href="L">never closed', True),
        ('<p><a href="L"></a></p>', False),
        ('<a class="x" href="L">&nbsp;</a>', False),
        ('<!-- <a href="L">x</a> -->', False),
        ("<p>L</p>", False),
        ('<a href="L-other">x</a>', False),
    ],
)
def test_a_visible_link_is_an_anchor_to_the_url_with_something_inside(html, visible):
    assert links_visibly(html, "L") is visible


def test_previews_show_the_footer_every_email_gets(admin, session, campaigns):
    """What a preview shows is what goes: the footer with the postal address (the
    editor's preview, the preview page and the campaign page), with one unsubscribe
    link (the template's own, not a second one)."""
    session.merge(WorkspaceSettings(id=1, postal_address=POSTAL))
    session.commit()
    lead = campaigns["lead"]
    step = lead.steps[0]
    postal_line = "Northwind Traders, 1 Harbour Street, Springfield, IL 62701"
    for url in (
        f"/campaigns/{lead.id}/steps/{step.id}/edit",
        f"/campaigns/{lead.id}/steps/{step.id}/preview",
        f"/campaigns/{lead.id}",
    ):
        page = admin.get(url).get_data(as_text=True)
        text_part = page.split('class="text-preview">')[1].split("</pre>")[0]
        assert "You receive these emails from" in text_part and postal_line in text_part, url
        assert text_part.count(PREVIEW_UNSUBSCRIBE_URL) == 1, url


@pytest.mark.parametrize(
    ("unclosed", "visible"),
    [("<a ", False), ("<img ", True), ('<img alt="x ', True), ("<b ", True)],
)
def test_a_body_of_unclosed_tags_is_read_in_linear_time(unclosed, visible):
    # Every save and every send runs this check: 30 KB of unclosed "<a " took 0.6 s, a
    # time growing with the square of the size (this body: about 30 s). A guard against
    # that growth, with a hundred times the margin, not a speed figure (make bench).
    html = '<a href="L">' + unclosed * 50_000 + "L"
    started = time.perf_counter()
    assert links_visibly(html, "L") is visible  # unclosed, they are text
    assert time.perf_counter() - started < 1
