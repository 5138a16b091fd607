"""Helpers for the CSV import tests: an import queued through the core, run in-process."""

from __future__ import annotations

import csv
import io

import sqlalchemy as sa

from crm_app.drip.audience.import_run import ImportReport, run_import
from crm_app.drip.audience.imports import configure_import, create_import, setup_values
from crm_app.models import Activity, Contact, ContactImport, ContactImportFailure, Enrollment

HEADER = ["email", "first_name", "last_name", "company", "type", "timezone"]


def csv_text(rows: list[list], header: list[str] = HEADER) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerows([header, *rows])
    return out.getvalue()


def many_rows(count: int, *, prefix: str = "row") -> str:
    """`count` valid leads, one per line."""
    return csv_text([[f"{prefix}{n}@example.com", f"First{n}", "Last", "Co", "lead", "UTC"]
                     for n in range(count)])  # fmt: skip


def queued_import(session, content: str | bytes, **options: str) -> ContactImport:
    """Upload `content` and start it with the guessed mapping, changed by `options`
    (form fields: on_existing="update", enroll_by_type="", column-3="custom"...)."""
    data = content.encode() if isinstance(content, str) else content
    contact_import = create_import(
        session,
        filename="contacts.csv",
        content=data,
        actor="user:staff@example.com",
        max_bytes=10_000_000,
    )
    form = setup_values(contact_import)
    form.update(options)
    configure_import(session, contact_import, form, actor="test")
    session.commit()
    return contact_import


def run(session, contact_import: ContactImport, chunk_size: int = 1000) -> ImportReport:
    report = run_import(session, contact_import.id, chunk_size=chunk_size, stall_seconds=120)
    session.expire_all()
    return report


def failures(session, contact_import: ContactImport) -> dict[int, str]:
    rows = session.execute(
        sa.select(ContactImportFailure.line, ContactImportFailure.reason)
        .where(ContactImportFailure.import_id == contact_import.id)
        .order_by(ContactImportFailure.line)
    )
    return dict(rows.all())


def count(session, model) -> int:
    return session.scalar(sa.select(sa.func.count()).select_from(model))


def totals(session) -> dict[str, int]:
    """How many contacts, enrolments and timeline rows there are."""
    return {
        "contacts": count(session, Contact),
        "enrollments": count(session, Enrollment),
        "activities": count(session, Activity),
    }
