"""Contacts waiting for a campaign to resume: created (or switched to its type) while
the campaign mapped to their type was paused or archived, so their enrolment by type was
refused. When the campaign is active again they are enrolled: the rule below is the one
both the resume (crm_app/drip/campaigns/manage.py) and the contact panel read.

"Waiting" means: of the campaign's type, not active in it, and refused by it (a
"not_enrolled" timeline row naming the campaign) with no enrolment in it since. A
contact stopped by hand, or switched away and back while it was active, is not waiting.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import aliased

from crm_app.drip.audience.enrollment import EnrollmentError, enroll
from crm_app.models import Activity, Campaign, Contact, Enrollment, utcnow


def _waiting_for(campaign: Campaign) -> list[sa.ColumnElement]:
    """Conditions on Contact: waiting for `campaign` (see the module's docstring)."""
    later = aliased(Enrollment)
    active = aliased(Enrollment)
    refused = (
        sa.select(Activity.id)
        .where(
            Activity.contact_id == Contact.id,
            Activity.campaign_id == campaign.id,
            Activity.kind == "not_enrolled",
            ~sa.exists().where(
                later.contact_id == Contact.id,
                later.campaign_id == campaign.id,
                later.enrolled_at >= Activity.created_at,
            ),
        )
        .exists()
    )
    not_active = ~sa.exists().where(
        active.contact_id == Contact.id,
        active.campaign_id == campaign.id,
        active.status == "active",
    )
    return [Contact.contact_type == campaign.contact_type, not_active, refused]


def is_waiting(session, contact: Contact, campaign: Campaign | None) -> bool:
    """True when `contact` will be enrolled in `campaign` once it is active again."""
    if campaign is None or campaign.contact_type != contact.contact_type:
        return False
    return (
        session.scalar(
            sa.select(Contact.id).where(Contact.id == contact.id, *_waiting_for(campaign))
        )
        is not None
    )


@dataclass
class ResumeEnrolment:
    enrolled: int = 0
    refused: list[str] = field(default_factory=list)


def enroll_waiting(
    session, campaign: Campaign, *, actor: str, now: datetime | None = None
) -> ResumeEnrolment:
    """Enrol every contact waiting for `campaign` (now active) through the usual rules;
    one that cannot be mailed any more is refused again and counted, not noted twice."""
    result = ResumeEnrolment()
    if campaign.contact_type is None or campaign.status != "active":
        return result
    now = now or utcnow()
    contacts = session.scalars(
        sa.select(Contact).where(*_waiting_for(campaign)).order_by(Contact.id)
    ).all()
    for contact in contacts:
        try:
            enroll(session, contact, campaign, actor=actor, source="resume", now=now)
        except EnrollmentError as refused:
            result.refused.append(str(refused))
        else:
            result.enrolled += 1
    return result
