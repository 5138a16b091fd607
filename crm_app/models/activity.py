from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from crm_app.extensions import db
from crm_app.models.types import UTCDateTime, sqlite_only, utcnow


class Activity(db.Model):
    """One row of a contact's timeline: what happened, and who or what caused it."""

    __tablename__ = "activities"

    id: Mapped[int] = mapped_column(primary_key=True)
    # Its three keys are SQLite's only: on PostgreSQL a statement trigger on each parent
    # does what ON DELETE did (migration 0018), as checking them cost two thirds of
    # each timeline INSERT.
    contact_id: Mapped[int] = mapped_column(sa.Integer)
    kind: Mapped[str] = mapped_column(sa.String(40))
    detail: Mapped[str] = mapped_column(sa.Text, default="")
    actor: Mapped[str] = mapped_column(sa.String(120), default="system")
    campaign_id: Mapped[int | None] = mapped_column(sa.Integer)
    enrollment_id: Mapped[int | None] = mapped_column(sa.Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
        sqlite_only(sa.ForeignKeyConstraint(["contact_id"], ["contacts.id"], ondelete="CASCADE")),
        sqlite_only(
            sa.ForeignKeyConstraint(["campaign_id"], ["campaigns.id"], ondelete="SET NULL")
        ),
        sqlite_only(
            sa.ForeignKeyConstraint(["enrollment_id"], ["enrollments.id"], ondelete="SET NULL")
        ),
        sa.Index("ix_activities_contact_created", "contact_id", "created_at"),
        # Contacts whose enrolment by type a paused (or archived) campaign refused: enrolled
        # when it resumes (crm_app/drip/campaigns/manage.py). Few rows, so a small index.
        sa.Index(
            "ix_activities_not_enrolled",
            "campaign_id",
            "contact_id",
            sqlite_where=sa.text("kind = 'not_enrolled'"),
            postgresql_where=sa.text("kind = 'not_enrolled'"),
        ),
    )
