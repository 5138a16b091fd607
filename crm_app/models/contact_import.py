from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from crm_app.extensions import db
from crm_app.models.types import UTCDateTime, utcnow

# draft: uploaded, columns not yet confirmed; queued -> running -> done | failed.
IMPORT_STATUSES = ("draft", "queued", "running", "done", "failed")
# What a row whose email is already a contact does.
ON_EXISTING = ("skip", "update")


class ContactImport(db.Model):
    """One uploaded CSV file and everything about its import.

    The file lives here, not on the web machine's disk: the worker that runs the
    import may be on another machine. `rows_done` is the resume point: it moves
    with each chunk's commit, so a killed worker's successor starts after it.
    """

    __tablename__ = "contact_imports"

    id: Mapped[int] = mapped_column(primary_key=True)
    filename: Mapped[str] = mapped_column(sa.String(255))
    # Deferred: the list of imports must not read every file's bytes.
    content: Mapped[bytes] = mapped_column(sa.LargeBinary, deferred=True)
    size_bytes: Mapped[int] = mapped_column(sa.Integer)
    encoding: Mapped[str] = mapped_column(sa.String(20))
    delimiter: Mapped[str] = mapped_column(sa.String(4))
    # The header (column names), the first rows (for the preview), and one target per
    # column: "" (ignored), a contact field, or "custom:<key>".
    header: Mapped[list] = mapped_column(sa.JSON, default=list)
    preview_rows: Mapped[list] = mapped_column(sa.JSON, default=list)
    mapping: Mapped[list] = mapped_column(sa.JSON, default=list)
    default_type: Mapped[str] = mapped_column(sa.String(20), default="lead")
    default_timezone: Mapped[str] = mapped_column(sa.String(64), default="UTC")
    default_owner_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("users.id", ondelete="SET NULL")
    )
    on_existing: Mapped[str] = mapped_column(sa.String(10), default="skip")
    enroll_by_type: Mapped[bool] = mapped_column(sa.Boolean, default=True)
    status: Mapped[str] = mapped_column(sa.String(16), default="draft")
    total_rows: Mapped[int] = mapped_column(sa.Integer, default=0)
    rows_done: Mapped[int] = mapped_column(sa.Integer, default=0)
    created_count: Mapped[int] = mapped_column(sa.Integer, default=0)
    updated_count: Mapped[int] = mapped_column(sa.Integer, default=0)
    skipped_count: Mapped[int] = mapped_column(sa.Integer, default=0)
    failed_count: Mapped[int] = mapped_column(sa.Integer, default=0)
    # New or switched contacts enrolled by type (the others have a "not_enrolled" row).
    enrolled_count: Mapped[int] = mapped_column(sa.Integer, default=0)
    error: Mapped[str] = mapped_column(sa.Text, default="")
    created_by: Mapped[str] = mapped_column(sa.String(120), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Moved by every committed chunk (and when queued): a running import whose
    # heartbeat is older than IMPORT_STALL_SECONDS lost its worker.
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        sa.CheckConstraint(
            "status IN ('draft', 'queued', 'running', 'done', 'failed')", name="status"
        ),
        sa.CheckConstraint("on_existing IN ('skip', 'update')", name="on_existing"),
        sa.Index("ix_contact_imports_created_at", "created_at"),
    )

    @property
    def percent_done(self) -> int:
        return 100 if not self.total_rows else round(100 * self.rows_done / self.total_rows)


class ContactImportFailure(db.Model):
    """A row of an import that was not saved: its line in the file, why, and its cells
    (for the downloadable CSV of failed rows, which can be fixed and uploaded again)."""

    __tablename__ = "contact_import_failures"

    id: Mapped[int] = mapped_column(primary_key=True)
    import_id: Mapped[int] = mapped_column(sa.ForeignKey("contact_imports.id", ondelete="CASCADE"))
    line: Mapped[int] = mapped_column(sa.Integer)
    reason: Mapped[str] = mapped_column(sa.Text)
    cells: Mapped[list] = mapped_column(sa.JSON, default=list)

    __table_args__ = (
        # One failure per line: a resumed chunk cannot report a row twice.
        sa.UniqueConstraint("import_id", "line", name="uq_contact_import_failures_line"),
    )
