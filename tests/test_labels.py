"""What the pages call things: no internal words ("type_change", "user:...",
"system:worker"), an admin's suppression is not an "unsubscribe", the nav says what
each page's title says, and the Outbox shows the From address."""

from __future__ import annotations

import re

import pytest

from crm_app.drip.audience.enrollment import change_contact_type
from crm_app.drip.audience.suppression import add_manual_suppression
from crm_app.drip.common.activity import record_activity
from crm_app.drip.common.labels import actor_label, enrollment_source_label
from crm_app.extensions import db
from tests.panel_helpers import sent_email

INTERNAL_WORDS = ("type_change", "user:", "system:worker", "sendgrid:webhook")


def main_of(page: str) -> str:
    """The text a person reads in the page's main part (no tags, no attributes)."""
    main = page.split('<main class="container" id="main"', 1)[1]
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", main))


@pytest.mark.parametrize(
    ("actor", "label"),
    [
        ("user:ada@example.com", "ada@example.com"),
        ("system:worker", "the delivery worker"),
        ("sendgrid:webhook", "SendGrid"),
        ("system", "the system"),
        ("api:crm-sync", "API token crm-sync"),
        ("sendgrid group_unsubscribe", "SendGrid group unsubscribe"),
    ],
)
def test_actors_read_as_people_and_processes(actor, label):
    assert actor_label(actor) == label


def test_the_contact_page_has_no_internal_words(admin, session, make_contact):
    contact = make_contact("lead")
    change_contact_type(session, contact, "client", actor="user:admin@example.com")
    record_activity(session, contact, "completed", "Completed Client", actor="system:worker")
    record_activity(session, contact, "email_open", "Email opened", actor="sendgrid:webhook")
    session.commit()
    page = main_of(admin.get(f"/contacts/{contact.id}").get_data(as_text=True))
    for word in INTERNAL_WORDS:
        assert word not in page, word
    assert f"enrolled {enrollment_source_label('type_change')}, by admin@example.com" in page
    assert "the delivery worker ·" in page and "SendGrid ·" in page
    assert "opened Email opened" in page  # the timeline kind email_open


def test_a_contact_an_admin_suppressed_is_not_called_unsubscribed(admin, session, make_contact):
    contact = make_contact("lead", email="quiet@example.com")
    add_manual_suppression(session, "quiet@example.com", note="phone call", actor="user:a@x.io")
    session.commit()
    page = main_of(admin.get(f"/contacts/{contact.id}").get_data(as_text=True))
    assert "suppressed by staff" in page and "unsubscribed" not in page
    listing = main_of(admin.get("/suppressions/").get_data(as_text=True))
    assert "a@x.io" in listing and "user:a@x.io" not in listing


def test_each_nav_link_says_what_its_page_title_says(admin):
    nav = admin.get("/").get_data(as_text=True).split('<nav aria-label="Main">', 1)[1]
    links = re.findall(r'<a href="([^"]+)"[^>]*>([^<]+)</a>', nav.split("</nav>", 1)[0])
    assert len(links) == 14
    for href, text in links:
        page = admin.get(href.replace("&amp;", "&"))
        assert page.status_code == 200, href
        heading = re.search(r"<h1[^>]*>\s*([^<]+?)\s*<", page.get_data(as_text=True)).group(1)
        assert heading == text, (href, heading, text)


def test_the_outbox_shows_the_from_address(admin, app, make_contact, monkeypatch):
    monkeypatch.setitem(app.config, "MAIL_FROM_EMAIL", "team@sender.example")
    contact = make_contact("lead")
    message = sent_email(db.session, contact, subject="Hello", provider_message_id="outbox-1")
    listing = admin.get("/admin/outbox").get_data(as_text=True)
    assert "<td>team@sender.example</td>" in listing
    detail = admin.get(f"/admin/outbox/{message.id}").get_data(as_text=True)
    assert "<tr><th>From</th><td>team@sender.example</td></tr>" in detail
