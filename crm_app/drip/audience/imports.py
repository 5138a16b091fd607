"""CSV import of contacts: the upload, the column mapping and options, starting and
resuming, and what the pages show. The job's work is in import_run.py.

An import is a row of `contact_imports` holding the file itself: draft (uploaded,
mapping to confirm) -> queued (an RQ job is on its way) -> running -> done | failed.
Callers commit, then enqueue the job (import_run.run_import) after the commit.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta

import sqlalchemy as sa

from crm_app.drip.audience.import_files import (
    CUSTOM_PREFIX,
    DELIMITER_NAMES,
    FIELD_TARGETS,
    PREVIEW_ROWS,
    ImportFileError,
    custom_key,
    guess_mapping,
    read_csv,
)
from crm_app.drip.common.csv_safe import csv_safe, csv_unsafe
from crm_app.drip.common.errors import FieldErrors
from crm_app.drip.common.paging import Page, paginate
from crm_app.drip.common.timezones import is_known_timezone
from crm_app.drip.team.audit import record_audit
from crm_app.models import (
    CONTACT_TYPES,
    ON_EXISTING,
    ContactImport,
    ContactImportFailure,
    User,
    utcnow,
)

# The mapping form's choice for "a custom field named in the box next to it".
CUSTOM_CHOICE = "custom"


class ImportSetupError(FieldErrors):
    """The mapping or the options cannot be used; one message per form field."""


class ImportStateError(Exception):
    """The import is not in a state that allows this (already started, not stalled)."""


def create_import(
    session,
    *,
    filename: str,
    content: bytes,
    actor: str,
    max_bytes: int,
    default_owner_id: int | None = None,
) -> ContactImport:
    """Read the uploaded file and keep it as a draft with a guessed mapping, or raise
    ImportFileError; nothing is stored then."""
    if len(content) > max_bytes:
        raise ImportFileError(
            f"The file is {_megabytes(len(content))}; the limit is {_megabytes(max_bytes)}. "
            "Split it into smaller files and import them one after the other."
        )
    parsed = read_csv(content)
    contact_import = ContactImport(
        filename=(filename or "upload.csv")[:255],
        content=content,
        size_bytes=len(content),
        encoding=parsed.encoding,
        delimiter=parsed.delimiter,
        header=parsed.header,
        # Cells past the header have no column to map (their row fails, saying why).
        preview_rows=[cells[: len(parsed.header)] for _, cells in parsed.rows[:PREVIEW_ROWS]],
        mapping=guess_mapping(parsed.header),
        default_owner_id=default_owner_id,
        total_rows=len(parsed.rows),
        status="draft",
        created_by=actor,
    )
    session.add(contact_import)
    session.flush()
    return contact_import


def _megabytes(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MB"


def delimiter_name(contact_import: ContactImport) -> str:
    return DELIMITER_NAMES.get(contact_import.delimiter, repr(contact_import.delimiter))


def target_choices() -> list[tuple[str, str]]:
    """The mapping form's options for each column: ignore, a field, or a custom field."""
    return [("", "Ignore this column"), *FIELD_TARGETS.items(), (CUSTOM_CHOICE, "Custom field")]


def setup_values(contact_import: ContactImport) -> dict[str, str]:
    """The mapping form's values as stored (the guess, for a new upload)."""
    values = {
        "default_type": contact_import.default_type,
        "default_timezone": contact_import.default_timezone,
        "default_owner_id": str(contact_import.default_owner_id or ""),
        "on_existing": contact_import.on_existing,
        "enroll_by_type": "1" if contact_import.enroll_by_type else "",
    }
    for column, target in enumerate(contact_import.mapping):
        if target.startswith(CUSTOM_PREFIX):
            values[f"column-{column}"] = CUSTOM_CHOICE
            values[f"custom-{column}"] = target.removeprefix(CUSTOM_PREFIX)
        else:
            values[f"column-{column}"] = target
            # Ready in case the user turns the column into a custom field.
            values[f"custom-{column}"] = custom_key(contact_import.header[column], column)
    return values


def _read_mapping(header: list[str], form: Mapping[str, str], errors: dict) -> list[str]:
    mapping: list[str] = []
    mapped_at: dict[str, int] = {}
    for column in range(len(header)):
        choice = form.get(f"column-{column}", "")
        target = choice
        if choice == CUSTOM_CHOICE:
            key = (form.get(f"custom-{column}") or "").strip()
            target = CUSTOM_PREFIX + key
            if not key.isidentifier():
                errors[f"custom-{column}"] = (
                    "Name the custom field with letters, digits and underscores, "
                    'not starting with a digit (for example "interest").'
                )
        elif choice and choice not in FIELD_TARGETS:
            errors[f"column-{column}"] = "Choose what this column holds."
        if target and target in mapped_at:
            other = f"column {mapped_at[target] + 1} ({header[mapped_at[target]]})"
            if choice == CUSTOM_CHOICE:
                errors[f"custom-{column}"] = f"This custom field is already {other}."
            else:
                errors[f"column-{column}"] = f"{FIELD_TARGETS[target]} is already {other}."
        elif target:
            mapped_at[target] = column
        mapping.append(target)
    if "email" not in mapped_at:
        errors["mapping"] = (
            "Map one column to Email: it is required, and it is how contacts are matched."
        )
    return mapping


def configure_import(
    session,
    contact_import: ContactImport,
    form: Mapping[str, str],
    *,
    actor: str,
    now: datetime | None = None,
) -> ContactImport:
    """Save the confirmed mapping and options and queue the import, or raise
    ImportSetupError with a message per field (nothing changes then)."""
    if contact_import.status != "draft":
        raise ImportStateError("This import has already started.")
    errors: dict[str, str] = {}
    mapping = _read_mapping(contact_import.header, form, errors)
    default_type = form.get("default_type", "")
    if default_type not in CONTACT_TYPES:
        errors["default_type"] = f"Choose one of: {', '.join(CONTACT_TYPES)}."
    default_timezone = (form.get("default_timezone") or "").strip() or "UTC"
    if not is_known_timezone(default_timezone):
        errors["default_timezone"] = (
            f"Unknown time zone {default_timezone!r}: use an IANA name such as Europe/Paris."
        )
    on_existing = form.get("on_existing", "")
    if on_existing not in ON_EXISTING:
        errors["on_existing"] = "Choose what to do with an email that is already a contact."
    owner_raw = (form.get("default_owner_id") or "").strip()
    owner_id = int(owner_raw) if owner_raw.isdigit() else None
    if owner_raw and (owner_id is None or session.get(User, owner_id) is None):
        errors["default_owner_id"] = "Unknown owner."
    if errors:
        raise ImportSetupError(errors)
    contact_import.mapping = mapping
    contact_import.default_type = default_type
    contact_import.default_timezone = default_timezone
    contact_import.default_owner_id = owner_id
    contact_import.on_existing = on_existing
    contact_import.enroll_by_type = form.get("enroll_by_type") == "1"
    contact_import.status = "queued"
    contact_import.heartbeat_at = now or utcnow()
    record_audit(
        session,
        actor,
        "started",
        "import",
        contact_import.id,
        f"Started importing {contact_import.filename} ({contact_import.total_rows} rows)",
    )
    return contact_import


def import_state(contact_import: ContactImport, *, now: datetime, stall_seconds: int) -> str:
    """The status, or "stalled": queued or running with no progress for stall_seconds
    (its worker was killed, or no worker runs)."""
    if contact_import.status in ("queued", "running"):
        heartbeat = contact_import.heartbeat_at or contact_import.created_at
        if heartbeat < now - timedelta(seconds=stall_seconds):
            return "stalled"
    return contact_import.status


def resume_import(
    session, contact_import: ContactImport, *, actor: str, now: datetime, stall_seconds: int
) -> ContactImport:
    """Queue a stalled or failed import again: the job goes on after the last committed
    chunk. Raise ImportStateError for any other state."""
    state = import_state(contact_import, now=now, stall_seconds=stall_seconds)
    if state not in ("stalled", "failed"):
        raise ImportStateError(f"This import is {state}: there is nothing to resume.")
    contact_import.status = "queued"
    contact_import.heartbeat_at = now
    contact_import.finished_at = None
    contact_import.error = ""
    summary = f"Resumed importing {contact_import.filename} after row {contact_import.rows_done}"
    record_audit(session, actor, "resumed", "import", contact_import.id, summary)
    return contact_import


def recent_imports(
    session, *, page: int, now: datetime, stall_seconds: int, per_page: int = 20
) -> Page[tuple[ContactImport, str]]:
    """A page of imports, newest first, each with its import_state: the list says
    "stalled" exactly when the import's own page does."""
    result = paginate(
        session,
        sa.select(ContactImport).order_by(ContactImport.created_at.desc(), ContactImport.id.desc()),
        page=page,
        per_page=per_page,
    )
    states = [import_state(item, now=now, stall_seconds=stall_seconds) for item in result.items]
    return Page(list(zip(result.items, states, strict=True)), result.total, result.page, per_page)


def first_failures(session, contact_import: ContactImport, limit: int = 100) -> list:
    return list(
        session.scalars(
            sa.select(ContactImportFailure)
            .where(ContactImportFailure.import_id == contact_import.id)
            .order_by(ContactImportFailure.line)
            .limit(limit)
        )
    )


def failed_rows_csv(session, contact_import: ContactImport) -> Iterator[str]:
    """The failed rows as CSV, streamed: the line and the reason first, then the row's
    own cells under the file's own header, so the file can be fixed and uploaded again
    (the import ignores the first two columns)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(["import_line", "import_error", *map(csv_safe, contact_import.header)])
    failure = ContactImportFailure
    failures = session.execute(
        sa.select(failure.line, failure.reason, failure.cells)
        .where(failure.import_id == contact_import.id)
        .order_by(failure.line)
        .execution_options(yield_per=1000)
    )
    for count, (line, reason, cells) in enumerate(failures, start=1):
        # Each cell as the import read it, guarded again: the file uploaded once more
        # reads the same values (a cell `'+44 20` stays one apostrophe deep).
        cells = [csv_safe(csv_unsafe(cell)) for cell in cells]
        writer.writerow([line, csv_safe(reason), *cells])
        if count % 1000 == 0:
            yield out.getvalue()
            out.seek(0)
            out.truncate()
    yield out.getvalue()
