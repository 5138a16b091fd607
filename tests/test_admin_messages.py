"""Admins see failed and in-doubt messages and act on them; the Outbox shows what was kept."""

from __future__ import annotations

from datetime import timedelta

import pytest
import redis
import sqlalchemy as sa
from rq import Queue

from crm_app.extensions import db
from crm_app.models import Activity, EmailEvent, Message, StepVariant, utcnow


@pytest.fixture
def message(session, make_contact):
    """A contact's first Lead email, in a state each test sets."""
    contact = make_contact("lead", email="reader@example.com")
    enrollment = contact.enrollments[0]

    def _make(status: str, step: int = 1, **fields) -> Message:
        row = Message(
            enrollment_id=enrollment.id,
            step_id=enrollment.campaign.steps[step - 1].id,
            contact_id=contact.id,
            campaign_id=enrollment.campaign_id,
            status=status,
            to_email=contact.email,
            subject="Hello from us",
            html="<p>Hi <b>Reader</b></p>",
            text="Hi Reader",
            headers={"List-Unsubscribe": "<https://crm.example.com/unsubscribe/x>"},
            attempts=1,
            **fields,
        )
        session.add(row)
        session.commit()
        return row

    return _make


def queued_job_args(app) -> list:
    queue = Queue(app.config["RQ_QUEUE"], connection=redis.Redis.from_url(app.config["REDIS_URL"]))
    return [job.args for job in queue.jobs]


def test_failed_list_shows_the_error_and_retry_requeues(app, admin, session, message):
    failed = message("failed", error="400: The from address does not match a verified Sender")
    page = admin.get("/admin/messages?status=failed")
    assert page.status_code == 200
    assert b"does not match a verified Sender" in page.data
    response = admin.post(f"/admin/messages/{failed.id}/retry")
    assert response.status_code == 302
    session.expire_all()
    assert session.get(Message, failed.id).status == "queued"
    assert queued_job_args(app) == [([failed.id],)]
    assert session.scalar(sa.select(Activity.kind).where(Activity.kind == "email_retried"))


def test_in_doubt_without_any_event_for_two_hours_says_no_trace(admin, message):
    old = message("in_doubt", claimed_at=utcnow() - timedelta(hours=3))
    recent = message("in_doubt", step=2, claimed_at=utcnow() - timedelta(minutes=5))
    page = admin.get("/admin/messages?status=in_doubt").get_data(as_text=True)
    old_row = page[page.index(f'id="message-{old.id}"') :]
    assert "no trace at SendGrid" in old_row.split("</tr>")[0]
    recent_row = page[page.index(f'id="message-{recent.id}"') :]
    assert "no trace at SendGrid" not in recent_row.split("</tr>")[0]


def test_an_event_from_sendgrid_means_there_is_a_trace(admin, session, message):
    doubtful = message("in_doubt", claimed_at=utcnow() - timedelta(hours=3))
    session.add(EmailEvent(sg_event_id="e1", event="deferred", message_id=doubtful.id))
    session.commit()
    page = admin.get("/admin/messages?status=in_doubt").get_data(as_text=True)
    row = page[page.index(f'id="message-{doubtful.id}"') :].split("</tr>")[0]
    assert "no trace at SendGrid" not in row


def test_mark_sent_resolves_and_advances(admin, session, message):
    doubtful = message("in_doubt", claimed_at=utcnow() - timedelta(hours=3))
    admin.post(f"/admin/messages/{doubtful.id}/mark-sent")
    session.expire_all()
    resolved = session.get(Message, doubtful.id)
    assert resolved.status == "sent"
    assert resolved.enrollment.current_step == 2


def test_resend_in_doubt_requeues(app, admin, session, message):
    doubtful = message("in_doubt", claimed_at=utcnow() - timedelta(hours=3))
    admin.post(f"/admin/messages/{doubtful.id}/resend")
    session.expire_all()
    assert session.get(Message, doubtful.id).status == "queued"
    assert queued_job_args(app) == [([doubtful.id],)]
    # The timeline names the admin as people read them, not by the actor's id.
    detail = session.scalar(
        sa.select(Activity.detail).where(Activity.kind == "email_resent").limit(1)
    )
    assert detail.endswith("queued again by admin@example.com")


def _refused(app, admin, session, message: Message, action: str, because: bytes) -> None:
    """The action is refused with the skip rule's reason; the email keeps its state and
    nothing is queued."""
    status = message.status
    response = admin.post(f"/admin/messages/{message.id}/{action}", follow_redirects=True)

    assert because in response.data
    session.expire_all()
    assert session.get(Message, message.id).status == status
    assert queued_job_args(app) == []


def test_resend_refuses_an_email_whose_enrolment_has_ended(app, admin, session, message):
    """Queued again, the worker would skip it at once: "queued again" would be untrue,
    and the email would seem on its way while it never goes."""
    doubtful = message("in_doubt", claimed_at=utcnow() - timedelta(hours=3))
    doubtful.enrollment.status, doubtful.enrollment.end_reason = "stopped", "stopped by a user"
    session.commit()

    because = b"would not be sent now: the enrolment has ended (stopped by a user)"
    _refused(app, admin, session, doubtful, "resend", because)


def test_retry_refuses_an_email_to_a_suppressed_address(app, admin, session, message):
    failed = message("failed", error="500: try later")
    failed.contact.email_status = "unsubscribed"
    session.commit()

    _refused(app, admin, session, failed, "retry", b"would not be sent now")


def test_action_on_the_wrong_state_is_a_clear_message(admin, session, message):
    sent = message("sent", sent_at=utcnow())
    response = admin.post(f"/admin/messages/{sent.id}/retry", follow_redirects=True)
    assert b"is sent, not failed" in response.data
    assert session.get(Message, sent.id).status == "sent"


def test_outbox_lists_and_shows_the_rendered_email(admin, message):
    kept = message("sent", sent_at=utcnow(), provider_message_id="outbox-1")
    listing = admin.get("/admin/outbox")
    assert b"Hello from us" in listing.data
    detail = admin.get(f"/admin/outbox/{kept.id}").get_data(as_text=True)
    assert "List-Unsubscribe" in detail
    assert "Hi Reader" in detail
    assert 'sandbox=""' in detail  # the email's HTML is shown in a sandboxed frame


def test_outbox_says_which_variant_each_email_was_in_the_list_query(admin, session, message):
    # Two emails of A/B tests (variants A and B), one of no test.
    rows = {}
    kept = [
        message("sent", step=n, sent_at=utcnow(), provider_message_id=f"outbox-{n}")
        for n in (1, 2, 3)
    ]
    for row, key in zip(kept[:2], "AB", strict=True):
        variant = StepVariant(step_id=row.step_id, key=key, weight=50, subject=f"Option {key}")
        session.add(variant)
        session.flush()
        row.variant_id = variant.id
        rows[key] = row
    session.commit()
    statements: list[str] = []

    def record(conn, cursor, statement, *args):
        statements.append(statement)

    sa.event.listen(db.engine, "before_cursor_execute", record)
    try:
        page = admin.get("/admin/outbox").get_data(as_text=True)
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", record)
    assert page.count('class="variant-key"') == 2
    assert 'email 1 · <span class="variant-key">variant A</span>' in page
    assert 'email 2 · <span class="variant-key">variant B</span>' in page
    # Loaded with the list's query, not once per row.
    assert len([s for s in statements if "step_variants" in s]) == 1, statements
    detail = admin.get(f"/admin/outbox/{rows['B'].id}").get_data(as_text=True)
    assert "variant B" in detail


@pytest.mark.parametrize(
    "url", ["/admin/messages?status=failed", "/admin/messages?status=in_doubt", "/admin/outbox"]
)
def test_staff_get_403_and_logged_out_go_to_login(web, staff_user, url):
    assert web.get(url).status_code == 302
    web.login("staff@example.com", "staff-password")
    assert web.get(url).status_code == 403


def test_staff_cannot_act_on_messages(staff, session, message):
    failed = message("failed")
    assert staff.post(f"/admin/messages/{failed.id}/retry").status_code == 403
    assert session.get(Message, failed.id).status == "failed"


def test_the_outbox_says_whether_emails_are_kept_here_now(app, admin, message, monkeypatch):
    """With a SendGrid key set, the emails listed were kept before it: the page said "No
    SENDGRID_API_KEY is set" whatever the configuration."""
    message("sent", sent_at=utcnow(), provider_message_id="outbox-1")
    assert "No <code>SENDGRID_API_KEY</code> is set" in admin.get("/admin/outbox").get_data(
        as_text=True
    )
    monkeypatch.setitem(app.config, "SENDGRID_API_KEY", "SG.test-key")
    page = admin.get("/admin/outbox").get_data(as_text=True)
    assert "No <code>SENDGRID_API_KEY</code> is set" not in page
    assert "Emails now go through SendGrid" in page


def test_the_in_doubt_list_says_they_are_queued_again_by_themselves(app, admin, message):
    """It said "never resent by themselves", which the tick's auto-resolution contradicts."""
    message("in_doubt")
    page = " ".join(admin.get("/admin/messages?status=in_doubt").get_data(as_text=True).split())
    assert "never resent by themselves" not in page
    minutes = f"{app.config['IN_DOUBT_AUTO_RESOLVE_MINUTES']:g}"
    assert f"one with no event after {minutes} minutes is queued again by itself" in page
