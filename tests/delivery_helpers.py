"""Helpers for the delivery tests (their fixtures live in tests/conftest_delivery.py)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from datetime import time as dtime
from pathlib import Path

import sqlalchemy as sa

from crm_app.models import Campaign, Contact, Enrollment, Message, utcnow
from tests.sendgrid_server import FakeSendGrid

ROOT = Path(__file__).resolve().parent.parent
# A Wednesday, 10:00 UTC: inside the default Mon-Fri 09:00-17:00 window in UTC.
WEDNESDAY_10 = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)


def open_all_week(campaign: Campaign) -> None:
    """A window that is open whenever the test runs (worker subprocesses use the real clock)."""
    campaign.send_days = "0,1,2,3,4,5,6"
    campaign.send_start = dtime(0, 0)
    campaign.send_end = dtime(23, 59, 59)


def bulk_due(
    session, campaign: Campaign, count: int, due_at: datetime, *, prefix: str = "bulk"
) -> list[int]:
    """`count` contacts each with an active enrolment due at `due_at` (fast, no timeline)."""
    contacts = Contact.__table__
    rows = [
        {
            "first_name": f"Bulk{n}",
            "last_name": "Contact",
            "email": f"{prefix}{n}@example.com",
            "phone": "",
            "company": "Bulk Co",
            "title": "",
            "industry": "",
            "contact_type": campaign.contact_type or "lead",
            "timezone": "UTC",
            "notes": "",
            "custom_fields": {},
            "email_status": "ok",
            "created_at": due_at,
            "updated_at": due_at,
        }
        for n in range(count)
    ]
    session.execute(contacts.insert(), rows)
    ids = list(
        session.scalars(sa.select(Contact.id).where(Contact.email.like(f"{prefix}%@example.com")))
    )
    session.execute(
        Enrollment.__table__.insert(),
        [
            {
                "contact_id": cid,
                "campaign_id": campaign.id,
                "status": "active",
                "current_step_id": campaign.steps[0].id,
                "next_send_at": due_at,
                "source": "test",
                "enrolled_by": "test",
                "enrolled_at": due_at,
                "end_reason": "",
            }
            for cid in ids
        ],
    )
    session.commit()
    return ids


def message_for(session, contact: Contact) -> Message:
    return session.scalars(
        sa.select(Message).where(Message.contact_id == contact.id).order_by(Message.id.desc())
    ).first()


def statuses(session) -> dict[str, int]:
    return dict(
        session.execute(sa.select(Message.status, sa.func.count()).group_by(Message.status)).all()
    )


def worker_env(app, database_url: str, redis_url: str, fake: FakeSendGrid, tmp_path) -> dict:
    env = dict(os.environ)
    env.update(
        {
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "SECRET_KEY": app.config["SECRET_KEY"],
            "SENDGRID_API_KEY": "SG.test-key",
            "SENDGRID_API_HOST": fake.url,
            "SENDGRID_TIMEOUT": "5",
            "PUBLIC_BASE_URL": "http://localhost",
            "FREQUENCY_CAP_COUNT": "0",  # as the suite's app (tests/conftest.py)
            "DRIP_INSTANCE_PATH": str(tmp_path / "instance"),
            "RQ_QUEUE": app.config["RQ_QUEUE"],  # the run's own queue, never a shared default
            "PYTHONPATH": str(ROOT),
        }
    )
    return env


def start_worker(env: dict, *args: str) -> subprocess.Popen:
    # Its own process group: RQ runs its scheduler in a child process, which a kill of
    # the worker alone would leave running after the test.
    return subprocess.Popen(
        [sys.executable, str(ROOT / "worker.py"), *args],
        env=env,
        cwd=str(ROOT),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def kill_worker(worker: subprocess.Popen) -> None:
    """SIGKILL the worker and its children at once, as when its machine or container dies."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(worker.pid, signal.SIGKILL)
    worker.wait(10)


def wait_for(predicate, timeout: float = 30.0, interval: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False


def send_due_email(session, enrollment: Enrollment, backend, settings) -> Message:
    """Make the enrolment due now, tick, and deliver its email through `backend`."""
    from crm_app.drip.delivery.pipeline import deliver_messages
    from crm_app.drip.delivery.tick import run_tick
    from crm_app.models import utcnow

    open_all_week(enrollment.campaign)
    enrollment.next_send_at = utcnow()
    session.commit()
    run_tick(session, lambda ids: None)
    message = session.scalar(
        sa.select(Message)
        .where(Message.enrollment_id == enrollment.id)
        .order_by(Message.id.desc())
        .limit(1)
    )
    deliver_messages(session, [message.id], backend, settings)
    session.refresh(message)
    return message


def queued_now(session, contact: Contact) -> Message:
    """The contact's first email, due a second ago and queued by a tick."""
    from crm_app.drip.delivery.tick import run_tick

    enrollment = session.scalar(sa.select(Enrollment).where(Enrollment.contact_id == contact.id))
    open_all_week(enrollment.campaign)
    enrollment.next_send_at = utcnow() - timedelta(seconds=1)
    session.commit()
    run_tick(session, lambda ids: None, now=utcnow())
    return message_for(session, contact)


class Retries:
    """A `schedule_retry` that remembers (message id, when) instead of calling RQ."""

    def __init__(self) -> None:
        self.scheduled: list[tuple[int, datetime]] = []

    def __call__(self, message_ids: list[int], when: datetime) -> None:
        self.scheduled.extend((message_id, when) for message_id in message_ids)

    @property
    def ids(self) -> list[int]:
        return [message_id for message_id, _ in self.scheduled]
