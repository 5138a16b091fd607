"""The import pages: upload, mapping, start (an RQ job), progress, failed rows, resume."""

from __future__ import annotations

import csv
import io
import re
import sys
from datetime import timedelta

import sqlalchemy as sa

from crm_app.drip.audience.contacts import MAX_CUSTOM_FIELDS
from crm_app.models import Contact, ContactImport, utcnow
from crm_app.queue import get_queue, get_redis
from tests.conftest import ROOT
from tests.import_helpers import count, csv_text, queued_import, run
from tests.test_body_limits import UnreadableBody

GOOD_AND_BAD = csv_text(
    [
        ["ada@example.com", "Ada", "Lovelace", "Engines", "lead", "Europe/London"],
        ["=cmd|' /C calc'!A0", "Evil", "Formula", "", "lead", ""],
        ["bob@example.com", "Bob", "Builder", "", "client", ""],
    ]
)


def upload(client, content: str | bytes, filename: str = "contacts.csv", **kw):
    data = content.encode() if isinstance(content, str) else content
    return client.post("/imports/", {"file": (io.BytesIO(data), filename)}, **kw)


def the_import(session) -> ContactImport:
    session.expire_all()
    return session.scalars(sa.select(ContactImport).order_by(ContactImport.id.desc())).first()


def work_in_process() -> None:
    """A burst worker of the class worker.py runs, in this process."""
    sys.path.insert(0, str(ROOT))
    from worker import AppWorker

    AppWorker([get_queue()], connection=get_redis()).work(burst=True, with_scheduler=False)


def start_form(session, contact_import: ContactImport, **changes) -> dict:
    from crm_app.drip.audience.imports import setup_values

    return {**setup_values(contact_import), **changes}


def test_upload_shows_the_first_rows_and_the_guessed_mapping(staff, session, campaigns):
    response = upload(staff, GOOD_AND_BAD)

    contact_import = the_import(session)
    assert response.status_code == 302
    assert response.headers["Location"].endswith(f"/imports/{contact_import.id}")
    assert (contact_import.status, contact_import.total_rows) == ("draft", 3)
    assert contact_import.created_by == "user:staff@example.com"
    page = staff.get(f"/imports/{contact_import.id}").get_data(as_text=True)
    assert "Read 3 rows from contacts.csv" in page
    assert "ada@example.com" in page and "Engines" in page  # the preview
    for column, guess in ((0, "email"), (4, "contact_type")):
        selected = rf'id="field-column-{column}"[^>]*>.*?<option value="{guess}" selected'
        assert re.search(selected, page, re.S)
    assert count(session, Contact) == 0  # nothing imported before the start


def test_the_preview_keeps_the_cells_the_header_names(staff, session):
    # A row of a million cells was stored and shown whole on the mapping page.
    wide_row = "bob@example.com,Bob" + ",x" * 100_000
    upload(staff, f"email,first_name\nada@example.com,Ada\n{wide_row}\n")

    contact_import = the_import(session)
    assert contact_import.preview_rows == [["ada@example.com", "Ada"], ["bob@example.com", "Bob"]]
    assert contact_import.total_rows == 2  # the wide row is still imported, and fails there


def test_a_file_over_the_limit_is_refused_before_anything_is_stored(
    staff, session, app, monkeypatch
):
    monkeypatch.setitem(app.config, "IMPORT_MAX_BYTES", 200)
    big = csv_text([[f"p{n}@example.com", "", "", "", "lead", ""] for n in range(20)])

    response = upload(staff, big)

    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert 'id="error-file"' in page and "the limit is 0.0 MB" in page
    assert count(session, ContactImport) == 0


def test_a_body_far_over_the_limit_is_refused_next_to_the_field(staff, session, app, monkeypatch):
    monkeypatch.setitem(app.config, "IMPORT_MAX_BYTES", 1000)
    response = upload(staff, b"email\n" + b"x@example.com\n" * 10_000)
    assert response.status_code == 413
    page = response.get_data(as_text=True)
    assert 'id="error-file"' in page and "larger than the limit" in page
    assert count(session, ContactImport) == 0


def test_an_oversized_upload_is_refused_by_content_length_before_csrf_reads_it(
    staff, session, app, monkeypatch
):
    monkeypatch.setitem(app.config, "IMPORT_MAX_BYTES", 1000)
    token = staff.csrf_token()
    oversized = {
        "content_type": "multipart/form-data; boundary=x",
        "environ_overrides": {"wsgi.input": UnreadableBody(), "CONTENT_LENGTH": "5000000"},
    }

    with app.app_context():
        response = staff.client.post("/imports/", headers={"X-CSRFToken": token}, **oversized)
    staff.logout()
    with app.app_context():
        visitor = staff.client.post("/imports/", **oversized)

    assert response.status_code == 413
    assert 'id="error-file"' in response.get_data(as_text=True)
    # A visitor (login_required has not run yet) gets the generic page, not the imports.
    assert visitor.status_code == 413
    assert "Too large (413)" in visitor.get_data(as_text=True)
    assert count(session, ContactImport) == 0


def test_a_file_that_is_not_csv_is_refused_next_to_the_field(staff, session):
    response = upload(staff, b"PK\x03\x04\x14\x00rest of a zip", filename="contacts.xlsx")
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert 'aria-invalid="true"' in page and "not a CSV file" in page
    assert count(session, ContactImport) == 0


def test_no_file_chosen_is_a_message_too(staff):
    response = staff.post("/imports/", {})
    assert response.status_code == 422
    assert "Choose a CSV file to upload." in response.get_data(as_text=True)


def test_the_upload_form_answers_htmx_with_the_form_and_its_error(staff):
    response = upload(staff, b"", htmx=True, headers={"HX-Target": "upload-form"})
    page = response.get_data(as_text=True)
    assert response.status_code == 422
    assert page.lstrip().startswith('<section id="upload-form"') and "The file is empty." in page


def test_no_email_column_mapped_is_refused_next_to_the_mapping_and_nothing_starts(
    staff, session, campaigns
):
    upload(staff, GOOD_AND_BAD)
    contact_import = the_import(session)
    form = start_form(session, contact_import, **{"column-0": ""})

    response = staff.post(f"/imports/{contact_import.id}/start", form)

    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert 'id="error-mapping"' in page and "Map one column to Email" in page
    assert the_import(session).status == "draft"
    assert get_queue().count == 0


def test_a_field_mapped_twice_and_a_bad_custom_name_are_refused_next_to_their_column(
    staff, session
):
    upload(staff, GOOD_AND_BAD)
    contact_import = the_import(session)
    form = start_form(
        session, contact_import, **{"column-1": "email", "column-2": "custom", "custom-2": "2 bad"}
    )
    page = staff.post(f"/imports/{contact_import.id}/start", form).get_data(as_text=True)
    assert re.search(r'id="error-column-1"[^>]*>Email is already column 1 \(email\)\.<', page)
    assert 'id="error-custom-2"' in page


def test_more_custom_columns_than_a_contact_may_carry_import_row_by_row(staff, session):
    """An export of contacts with different custom fields has a column per field of any
    of them, more than one contact may carry: it imports, and only a row that fills
    more than a contact may carry fails, saying why."""
    header = ["email", *(f"extra {n}" for n in range(MAX_CUSTOM_FIELDS + 1))]
    one_field = ["ada@example.com", "x", *([""] * MAX_CUSTOM_FIELDS)]
    every_field = ["bob@example.com", *("x" * (MAX_CUSTOM_FIELDS + 1))]
    upload(staff, csv_text([one_field, every_field], header))
    contact_import = the_import(session)

    response = staff.post(
        f"/imports/{contact_import.id}/start", start_form(session, contact_import)
    )

    assert response.status_code == 302
    work_in_process()
    done = the_import(session)
    assert (done.status, done.created_count, done.failed_count) == ("done", 1, 1)
    ada = session.scalar(sa.select(Contact).where(Contact.email == "ada@example.com"))
    assert ada.custom_fields == {"extra_0": "x"}
    page = staff.get(f"/imports/{done.id}").get_data(as_text=True)
    assert f"At most {MAX_CUSTOM_FIELDS} custom fields (this has {MAX_CUSTOM_FIELDS + 1})" in page


def test_start_queues_the_job_and_a_worker_imports_the_file(staff, session, campaigns):
    upload(staff, GOOD_AND_BAD)
    contact_import = the_import(session)

    response = staff.post(
        f"/imports/{contact_import.id}/start", start_form(session, contact_import)
    )

    assert response.status_code == 302
    assert the_import(session).status == "queued"
    assert get_queue().count == 1
    work_in_process()

    done = the_import(session)
    assert (done.status, done.created_count, done.failed_count) == ("done", 2, 1)
    page = staff.get(f"/imports/{done.id}").get_data(as_text=True)
    assert 'data-state="done"' in page and 'value="3" max="3"' in page
    assert 'data-count="created">2<' in page and 'data-count="enrolled">2<' in page
    assert "Not a valid email address" in page
    assert "hx-trigger" not in page.split('id="import-progress"')[1].split(">")[0]


def test_the_progress_panel_polls_while_the_import_runs(staff, session, campaigns):
    contact_import = queued_import(session, GOOD_AND_BAD)
    contact_import.status, contact_import.rows_done, contact_import.created_count = "running", 2, 1
    session.commit()

    response = staff.get(
        f"/imports/{contact_import.id}", htmx=True, headers={"HX-Target": "import-progress"}
    )

    fragment = response.get_data(as_text=True)
    assert fragment.lstrip().startswith('<section id="import-progress"')  # the panel alone
    assert 'hx-trigger="every 1s"' in fragment
    assert 'value="2" max="3"' in fragment and "2 of 3 rows (67 %)" in fragment
    assert 'data-count="created">1<' in fragment
    whole_page = staff.get(f"/imports/{contact_import.id}").get_data(as_text=True)
    assert '<noscript><meta http-equiv="refresh"' in whole_page  # without JavaScript


def test_a_stalled_import_offers_resume_which_goes_on_after_the_last_chunk(
    staff, session, campaigns
):
    contact_import = queued_import(session, GOOD_AND_BAD)
    contact_import.status, contact_import.rows_done = "running", 1
    contact_import.heartbeat_at = utcnow() - timedelta(minutes=10)
    session.commit()
    page = staff.get(f"/imports/{contact_import.id}").get_data(as_text=True)
    assert 'data-state="stalled"' in page and "Resume the import" in page
    # The list says the same, not "running".
    listed = staff.get("/imports/").get_data(as_text=True)
    assert '<span class="badge badge-import-stalled">Stalled</span>' in listed
    assert "badge-import-running" not in listed

    response = staff.post(f"/imports/{contact_import.id}/resume")

    assert response.status_code == 302
    assert the_import(session).status == "queued"
    work_in_process()
    done = the_import(session)
    assert done.status == "done"
    # The first row counted as done before the stall is not imported again: only bob.
    assert [c.email for c in session.scalars(sa.select(Contact))] == ["bob@example.com"]


def test_resume_is_refused_for_an_import_that_is_running(staff, session, campaigns):
    contact_import = queued_import(session, GOOD_AND_BAD)
    response = staff.post(f"/imports/{contact_import.id}/resume")
    assert response.status_code == 302
    page = staff.get(response.headers["Location"]).get_data(as_text=True)
    assert "This import is queued: there is nothing to resume." in page
    assert get_queue().count == 0


def test_the_failed_rows_download_carries_line_reason_and_guarded_cells(staff, session, campaigns):
    contact_import = queued_import(session, GOOD_AND_BAD)
    run(session, contact_import)

    response = staff.get(f"/imports/{contact_import.id}/failed-rows.csv")

    assert response.mimetype == "text/csv"
    assert "attachment" in response.headers["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(response.get_data(as_text=True))))
    assert rows[0] == ["import_line", "import_error", "email", "first_name", "last_name",
                       "company", "type", "timezone"]  # fmt: skip
    assert rows[1][0] == "3" and rows[1][1].startswith("Not a valid email address")
    assert rows[1][2] == "'=cmd|' /C calc'!A0"  # a formula shown as text, never run
    assert len(rows) == 2


def test_the_failed_rows_file_uploaded_again_reads_the_same_values(staff, session, campaigns):
    header = ["email", "phone", "notes"]
    text = csv_text([["not an address", "'+44 20", "''=x"]], header)
    first = queued_import(session, text)
    run(session, first)
    fixed = staff.get(f"/imports/{first.id}/failed-rows.csv").get_data(as_text=True)
    fixed = fixed.replace("not an address", "ada@example.com")

    report = run(session, queued_import(session, fixed))

    assert report.counts.created == 1
    ada = session.scalar(sa.select(Contact).where(Contact.email == "ada@example.com"))
    assert (ada.phone, ada.notes) == ("+44 20", "'=x")  # as the first file would give


def test_the_imports_page_lists_uploads_and_every_page_links_to_it(staff, session, campaigns):
    run(session, queued_import(session, GOOD_AND_BAD))
    page = staff.get("/imports/").get_data(as_text=True)
    assert "contacts.csv" in page and "badge-import-done" in page
    assert 'href="/imports/"' in staff.get("/contacts/").get_data(as_text=True)


def test_imports_need_a_login(web, session):
    assert web.get("/imports/").status_code == 302
    assert upload(web, GOOD_AND_BAD).status_code == 302
    assert count(session, ContactImport) == 0


def test_an_upload_without_the_csrf_token_is_refused(staff, session):
    response = upload(staff, GOOD_AND_BAD, csrf=False)
    assert response.status_code == 400
    assert count(session, ContactImport) == 0


def test_starting_an_import_is_in_the_audit_log(admin, session, campaigns):
    from crm_app.models import AuditEntry

    upload(admin, "email,first name\nann@example.com,Ann\n")
    contact_import = the_import(session)
    admin.post(f"/imports/{contact_import.id}/start", start_form(session, contact_import))
    summaries = session.scalars(
        sa.select(AuditEntry.summary).where(AuditEntry.target_type == "import")
    ).all()
    assert summaries == ["Started importing contacts.csv (1 rows)"]
