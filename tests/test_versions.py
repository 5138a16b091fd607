"""Every saved text of an email is a version: a history, a side-by-side diff of any two,
restore (saved as a new version), and each sent message linked to the one it used."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from crm_app.drip.campaigns.steps import StepEditError, StepInput, restore_version, update_step
from crm_app.drip.campaigns.versions import diff_versions, version_of, versions_of
from crm_app.models import Message
from tests.authoring_helpers import send_next

SENDER = {"name": "Sam", "company": "Acme"}


# Every email must carry the unsubscribe link (the editor refuses one without it).
UNSUBSCRIBE_TEXT = "\nUnsubscribe: {{ unsubscribe_url }}"


def _edit(session, step, **changes) -> None:
    values = {
        "subject": step.subject,
        "body_html": step.body_html,
        "body_text": step.body_text,
        "delay_days": str(step.delay_days),
    } | changes
    update_step(session, step, StepInput(**values), SENDER, actor="user:ada@example.com")
    session.commit()


def test_seeded_emails_start_their_history_at_version_1(session, campaigns):
    step = campaigns["lead"].steps[0]
    (first,) = versions_of(session, step)
    assert (first.version, first.subject, first.saved_by) == (1, step.subject, "system:seed")


def test_every_saved_text_is_a_version_with_who_and_when(session, campaigns):
    step = campaigns["lead"].steps[1]
    _edit(session, step, subject="Second try for {{ contact.first_name }}")
    _edit(session, step, body_text="Short and sweet." + UNSUBSCRIBE_TEXT)
    _edit(session, step, delay_days=str(step.delay_days + 1))  # a delay is not a new text

    history = versions_of(session, step)
    assert [v.version for v in history] == [3, 2, 1]
    assert history[0].body_text == "Short and sweet." + UNSUBSCRIBE_TEXT
    assert history[1].subject == "Second try for {{ contact.first_name }}"
    assert {v.saved_by for v in history[:2]} == {"user:ada@example.com"}
    assert history[0].saved_at >= history[1].saved_at
    assert step.version == 3


def test_a_browser_posting_the_same_text_with_crlf_line_ends_makes_no_new_version(
    admin, session, campaigns
):
    step = campaigns["lead"].steps[1]
    form = {
        "subject": step.subject,
        "body_html": step.body_html.replace("\n", "\r\n"),  # as a textarea posts it
        "body_text": step.body_text.replace("\n", "\r\n") + "\r\n",
        "delay_days": str(step.delay_days),
    }
    response = admin.post(f"/campaigns/{step.campaign_id}/steps/{step.id}/edit", form)
    assert response.status_code == 302
    session.expire_all()
    assert step.version == 1 and len(versions_of(session, step)) == 1


def test_any_two_versions_compare_line_by_line_side_by_side(session, campaigns):
    step = campaigns["client"].steps[0]
    old_text = step.body_text
    lines = old_text.splitlines()
    _edit(session, step, body_text="\n".join([lines[0], "A new line <b>bold</b>", *lines[1:]]))
    old, new = version_of(session, step.id, 1), version_of(session, step.id, 2)

    subject, html, text = diff_versions(old, new)
    assert not subject.changed and not html.changed and text.changed
    added = [row for row in text.rows if row.kind == "added"]
    assert [(row.left, row.right) for row in added] == [(None, "A new line <b>bold</b>")]
    assert all(row.left == row.right for row in text.rows if row.kind == "same")
    kinds = [row.kind for row in text.rows]
    assert kinds[:4] == ["same", "added", "same", "same"]  # two lines of context...
    assert kinds[4] == "folded" and text.rows[4].left.endswith("unchanged line(s)")  # ...then


def test_the_diff_page_shows_both_versions_escaped(staff, session, campaigns):
    step = campaigns["client"].steps[0]
    _edit(session, step, subject="<script>alert(1)</script> {{ contact.first_name }}")
    page = staff.get(
        f"/campaigns/{step.campaign_id}/steps/{step.id}/versions/compare?a=2&b=1"
    ).get_data(as_text=True)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script>alert" not in page
    assert 'class="diff-changed"' in page
    assert page.index("Version 1</th>") < page.index("Version 2</th>")  # older on the left


def test_restore_saves_the_old_text_as_a_new_version(admin, session, campaigns):
    step = campaigns["lead"].steps[0]
    original = step.subject
    _edit(session, step, subject="Changed {{ contact.first_name }}")

    response = admin.post(f"/campaigns/{step.campaign_id}/steps/{step.id}/versions/1/restore")
    assert response.status_code == 302
    session.expire_all()
    assert (step.subject, step.version) == (original, 3)
    latest = versions_of(session, step)[0]
    assert (latest.version, latest.note, latest.saved_by) == (
        3,
        "restored from version 1",
        "user:admin@example.com",
    )


def test_restoring_the_text_saved_now_is_refused(session, campaigns):
    step = campaigns["lead"].steps[0]
    with pytest.raises(StepEditError, match="is the text saved now"):
        restore_version(session, step, 1, SENDER, actor="test")
    assert len(versions_of(session, step)) == 1


def test_staff_read_the_history_but_cannot_restore(staff, session, campaigns):
    step = campaigns["lead"].steps[0]
    _edit(session, step, subject="Changed")
    base = f"/campaigns/{step.campaign_id}/steps/{step.id}/versions"
    page = staff.get(base).get_data(as_text=True)
    assert 'data-version="2"' in page and 'data-version="1"' in page and "Restore" not in page
    assert staff.post(f"{base}/1/restore").status_code == 403
    assert staff.get(f"{base}/1").status_code == 200


def test_a_sent_message_links_to_the_version_it_used(
    admin, session, make_contact, campaigns, backend, settings
):
    lead = campaigns["lead"]
    step = lead.steps[0]
    _edit(session, step, body_text="Version two, {{ contact.first_name }}." + UNSUBSCRIBE_TEXT)
    contact = make_contact("lead")
    send_next(session, contact, lead, backend, settings)
    message = session.scalar(sa.select(Message).where(Message.contact_id == contact.id))
    assert (message.step_id, message.template_version) == (step.id, 2)

    message.provider_message_id = f"outbox-{message.id}"  # as the Outbox keeps it
    session.commit()
    link = f'href="/campaigns/{lead.id}/steps/{step.id}/versions/2"'
    assert link in admin.get(f"/admin/outbox/{message.id}").get_data(as_text=True)
    assert link in admin.get("/admin/outbox").get_data(as_text=True)
    version_page = admin.get(f"/campaigns/{lead.id}/steps/{step.id}/versions/2")
    assert "Version two, {{ contact.first_name }}." in version_page.get_data(as_text=True)
