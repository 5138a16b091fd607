"""The import job: a queued import's rows become contacts, a chunk per transaction.

Never half a contact: each chunk (IMPORT_CHUNK_SIZE rows) commits its contacts, their
timeline rows, their enrolments, its failed rows and the import's counters together,
after a conditional UPDATE on the import's `rows_done` that also serialises two
runners of one import. A killed worker leaves whole chunks; the next run (RQ's retry
of the abandoned job, or "Resume" on the page) starts after the last one, and since
existing addresses are skipped or updated, running a file twice creates nothing new.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import undefer

from crm_app.drip.audience.import_files import read_csv
from crm_app.drip.audience.import_rows import RowRules, email_key
from crm_app.drip.audience.import_writes import ChunkCounts, ImportPlan, timed, write_chunk
from crm_app.models import ContactImport, User, utcnow

log = logging.getLogger(__name__)
IMPORTS = ContactImport.__table__


@dataclass
class ImportReport:
    """What one run of the job did, and where its time went (the benchmark prints it)."""

    import_id: int
    status: str
    rows: int = 0
    counts: ChunkCounts = field(default_factory=ChunkCounts)
    seconds: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {
            "import_id": self.import_id,
            "status": self.status,
            "rows": self.rows,
            **self.counts.as_dict(),
            "seconds": {k: round(v, 3) for k, v in self.seconds.items()},
        }


def _claim(session, import_id: int, now: datetime, stall_seconds: int) -> bool:
    """Take a queued import, or a running one whose runner stopped beating (killed)."""
    stale_before = now - timedelta(seconds=stall_seconds)
    claimed = session.execute(
        sa.update(IMPORTS)
        .where(
            IMPORTS.c.id == import_id,
            sa.or_(
                IMPORTS.c.status == "queued",
                sa.and_(IMPORTS.c.status == "running", IMPORTS.c.heartbeat_at < stale_before),
            ),
        )
        .values(
            status="running",
            heartbeat_at=now,
            # Typed as the column, so `now` is stored as naive UTC like every UTCDateTime.
            started_at=sa.func.coalesce(
                IMPORTS.c.started_at, sa.literal(now, IMPORTS.c.started_at.type)
            ),
            error="",
        )
    ).rowcount
    session.commit()
    return claimed == 1


def _owners(session) -> dict[str, int]:
    """A user's lower-case email, or name when no two users share it -> id."""
    users = session.execute(sa.select(User.id, User.email, User.name)).all()
    names: dict[str, list[int]] = {}
    for user_id, _, name in users:
        if name.strip():
            names.setdefault(name.strip().lower(), []).append(user_id)
    owners = {name: ids[0] for name, ids in names.items() if len(ids) == 1}
    owners.update({email.lower(): user_id for user_id, email, _ in users})
    return owners


def import_plan(
    session, contact_import: ContactImport, rows: list[tuple[int, list[str]]]
) -> ImportPlan:
    """What every chunk of this import needs: its rules, owners and first lines."""
    rules = RowRules(mapping=tuple(contact_import.mapping), owners=_owners(session))
    first_line: dict[str, int] = {}
    for line, cells in rows:
        key = email_key(rules, cells)
        if key:
            first_line.setdefault(key, line)
    return ImportPlan(
        import_id=contact_import.id,
        label=f"import #{contact_import.id} ({contact_import.filename})",
        actor=contact_import.created_by or "system:import",
        rules=rules,
        first_line=first_line,
        default_type=contact_import.default_type,
        default_timezone=contact_import.default_timezone,
        default_owner_id=contact_import.default_owner_id,
        update_existing=contact_import.on_existing == "update",
        enroll_by_type=contact_import.enroll_by_type,
    )


def run_import(
    session,
    import_id: int,
    *,
    chunk_size: int,
    stall_seconds: int,
    clock: Callable[[], datetime] = utcnow,
) -> ImportReport:
    """Run (or resume) the import; returns what this run did. An error marks the import
    failed, with every committed chunk kept, and is raised again for RQ to record."""
    report = ImportReport(import_id, "not claimed")
    if not _claim(session, import_id, clock(), stall_seconds):
        log.info("import %s: not queued, or another worker has it", import_id)
        return report
    try:
        with timed(report.seconds, "read file"):
            contact_import = session.scalar(
                sa.select(ContactImport)
                .where(ContactImport.id == import_id)
                .options(undefer(ContactImport.content))
            )
            rows = read_csv(contact_import.content).rows
            plan = import_plan(session, contact_import, rows)
            start = contact_import.rows_done
            session.commit()
        while start < len(rows):
            chunk = rows[start : start + chunk_size]
            counts = _write_chunk_once_more_on_conflict(session, plan, chunk, start, clock, report)
            if counts is None:  # another runner moved the import on: it carries on
                report.status = "superseded"
                return report
            report.rows += len(chunk)
            report.counts.add(counts)
            start += len(chunk)
        _finish(session, import_id, clock())
        report.status = "done"
        return report
    except Exception as error:
        session.rollback()
        _mark_failed(session, import_id, error, clock())
        raise


def _write_chunk_once_more_on_conflict(session, plan, chunk, start, clock, report):
    """A contact created by hand with one of the chunk's addresses between our check and
    our insert fails the chunk on the unique index: roll back and write it once more
    (the address is then an existing contact)."""
    for attempt in (1, 2):
        try:
            counts = write_chunk(session, plan, chunk, start, now=clock(), seconds=report.seconds)
            if counts is None:
                session.rollback()
                return None
            with timed(report.seconds, "commit"):
                session.commit()
            return counts
        except IntegrityError:
            session.rollback()
            if attempt == 2:
                raise
    return None


def _finish(session, import_id: int, now: datetime) -> None:
    session.execute(
        sa.update(IMPORTS)
        .where(IMPORTS.c.id == import_id, IMPORTS.c.status == "running")
        .values(status="done", finished_at=now, heartbeat_at=now)
    )
    session.commit()


def _mark_failed(session, import_id: int, error: Exception, now: datetime) -> None:
    log.exception("import %s failed", import_id)
    session.execute(
        sa.update(IMPORTS)
        .where(IMPORTS.c.id == import_id, IMPORTS.c.status == "running")
        .values(status="failed", error=f"{type(error).__name__}: {error}"[:2000], finished_at=now)
    )
    session.commit()
