"""One chunk of an import, written in the caller's transaction: its rows checked, new
contacts inserted, existing ones skipped or updated, their timeline rows, enrolment by
type (bulk_enrollment), its failed rows and the import's counters. Set-based: about a
dozen statements per chunk, whatever its size."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from crm_app.drip.audience.bulk_enrollment import (
    ContactFacts,
    enroll_by_type_many,
    switch_types_many,
)
from crm_app.drip.audience.contacts import (
    CONTACT_FIELDS,
    TEXT_FIELDS,
    custom_fields_error,
    follow_timezone,
)
from crm_app.drip.audience.eligibility import suppression_reasons
from crm_app.drip.audience.import_rows import CleanRow, RowRules, clean_row, email_key
from crm_app.drip.audience.suppression import suppressed_status
from crm_app.drip.common.activity import activity_row, record_activities
from crm_app.drip.common.sql import in_values, insert_rows, update_rows
from crm_app.models import Contact, ContactImport, ContactImportFailure

CONTACTS = Contact.__table__
IMPORTS = ContactImport.__table__
# What an update-mode import may change on an existing contact: every field of the
# contact form but the address (custom fields are merged apart).
UPDATABLE = tuple(name for name in CONTACT_FIELDS if name not in ("email", "custom_fields"))


@dataclass(frozen=True)
class ImportPlan:
    """What every chunk of one import needs to know."""

    import_id: int
    label: str  # "import #3 (leads.csv)", for the timeline
    actor: str
    rules: RowRules
    first_line: dict[str, int]  # email_key -> the first line that has it
    default_type: str
    default_timezone: str
    default_owner_id: int | None
    update_existing: bool
    enroll_by_type: bool


@dataclass
class ChunkCounts:
    created: int = 0
    updated: int = 0
    skipped: int = 0
    failed: int = 0
    enrolled: int = 0

    def add(self, other: ChunkCounts) -> None:
        for name, value in asdict(other).items():
            setattr(self, name, getattr(self, name) + value)

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


@contextmanager
def timed(seconds: dict[str, float], phase: str) -> Iterator[None]:
    """Add the block's duration to seconds[phase]."""
    started = time.perf_counter()
    try:
        yield
    finally:
        seconds[phase] = seconds.get(phase, 0.0) + time.perf_counter() - started


def write_chunk(
    session,
    plan: ImportPlan,
    rows: list[tuple[int, list[str]]],
    start: int,
    *,
    now: datetime,
    seconds: dict[str, float],
) -> ChunkCounts | None:
    """Import rows[start:] of the file (`rows` is the chunk); None when the import is no
    longer running at `start` (another runner went on, or it was stopped)."""
    if not _claim_chunk(session, plan.import_id, start, now):
        return None
    counts = ChunkCounts()
    with timed(seconds, "check rows"):
        good, failures = _check_rows(plan, rows)
    with timed(seconds, "write contacts"):
        existing = _existing_contacts(session, [row.email for row in good], plan.update_existing)
        new = [row for row in good if row.email.lower() not in existing]
        created = _insert_contacts(session, plan, new, now)
        old = [row for row in good if row.email.lower() in existing]
        switches: list[tuple[ContactFacts, str]] = []
        refused: dict[int, str] = {}
        if plan.update_existing:
            counts.updated, switches, refused = _update_contacts(session, plan, old, existing, now)
        failures += [(line, refused[line], cells) for line, cells in rows if line in refused]
        counts.skipped = len(old) - counts.updated - len(refused)
    with timed(seconds, "enrol"):
        if plan.enroll_by_type:
            enrolment = enroll_by_type_many(
                session, created, actor=plan.actor, source="import", now=now
            )
            counts.enrolled += len(enrolment.enrolled)
        switched = switch_types_many(session, switches, actor=plan.actor, now=now)
        counts.enrolled += len(switched.enrolled)
    with timed(seconds, "failures and counters"):
        failure_rows = [
            {"import_id": plan.import_id, "line": line, "reason": reason, "cells": cells}
            for line, reason, cells in failures
        ]
        insert_rows(session, ContactImportFailure.__table__, failure_rows)
        counts.created, counts.failed = len(created), len(failures)
        _record_progress(session, plan.import_id, start + len(rows), counts, now)
    return counts


def _claim_chunk(session, import_id: int, start: int, now: datetime) -> bool:
    """The chunk's first statement: it matches only while this import runs at `start`,
    and it locks the import's row until the commit, so a second runner of the same
    import waits here and then matches nothing."""
    result = session.execute(
        sa.update(IMPORTS)
        .where(
            IMPORTS.c.id == import_id, IMPORTS.c.status == "running", IMPORTS.c.rows_done == start
        )
        .values(heartbeat_at=now)
    )
    return result.rowcount == 1


def _record_progress(session, import_id: int, done: int, counts: ChunkCounts, now) -> None:
    session.execute(
        sa.update(IMPORTS)
        .where(IMPORTS.c.id == import_id)
        .values(
            rows_done=done,
            created_count=IMPORTS.c.created_count + counts.created,
            updated_count=IMPORTS.c.updated_count + counts.updated,
            skipped_count=IMPORTS.c.skipped_count + counts.skipped,
            failed_count=IMPORTS.c.failed_count + counts.failed,
            enrolled_count=IMPORTS.c.enrolled_count + counts.enrolled,
            heartbeat_at=now,
        )
    )


def _check_rows(plan: ImportPlan, rows) -> tuple[list[CleanRow], list[tuple[int, str, list]]]:
    """The chunk's valid rows, and (line, reason, cells) for the others. A repeated
    address fails wherever it comes after its first line in the file, so a resumed
    import judges every row as the first run did."""
    good: list[CleanRow] = []
    failures: list[tuple[int, str, list]] = []
    seen: dict[str, int] = {}
    for line, cells in rows:
        key = email_key(plan.rules, cells)
        first = plan.first_line.get(key, line) if key else line
        row = clean_row(plan.rules, line, cells) if first == line else None
        if row is not None and not isinstance(row, str):
            # Two spellings that normalise to one address: the first one wins too.
            first = seen.setdefault(row.email.lower(), line)
        if first != line:
            address = cells[plan.rules.email_column].strip()
            reason = f"Duplicate email: {address} is already on line {first}."
            failures.append((line, reason, cells))
        elif isinstance(row, str):
            failures.append((line, row, cells))
        else:
            good.append(row)
    return good, failures


def _existing_contacts(session, emails: list[str], full: bool) -> dict[str, Any]:
    """Contacts that already have one of these addresses, by lower-case address: just
    the address to skip them, or every field to update them."""
    if not emails:
        return {}
    key = sa.func.lower(CONTACTS.c.email, type_=CONTACTS.c.email.type)
    columns = [CONTACTS.c[name] for name in CONTACTS.c.keys()] if full else [CONTACTS.c.id]
    rows = session.execute(
        sa.select(key.label("key"), *columns).where(
            in_values(session, key, {email.lower() for email in emails})
        )
    )
    return {row.key: row for row in rows}


def _facts(contact_id: int, email: str, values: dict) -> ContactFacts:
    return ContactFacts(
        id=contact_id,
        email=email,
        first_name=values["first_name"],
        last_name=values["last_name"],
        contact_type=values["contact_type"],
        timezone=values["timezone"],
        email_status=values.get("email_status", "ok"),
    )


def _insert_contacts(session, plan: ImportPlan, new: list[CleanRow], now) -> list[ContactFacts]:
    """Insert the new contacts with one statement and write their "created" rows. A
    suppressed address (plain or erased) gets its status, as create_contact gives it."""
    reasons = suppression_reasons(session, [row.email for row in new])
    rows = [
        {
            **{name: row.fields.get(name, "") for name in TEXT_FIELDS},
            "email": row.email,
            "contact_type": row.fields.get("contact_type", plan.default_type),
            "timezone": row.fields.get("timezone", plan.default_timezone),
            "owner_id": row.fields.get("owner_id", plan.default_owner_id),
            "custom_fields": row.custom_fields,
            "email_status": (
                suppressed_status(reasons[row.email.lower()])
                if row.email.lower() in reasons
                else "ok"
            ),
            "created_at": now,
            "updated_at": now,
        }
        for row in new
    ]
    ids = dict(insert_rows(session, CONTACTS, rows, returning=("email", "id")))
    created = [_facts(ids[row["email"]], row["email"], row) for row in rows]
    detail = f"Contact created by {plan.label}"
    record_activities(session, [_timeline(plan, c.id, "created", detail, now) for c in created])
    return created


def _timeline(plan: ImportPlan, contact_id: int, kind: str, detail: str, now) -> dict:
    return activity_row(
        contact_id,
        kind,
        detail,
        actor=plan.actor,
        campaign_id=None,
        enrollment_id=None,
        created_at=now,
    )


def _update_contacts(
    session, plan: ImportPlan, rows: list[CleanRow], existing: dict[str, Any], now
) -> tuple[int, list[tuple[ContactFacts, str]], dict[int, str]]:
    """Give existing contacts the row's non-empty cells (custom fields merged); a row
    that changes nothing is skipped. Returns the count updated, the type switches (the
    contact with its new type, and its old type) and the reason by line of the rows refused
    (their custom fields merged would be more than a contact may carry). A contact given
    another time zone has its next emails moved into their windows on that clock."""
    changes, switches, refused, moved_zone = [], [], {}, []
    for row in rows:
        current = existing[row.email.lower()]._mapping
        merged = {name: row.fields.get(name, current[name]) for name in UPDATABLE}
        merged["custom_fields"] = {**(current["custom_fields"] or {}), **row.custom_fields}
        if all(merged[name] == current[name] for name in merged):
            continue
        if problem := custom_fields_error(merged["custom_fields"]):
            refused[row.line] = f"With the contact's own custom fields: {problem}"
            continue
        changes.append({"id": current["id"], **merged, "updated_at": now})
        if merged["timezone"] != current["timezone"]:
            moved_zone.append(current["id"])
        if merged["contact_type"] != current["contact_type"]:
            facts = _facts(current["id"], current["email"], {**current, **merged})
            switches.append((facts, current["contact_type"]))
    update_rows(
        session,
        CONTACTS,
        changes,
        values=lambda r: {
            name: getattr(r, name) for name in (*UPDATABLE, "custom_fields", "updated_at")
        },
        returning=False,
    )
    detail = f"Contact details updated by {plan.label}"
    record_activities(session, [_timeline(plan, c["id"], "updated", detail, now) for c in changes])
    _follow_new_timezones(session, plan, moved_zone, now)
    return len(changes), switches, refused


def _follow_new_timezones(session, plan: ImportPlan, contact_ids: list[int], now) -> None:
    """Contacts given another time zone: their next emails move into their windows on
    that clock (rare: one query, then the few enrolments of each)."""
    if not contact_ids:
        return
    for contact in session.scalars(
        sa.select(Contact)
        .where(in_values(session, Contact.id, contact_ids))
        .execution_options(populate_existing=True)
    ):
        follow_timezone(session, contact, actor=plan.actor, now=now)
