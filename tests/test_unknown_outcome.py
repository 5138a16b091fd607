"""An unknown outcome is in doubt, never a retry: once the request has left, a timeout
or a reset may hide an email SendGrid accepted. Only failures before the request left
(connection refused, DNS) are retried blindly."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from crm_app.drip.delivery.backends import SendGridBackend
from crm_app.drip.delivery.pipeline import deliver_messages
from crm_app.drip.delivery.tick import run_tick
from crm_app.models import Activity, utcnow
from tests.delivery_helpers import Retries, queued_now

pytest_plugins = ["tests.conftest_delivery"]


@pytest.mark.parametrize("answer", ["hang", "reset"])
def test_a_request_sent_but_never_answered_is_in_doubt_and_never_sent_again(
    session, make_contact, settings, fake_sendgrid, answer
):
    fake_sendgrid.hang_seconds = 3
    fake_sendgrid.script(answer)
    backend = SendGridBackend("SG.k", fake_sendgrid.url, "a@example.com", timeout=0.5)
    contact = make_contact("lead")
    message = queued_now(session, contact)
    retries = Retries()

    report = deliver_messages(session, [message.id], backend, settings, schedule_retry=retries)
    again = deliver_messages(session, [message.id], backend, settings, schedule_retry=retries)
    later = run_tick(session, lambda ids: None, now=utcnow() + timedelta(hours=2))

    session.refresh(message)
    assert report.in_doubt == [message.id] and report.retrying == []
    assert again.not_claimed == [message.id] and later.enqueued == []
    assert message.status == "in_doubt" and message.attempts == 1
    assert "may have sent it" in message.error
    assert retries.scheduled == []
    assert fake_sendgrid.answers == [answer]  # one request reached the server, only one
    assert (
        session.scalar(
            sa.select(sa.func.count(Activity.id)).where(
                Activity.contact_id == contact.id, Activity.kind == "email_retry"
            )
        )
        == 0
    )
    # The contact's timeline says so, once (a later "queued again" follows something).
    in_doubt = session.scalars(
        sa.select(Activity.detail).where(
            Activity.contact_id == contact.id, Activity.kind == "email_in_doubt"
        )
    ).all()
    assert len(in_doubt) == 1 and "may or may not have been sent" in in_doubt[0]
