"""The tick's housekeeping of leases: a `queued` row whose job Redis lost is leased
again, and a `sending` row whose worker died mid-send goes in doubt (it may have reached
SendGrid, so it is never resent by itself). See DELIVERY.md."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from crm_app.drip.common.activity import record_activity
from crm_app.drip.common.sql import is_postgres
from crm_app.models import Campaign, Contact, Enrollment, Message


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
    for row in doubtful:
        contact = session.get(Contact, row.contact_id)
        if contact is None:
            continue
        record_activity(
            session,
            contact,
            "email_in_doubt",
            f"Email #{row.id} may or may not have been sent (the worker stopped mid-send)",
            actor="system:tick",
            campaign=session.get(Campaign, row.campaign_id),
            enrollment=session.get(Enrollment, row.enrollment_id),
        )
    return len(doubtful)
