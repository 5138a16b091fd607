"""A real worker.py process runs an import and is killed in the middle of it: whole
chunks only, never half a contact, and resuming finishes the file without doubles."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from crm_app.models import Activity, Contact, ContactImport, Enrollment
from crm_app.queue import enqueue_import
from tests.delivery_helpers import kill_worker, start_worker, wait_for, worker_env
from tests.import_helpers import count, many_rows, queued_import

pytestmark = pytest.mark.slow

ROWS, CHUNK = 3000, 20


def _progress(session, import_id: int) -> tuple[str, int]:
    session.expire_all()
    contact_import = session.get(ContactImport, import_id)
    return contact_import.status, contact_import.rows_done


def _whole_contacts(session) -> int:
    """Contacts that have their enrolment and both timeline rows; asserts nobody is half."""
    contacts = count(session, Contact)
    assert count(session, Enrollment) == contacts
    per_contact = session.execute(
        sa.select(Activity.contact_id, sa.func.count()).group_by(Activity.contact_id)
    ).all()
    assert {n for _, n in per_contact} <= {2}  # "created" and "enrolled", nothing else
    assert len(per_contact) == contacts
    return contacts


def test_a_worker_killed_mid_import_leaves_whole_chunks_and_resume_finishes_without_doubles(
    session, staff, app, campaigns, fake_sendgrid, database_url, redis_url, tmp_path, monkeypatch
):
    contact_import = queued_import(session, many_rows(ROWS))
    enqueue_import(contact_import.id)
    env = worker_env(app, database_url, redis_url, fake_sendgrid, tmp_path)
    env["IMPORT_CHUNK_SIZE"] = str(CHUNK)

    worker = start_worker(env)
    try:
        started = wait_for(lambda: _progress(session, contact_import.id)[1] >= 5 * CHUNK, 90)
        assert started, worker.stdout.read1().decode() if worker.poll() is not None else "stuck"
        kill_worker(worker)
    finally:
        kill_worker(worker)

    status, done = _progress(session, contact_import.id)
    assert status == "running" and 0 < done < ROWS, "the kill must land mid-import"
    assert done % CHUNK == 0  # whole chunks only
    assert _whole_contacts(session) == done

    # The page sees no more progress, and offers to resume.
    monkeypatch.setitem(app.config, "IMPORT_STALL_SECONDS", 1)
    assert wait_for(
        lambda: "Resume the import" in staff.get(f"/imports/{contact_import.id}").get_data(True),
        timeout=10,
        interval=0.2,
    )
    assert staff.post(f"/imports/{contact_import.id}/resume").status_code == 302

    second = start_worker(env, "--burst")
    output = second.communicate(timeout=180)[0].decode()
    assert second.returncode == 0, output

    assert _progress(session, contact_import.id) == ("done", ROWS)
    assert _whole_contacts(session) == ROWS
    emails = session.scalars(sa.select(sa.func.lower(Contact.email)))
    assert len(set(emails)) == ROWS
    finished = session.get(ContactImport, contact_import.id)
    assert (finished.created_count, finished.failed_count) == (ROWS, 0)
    assert finished.enrolled_count == ROWS
