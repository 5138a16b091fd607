"""The contact list as CSV: every field, a column per custom field, the list's search and
filter, formula guard, streamed; and an export that imports back unchanged."""

from __future__ import annotations

import csv
import io

import sqlalchemy as sa

from crm_app.drip.audience import export
from crm_app.models import AuditEntry, Contact
from tests.import_helpers import queued_import, run, totals


def exported(client, query: str = "") -> list[dict[str, str]]:
    response = client.get(f"/contacts/export.csv{query}")
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    assert 'attachment; filename="contacts-' in response.headers["Content-Disposition"]
    text = response.get_data(as_text=True)
    assert text.startswith("\ufeff")  # Excel reads UTF-8 only with the mark
    return list(csv.DictReader(io.StringIO(text.removeprefix("\ufeff"))))


def test_every_field_and_one_column_per_custom_field(staff, staff_user, make_contact):
    make_contact(
        "client", email="ada@example.com", first_name="Ada", last_name="Lovelace",
        phone="+44 20 7946 0000", company="Engines", title="CTO", industry="Computing",
        timezone="Europe/London", notes="Met at the fair", owner_id=staff_user.id,
        custom_fields={"interest": "maths", "referrer": "Charles"},
    )  # fmt: skip
    make_contact("lead", email="bob@example.com", custom_fields={"size": "12"})

    rows = exported(staff)

    assert list(rows[0]) == [*export.FIELD_COLUMNS, "custom.interest", "custom.referrer",
                             "custom.size"]  # fmt: skip
    ada = next(row for row in rows if row["email"] == "ada@example.com")
    assert ada["first_name"] == "Ada" and ada["company"] == "Engines"
    assert (ada["contact_type"], ada["timezone"]) == ("client", "Europe/London")
    assert ada["owner"] == "staff@example.com" and ada["email_status"] == "ok"
    assert ada["phone"] == "'+44 20 7946 0000"  # guarded: a leading + is a formula
    assert (ada["custom.interest"], ada["custom.size"]) == ("maths", "")
    assert ada["created_at"].startswith("20")


def test_the_export_follows_the_lists_search_and_type_filter(staff, make_contact):
    make_contact("lead", email="ada@example.com", company="Engines")
    make_contact("client", email="bob@example.com", company="Engines")
    make_contact("lead", email="cy@example.com", company="Other")

    assert [r["email"] for r in exported(staff, "?q=engines&type=lead")] == ["ada@example.com"]
    assert len(exported(staff, "?type=client")) == 1
    assert len(exported(staff)) == 3
    assert "Export these as CSV" in staff.get("/contacts/?q=engines").get_data(as_text=True)


def test_cells_that_would_run_as_formulas_are_guarded(staff, make_contact):
    make_contact(
        "lead", email="evil@example.com", first_name="=HYPERLINK(\"http://x\")",
        last_name="@SUM(A1)", company="-2+3", custom_fields={"k": "=1+1", "t": "\tTAB"},
    )  # fmt: skip
    row = exported(staff)[0]
    assert row["first_name"] == '\'=HYPERLINK("http://x")'
    assert (row["last_name"], row["company"]) == ("'@SUM(A1)", "'-2+3")
    assert (row["custom.k"], row["custom.t"]) == ("'=1+1", "'\tTAB")


def test_the_export_is_streamed_in_pieces(staff, session, campaigns, monkeypatch):
    monkeypatch.setattr(export, "ROWS_PER_WRITE", 2)
    people = [Contact(email=f"p{n}@x.com", contact_type="lead", custom_fields={}) for n in range(5)]
    session.add_all(people)
    session.commit()
    with staff._fresh_context():
        response = staff.client.get("/contacts/export.csv")
        assert response.is_streamed
        pieces = list(response.response)
    assert len(pieces) == 1 + 3  # the header, then 2 + 2 + 1 rows
    assert sum(piece.count(b"@x.com") for piece in pieces) == 5


def test_an_exported_file_imported_back_in_update_mode_changes_nothing(
    staff, session, make_contact, staff_user
):
    make_contact(
        "client", email="ada@example.com", phone="+44 20", notes="a, b", owner_id=staff_user.id,
        custom_fields={"interest": "=maths"},
    )  # fmt: skip
    make_contact("lead", email="bob@example.com", timezone="Asia/Tokyo")
    before = totals(session)
    text = staff.get("/contacts/export.csv").get_data(as_text=True)

    report = run(session, queued_import(session, text.encode(), on_existing="update"))

    assert (report.counts.updated, report.counts.skipped, report.counts.failed) == (0, 2, 0)
    assert totals(session) == before


def test_a_value_that_starts_with_an_apostrophe_and_a_formula_sign_imports_back_as_it_was(
    staff, session, make_contact
):
    # Exported unchanged, then read back without its apostrophe: "'=x" became "=x".
    make_contact(
        "lead", email="ada@example.com", first_name="'=x", company="''+1",
        custom_fields={"mood": "'-)"},
    )  # fmt: skip
    row = exported(staff)[0]
    assert (row["first_name"], row["company"], row["custom.mood"]) == ("''=x", "'''+1", "''-)")

    text = staff.get("/contacts/export.csv").get_data(as_text=True)
    report = run(session, queued_import(session, text.encode(), on_existing="update"))

    assert (report.counts.updated, report.counts.skipped) == (0, 1)
    ada = session.scalar(sa.select(Contact).where(Contact.email == "ada@example.com"))
    assert (ada.first_name, ada.company, ada.custom_fields) == ("'=x", "''+1", {"mood": "'-)"})


def test_each_export_is_in_the_audit_log_without_personal_data(staff, session, make_contact):
    make_contact("lead", email="ada@example.com", company="Engines")
    make_contact("lead", email="bob@example.com", company="Engines")
    make_contact("client", email="cy@example.com", company="Other")

    exported(staff)
    exported(staff, "?q=ada@example.com&type=lead")

    session.expire_all()
    entries = session.scalars(sa.select(AuditEntry).order_by(AuditEntry.id)).all()
    assert [(e.actor, e.action, e.target_type, e.summary) for e in entries[-2:]] == [
        ("staff@example.com", "contact.exported", "contact", "Exported 3 contacts as CSV (all)"),
        (
            "staff@example.com",
            "contact.exported",
            "contact",
            "Exported 1 contact as CSV (by a search and type lead)",
        ),
    ]


def test_the_export_needs_a_login(web):
    assert web.get("/contacts/export.csv").status_code == 302
