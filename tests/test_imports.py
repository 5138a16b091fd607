"""The CSV import job's core: rows to contacts, bad rows reported, enrolment by type,
skip or update of existing addresses, chunks that commit whole, resume."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from crm_app.drip.audience import import_writes
from crm_app.drip.audience.address_hash import address_hash, app_erasure_key, key_id
from crm_app.drip.audience.contact_list import contact_list_page
from crm_app.drip.audience.contacts import CUSTOM_FIELD_VALUE_MAX, MAX_CUSTOM_FIELDS
from crm_app.drip.audience.import_run import import_plan, run_import
from crm_app.drip.audience.list_request import ListRequest
from crm_app.models import (
    Activity,
    Contact,
    Enrollment,
    HashedSuppression,
    Suppression,
    utcnow,
)
from tests.import_helpers import (
    count,
    csv_text,
    failures,
    many_rows,
    queued_import,
    run,
    totals,
)


def contact(session, email: str) -> Contact | None:
    return session.scalar(sa.select(Contact).where(Contact.email == email))


def timeline(session, person: Contact) -> list[tuple[str, str]]:
    rows = session.execute(
        sa.select(Activity.kind, Activity.detail)
        .where(Activity.contact_id == person.id)
        .order_by(Activity.id)
    )
    return rows.all()


def active_campaigns(person: Contact) -> list[str]:
    return sorted(e.campaign.name for e in person.enrollments if e.status == "active")


def test_good_rows_become_contacts_enrolled_by_type_with_their_timeline(session, campaigns):
    text = csv_text(
        [
            ["ada@example.com", "Ada", "Lovelace", "Engines", "lead", "Europe/London"],
            ["bob@example.com", "Bob", "Builder", "", "Client", ""],
        ]
    )
    contact_import = queued_import(session, text)

    report = run(session, contact_import)

    assert report.status == "done"
    ada = contact(session, "ada@example.com")
    assert (ada.first_name, ada.company, ada.timezone) == ("Ada", "Engines", "Europe/London")
    assert active_campaigns(ada) == ["Lead"]
    assert ada.enrollments[0].source == "import"
    assert ada.enrollments[0].next_send_at is not None
    assert timeline(session, ada) == [
        ("created", f"Contact created by import #{contact_import.id} (contacts.csv)"),
        ("enrolled", "Enrolled in Lead (import)"),
    ]
    assert active_campaigns(contact(session, "bob@example.com")) == ["Client"]
    session.refresh(contact_import)
    assert contact_import.status == "done"
    assert (contact_import.rows_done, contact_import.created_count) == (2, 2)
    assert contact_import.enrolled_count == 2


def test_each_bad_row_is_reported_with_its_line_and_reason_and_good_rows_are_kept(
    session, campaigns, staff_user
):
    header = ["email", "first_name", "type", "timezone", "owner", "title"]
    rows = [
        ["good1@example.com", "Good", "lead", "UTC", "staff@example.com", "CEO"],  # line 2
        ["not-an-email", "Bad", "lead", "", "", ""],  # 3
        ["", "Nobody", "lead", "", "", ""],  # 4
        ["type@example.com", "Bad", "boss", "", "", ""],  # 5
        ["zone@example.com", "Bad", "lead", "Mars/Olympus", "", ""],  # 6
        ["GOOD1@example.com", "Again", "lead", "", "", ""],  # 7: same address as line 2
        ["long@example.com", "x" * 101, "lead", "", "", ""],  # 8
        ["owner@example.com", "Bad", "lead", "", "nobody@example.com", ""],  # 9
        ["cells@example.com", "Bad", "lead", "", "", "", "stray"],  # 10
        ["good2@example.com", "Good", "", "", "Staff", ""],  # 11
    ]
    contact_import = queued_import(session, csv_text(rows, header))

    report = run(session, contact_import, chunk_size=3)

    assert failures(session, contact_import) == {
        3: "Not a valid email address: An email address must have an @-sign.",
        4: "An email address is required.",
        5: "Unknown type 'boss': use one of networking, lead, prospect, client.",
        6: "Unknown time zone 'Mars/Olympus': use an IANA name such as Europe/Paris.",
        7: "Duplicate email: GOOD1@example.com is already on line 2.",
        8: "First name is longer than 100 characters (101).",
        9: "Unknown owner 'nobody@example.com': use a user's email address or name.",
        10: "The row has 7 cells but the header names 6 columns "
        "(is a value with the delimiter in it missing its quotes?)",
    }
    assert (report.counts.created, report.counts.failed) == (2, 8)
    assert {c.email for c in session.scalars(sa.select(Contact))} == {
        "good1@example.com",
        "good2@example.com",
    }
    assert contact(session, "good2@example.com").owner_id == staff_user.id  # by name


def test_a_row_with_several_problems_lists_them_all(session, campaigns):
    contact_import = queued_import(session, csv_text([["bad", "A", "B", "", "boss", "Nowhere"]]))
    run(session, contact_import)
    reason = failures(session, contact_import)[2]
    assert "Not a valid email address" in reason
    assert "Unknown type 'boss'" in reason and "Unknown time zone 'Nowhere'" in reason


def test_importing_the_same_file_again_creates_nothing_new(session, campaigns):
    text = many_rows(7) + "bad-address,X,Y,Z,lead,UTC\r\n"
    run(session, queued_import(session, text), chunk_size=3)
    before = totals(session)

    again = queued_import(session, text)
    report = run(session, again, chunk_size=3)

    assert totals(session) == before
    assert (report.counts.created, report.counts.skipped, report.counts.failed) == (0, 7, 1)


def test_missing_type_time_zone_and_owner_come_from_the_options(session, campaigns, staff_user):
    header = ["Email", "Name"]
    text = csv_text([["pat@example.com", "Pat van der Berg"], ["solo@example.com", "Cher"]], header)
    options = {
        "default_type": "prospect",
        "default_timezone": "America/New_York",
        "default_owner_id": str(staff_user.id),
    }
    run(session, queued_import(session, text, **options))

    pat = contact(session, "pat@example.com")
    assert (pat.first_name, pat.last_name) == ("Pat van der", "Berg")
    assert (pat.contact_type, pat.timezone, pat.owner_id) == (
        "prospect",
        "America/New_York",
        staff_user.id,
    )
    assert active_campaigns(pat) == ["Prospect"]
    cher = contact(session, "solo@example.com")
    assert (cher.first_name, cher.last_name) == ("Cher", "")


def test_custom_columns_and_a_spreadsheet_guard_are_read_back(session, campaigns):
    header = ["email", "phone", "Interest"]
    text = csv_text([["g@example.com", "'+44 20 7946 0000", "'=1+1"]], header)
    run(session, queued_import(session, text))
    person = contact(session, "g@example.com")
    assert person.phone == "+44 20 7946 0000"
    assert person.custom_fields == {"interest": "=1+1"}


def test_a_custom_value_past_the_contact_forms_limit_fails_its_row(session, campaigns):
    # Such a contact was created, and then its edit form refused every save.
    header = ["email", "interest"]
    too_long = "v" * (CUSTOM_FIELD_VALUE_MAX + 1)
    text = csv_text([["long@example.com", too_long], ["ok@example.com", "maths"]], header)
    contact_import = queued_import(session, text)

    report = run(session, contact_import)

    assert (report.counts.created, report.counts.failed) == (1, 1)
    assert contact(session, "long@example.com") is None
    limit = f"{CUSTOM_FIELD_VALUE_MAX:,}"
    assert failures(session, contact_import) == {
        2: f'The value of "interest" is too long: at most {limit} characters '
        f"({CUSTOM_FIELD_VALUE_MAX + 1:,})."
    }
    assert contact(session, "ok@example.com").custom_fields == {"interest": "maths"}


def test_a_custom_value_over_two_lines_fails_its_row(session, campaigns):
    # The contact form's "name: value" lines could not hold it: its edit refused every save.
    header = ["email", "interest"]
    text = csv_text([["two@example.com", "maths\nphysics"], ["ok@example.com", "maths"]], header)
    contact_import = queued_import(session, text)

    report = run(session, contact_import)

    assert (report.counts.created, report.counts.failed) == (1, 1)
    assert contact(session, "two@example.com") is None
    assert failures(session, contact_import) == {
        2: 'The value of "interest" holds a line break: a custom field is one line.'
    }


def test_a_line_break_in_a_one_line_field_fails_its_row(session, campaigns):
    # Such a contact was created, and its next edit in a browser removed the line break.
    header = ["email", "company", "notes"]
    rows = [["two@example.com", "Acme\nHoldings", ""], ["ok@example.com", "Acme", "a\nb"]]
    contact_import = queued_import(session, csv_text(rows, header))

    report = run(session, contact_import)

    assert (report.counts.created, report.counts.failed) == (1, 1)
    assert failures(session, contact_import) == {
        2: "Company: One line only: remove the line break."
    }
    assert contact(session, "ok@example.com").notes == "a\nb"


def test_an_update_that_would_pass_the_custom_field_count_fails_its_row(
    session, campaigns, make_contact
):
    own = {f"f{n}": "x" for n in range(MAX_CUSTOM_FIELDS - 1)}
    make_contact("lead", email="ada@example.com", company="Old Co", custom_fields=own)
    header = ["email", "company", "interest", "hobby"]
    text = csv_text([["ada@example.com", "New Co", "maths", "chess"]], header)
    contact_import = queued_import(session, text, on_existing="update")

    report = run(session, contact_import)

    assert (report.counts.updated, report.counts.skipped, report.counts.failed) == (0, 0, 1)
    assert failures(session, contact_import) == {
        2: "With the contact's own custom fields: "
        f"At most {MAX_CUSTOM_FIELDS} custom fields (this has {MAX_CUSTOM_FIELDS + 1})."
    }
    ada = contact(session, "ada@example.com")
    assert (ada.company, ada.custom_fields) == ("Old Co", own)


def test_suppressed_addresses_are_imported_but_not_enrolled_and_say_why(session, campaigns):
    session.add(Suppression(email="gone@example.com", reason="bounce", source="test"))
    session.commit()
    text = csv_text([["Gone@example.com", "Gone", "Away", "", "lead", ""]])
    contact_import = queued_import(session, text)

    run(session, contact_import)

    gone = contact(session, "Gone@example.com")
    assert gone.enrollments == []
    assert timeline(session, gone)[-1] == (
        "not_enrolled",
        "Gone Away cannot be enrolled: the address is on the suppression list (bounced).",
    )
    session.refresh(contact_import)
    assert (contact_import.created_count, contact_import.enrolled_count) == (1, 0)


def test_suppressed_and_erased_addresses_are_imported_with_their_status(session, campaigns):
    key = app_erasure_key()
    hashed = address_hash("erased@example.com", key)
    session.add(HashedSuppression(email_hash=hashed, key_id=key_id(key), reason="erased"))
    session.add(Suppression(email="gone@example.com", reason="bounce", source="test"))
    session.commit()
    text = csv_text(
        [
            ["Erased@example.com", "Era", "Sed", "", "lead", ""],
            ["Gone@example.com", "Gone", "Away", "", "lead", ""],
            ["fine@example.com", "Fine", "Person", "", "lead", ""],
        ]
    )
    run(session, queued_import(session, text))

    statuses = dict(session.execute(sa.select(Contact.first_name, Contact.email_status)).all())
    assert statuses == {"Era": "unsubscribed", "Gone": "bounced", "Fine": "ok"}
    marks = {
        r.first_name: r.not_mailed
        for r in contact_list_page(session, ListRequest(), per_page=9).rows
    }
    assert marks == {"Era": "unsubscribed", "Gone": "bounced", "Fine": None}


def test_a_paused_campaign_takes_no_imported_contact(session, campaigns):
    campaigns["lead"].status = "paused"
    session.commit()
    run(session, queued_import(session, many_rows(2)))
    assert count(session, Enrollment) == 0
    assert timeline(session, contact(session, "row0@example.com"))[-1] == (
        "not_enrolled",
        "Lead is paused: it takes no new enrolments.",
    )


def test_without_enrolment_by_type_nobody_is_enrolled(session, campaigns):
    run(session, queued_import(session, many_rows(3), enroll_by_type=""))
    assert count(session, Contact) == 3
    assert count(session, Enrollment) == 0


def test_update_mode_changes_fields_merges_custom_fields_and_keeps_empty_cells(
    session, campaigns, make_contact
):
    make_contact(
        "lead", email="ada@example.com", company="Old Co", title="Engineer",
        custom_fields={"referrer": "Charles"},
    )  # fmt: skip
    header = ["email", "company", "title", "interest"]
    text = csv_text([["ADA@example.com", "New Co", "", "maths"]], header)
    contact_import = queued_import(session, text, on_existing="update")

    report = run(session, contact_import)

    ada = contact(session, "ada@example.com")
    assert (ada.company, ada.title) == ("New Co", "Engineer")
    assert ada.custom_fields == {"referrer": "Charles", "interest": "maths"}
    assert (report.counts.updated, report.counts.created) == (1, 0)
    assert timeline(session, ada)[-1] == (
        "updated",
        f"Contact details updated by import #{contact_import.id} (contacts.csv)",
    )
    assert active_campaigns(ada) == ["Lead"]  # unchanged type: no enrolment change

    again = run(session, queued_import(session, text, on_existing="update"))
    assert (again.counts.updated, again.counts.skipped) == (0, 1)  # nothing new to write


def test_update_mode_with_a_new_type_moves_the_contact_to_that_types_campaign(
    session, campaigns, make_contact
):
    make_contact("lead", email="ada@example.com")
    text = csv_text([["ada@example.com", "", "", "", "client", ""]])
    report = run(session, queued_import(session, text, on_existing="update"))

    ada = contact(session, "ada@example.com")
    assert ada.contact_type == "client"
    assert active_campaigns(ada) == ["Client"]
    lead = next(e for e in ada.enrollments if e.campaign.name == "Lead")
    assert (lead.status, lead.end_reason) == ("stopped", "type changed to client")
    assert [kind for kind, _ in timeline(session, ada)][-4:] == [
        "updated",
        "type_changed",
        "stopped",
        "enrolled",
    ]
    assert report.counts.enrolled == 1


def test_update_mode_with_a_new_time_zone_moves_the_next_email_into_its_window_there(
    session, campaigns, make_contact
):
    """Ada's next email was set for 10:00 in Tokyo (01:00 UTC): 20:00 the evening before
    in New York, outside the window there. Moved by the import to New York, it is dated
    09:00 there, when the tick sends it (the page kept the Tokyo date before)."""
    from datetime import UTC, datetime

    ada = make_contact("lead", email="ada@example.com", timezone="Asia/Tokyo")
    ada.enrollments[0].next_send_at = datetime(2030, 1, 10, 1, 0, tzinfo=UTC)
    session.commit()
    text = csv_text([["ada@example.com", "", "", "", "", "America/New_York"]])
    run(session, queued_import(session, text, on_existing="update"))

    ada = contact(session, "ada@example.com")
    assert ada.enrollments[0].next_send_at == datetime(2030, 1, 10, 14, 0, tzinfo=UTC)
    assert timeline(session, ada)[-1] == (
        "rescheduled",
        "Time zone changed to America/New_York: the next email of Lead moved into its "
        "send window on that clock",
    )


def test_skip_mode_leaves_existing_contacts_alone(session, campaigns, make_contact):
    make_contact("lead", email="ada@example.com", company="Old Co")
    text = csv_text([["ada@example.com", "", "", "New Co", "client", ""]])
    report = run(session, queued_import(session, text))
    ada = contact(session, "ada@example.com")
    assert (ada.company, ada.contact_type) == ("Old Co", "lead")
    assert report.counts.skipped == 1


def test_each_chunk_commits_whole_and_a_failed_import_resumes_after_the_last(
    session, campaigns, monkeypatch
):
    contact_import = queued_import(session, many_rows(10))
    real_check = import_writes._check_rows

    def broken_on_the_third_chunk(plan, rows):
        if rows[0][0] == 8:  # line 8: row 7, the first of the third chunk of three
            raise RuntimeError("database went away")
        return real_check(plan, rows)

    monkeypatch.setattr(import_writes, "_check_rows", broken_on_the_third_chunk)
    with pytest.raises(RuntimeError):
        run(session, contact_import, chunk_size=3)

    session.refresh(contact_import)
    assert contact_import.status == "failed"
    assert contact_import.error == "RuntimeError: database went away"
    assert (contact_import.rows_done, contact_import.created_count) == (6, 6)
    # Never half a contact: each saved contact has its enrolment and its timeline.
    assert count(session, Contact) == count(session, Enrollment) == 6
    assert count(session, Activity) == 12

    monkeypatch.setattr(import_writes, "_check_rows", real_check)
    contact_import.status = "queued"  # what Resume does (tested with the page)
    session.commit()
    report = run(session, contact_import, chunk_size=3)

    assert report.rows == 4
    assert count(session, Contact) == count(session, Enrollment) == 10
    session.refresh(contact_import)
    assert (contact_import.status, contact_import.rows_done) == ("done", 10)
    assert contact_import.created_count == 10


def test_a_duplicate_found_after_a_resume_still_names_its_first_line(session, campaigns):
    text = csv_text(
        [[f"p{n}@example.com", "", "", "", "lead", ""] for n in range(4)]
        + [["p0@example.com", "", "", "", "lead", ""]]
    )
    contact_import = queued_import(session, text)
    contact_import.rows_done, contact_import.status = 4, "queued"  # as if resumed
    session.commit()
    run(session, contact_import)
    assert failures(session, contact_import) == {
        6: "Duplicate email: p0@example.com is already on line 2."
    }


def test_a_running_import_is_not_taken_by_a_second_job_until_it_stalls(session, campaigns):
    contact_import = queued_import(session, many_rows(2))
    contact_import.status, contact_import.heartbeat_at = "running", utcnow()
    session.commit()

    second = run_import(session, contact_import.id, chunk_size=10, stall_seconds=120)
    assert second.status == "not claimed"
    assert count(session, Contact) == 0

    later = lambda: utcnow() + timedelta(seconds=121)  # noqa: E731
    after_stall = run_import(
        session, contact_import.id, chunk_size=10, stall_seconds=120, clock=later
    )
    assert after_stall.status == "done"
    assert count(session, Contact) == 2


def test_a_chunk_whose_start_another_runner_passed_writes_nothing(session, campaigns):
    contact_import = queued_import(session, many_rows(4))
    contact_import.status, contact_import.rows_done = "running", 2
    session.commit()
    plan_rows = [(2, ["row0@example.com", "A", "B", "C", "lead", "UTC"])]
    plan = import_plan(session, contact_import, [])

    written = import_writes.write_chunk(session, plan, plan_rows, 0, now=utcnow(), seconds={})

    assert written is None
    session.rollback()
    assert count(session, Contact) == 0


def test_an_address_created_by_hand_during_the_chunk_is_skipped_not_a_failed_import(
    session, campaigns, make_contact, monkeypatch
):
    contact_import = queued_import(session, many_rows(3))
    make_contact("lead", email="row1@example.com")  # as if saved by hand mid-chunk
    real_existing = import_writes._existing_contacts
    calls = []

    def missed_it_the_first_time(session, emails, full):
        calls.append(1)
        return {} if len(calls) == 1 else real_existing(session, emails, full)

    monkeypatch.setattr(import_writes, "_existing_contacts", missed_it_the_first_time)
    report = run(session, contact_import)

    assert report.status == "done" and len(calls) == 2  # the unique index, then once more
    assert (report.counts.created, report.counts.skipped) == (2, 1)
    assert count(session, Contact) == 3
