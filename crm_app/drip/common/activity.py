"""The timeline writer: every state change records its row through here, and the
outbound webhook events those rows stand for with it (drip/outbound/events.py)."""

from __future__ import annotations

from datetime import datetime

from crm_app.drip.common.sql import insert_rows
from crm_app.drip.outbound.events import emit_for_activities
from crm_app.models import Activity, Campaign, Contact, Enrollment, utcnow


def record_activity(
    session,
    contact: Contact,
    kind: str,
    detail: str = "",
    *,
    actor: str = "system",
    campaign: Campaign | None = None,
    enrollment: Enrollment | None = None,
) -> Activity:
    row = Activity(
        contact_id=contact.id,
        kind=kind,
        detail=detail,
        actor=actor,
        campaign_id=campaign.id if campaign is not None else None,
        enrollment_id=enrollment.id if enrollment is not None else None,
    )
    session.add(row)
    facts = activity_row(
        contact.id,
        kind,
        detail,
        actor=actor,
        campaign_id=row.campaign_id,
        enrollment_id=row.enrollment_id,
        created_at=utcnow(),
    )
    emit_for_activities(
        session,
        [facts],
        contacts={contact.id: contact},
        campaign_names={campaign.id: campaign.name} if campaign is not None else None,
    )
    return row


def activity_row(
    contact_id: int,
    kind: str,
    detail: str,
    *,
    actor: str,
    campaign_id: int | None,
    enrollment_id: int | None,
    created_at: datetime,
) -> dict:
    """One timeline row for `record_activities`: the columns `record_activity` fills."""
    return {
        "contact_id": contact_id,
        "kind": kind,
        "detail": detail,
        "actor": actor,
        "campaign_id": campaign_id,
        "enrollment_id": enrollment_id,
        "created_at": created_at,
    }


def record_activities(session, rows: list[dict]) -> None:
    """Many timeline rows (from `activity_row`) in one INSERT, in the caller's transaction:
    the delivery worker records a whole chunk's results at once."""
    insert_rows(session, Activity.__table__, rows)
    emit_for_activities(session, rows)
