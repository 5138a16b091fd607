"""The tick's housekeeping of leases: a `queued` row whose job Redis lost is leased
again, and a `sending` row whose worker died mid-send goes in doubt (it may have reached
SendGrid, so it is never resent by itself). See DELIVERY.md."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from crm_app.drip.common.activity import activity_row, record_activities
from crm_app.drip.common.sql import is_postgres
from crm_app.models import Contact, Message


def release_expired_queued(session, now: datetime, cutoff: datetime, limit: int) -> list[int]:
    """`queued` rows whose lease ran out: Redis lost their job. Re-lease them to this tick."""
    table = Message.__table__
    expired = sa.select(table.c.id).where(table.c.status == "queued", table.c.enqueued_at < cutoff)
    if is_postgres(session):
        expired = expired.limit(limit).with_for_update(skip_locked=True)
        statement = sa.update(table).where(table.c.id.in_(expired.scalar_subquery()))
    else:
        ids = list(session.scalars(expired.limit(limit)))
        if not ids:
            return []
        # Conditional: another tick that re-leased them first makes this match nothing.
        statement = sa.update(table).where(
            table.c.id.in_(ids), table.c.status == "queued", table.c.enqueued_at < cutoff
        )
    return list(session.scalars(statement.values(enqueued_at=now).returning(table.c.id)))


def mark_in_doubt(session, now: datetime, cutoff: datetime) -> int:
    """`sending` rows past the lease: the worker died mid-send. It may have reached
    SendGrid, so the row is never resent by itself: an admin (or the Event Webhook) decides."""
    table = Message.__table__
    doubtful = list(
        session.execute(
            sa.update(table)
            .where(table.c.status == "sending", table.c.claimed_at < cutoff)
            .values(
                status="in_doubt",
                error="The worker stopped while sending; it may or may not have gone out.",
            )
            .returning(table.c.id, table.c.contact_id, table.c.campaign_id, table.c.enrollment_id)
        )
    )
    if not doubtful:
        return 0
    # The timeline rows in one INSERT, not three reads a row (a kill leaves dozens).
    ids = {row.contact_id for row in doubtful}
    known = set(session.scalars(sa.select(Contact.id).where(Contact.id.in_(ids))))
    record_activities(
        session,
        [
            activity_row(
                row.contact_id,
                "email_in_doubt",
                f"Email #{row.id} may or may not have been sent (the worker stopped mid-send)",
                actor="system:tick",
                campaign_id=row.campaign_id,
                enrollment_id=row.enrollment_id,
                created_at=now,
            )
            for row in doubtful
            if row.contact_id in known
        ],
    )
    return len(doubtful)
