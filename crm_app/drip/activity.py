"""The timeline writer: every state change records its row through here."""

from __future__ import annotations

from crm_app.models import Activity, Campaign, Contact, Enrollment


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
    return row
