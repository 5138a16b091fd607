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

from crm_app.drip.audience.bulk_enrollment import FACT_COLUMNS, ContactFacts, enroll_by_type_many
from crm_app.models import Activity, Campaign, Contact, Enrollment, utcnow

# Contacts enrolled per round of a resume (a few statements each).
RESUME_CHUNK = 1000


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
            # Correlated through the activity: naming Contact here, two levels down, made
            # SQLAlchemy add its own FROM contacts (anyone's later enrolment counted).
            ~sa.exists().where(
                later.contact_id == Activity.contact_id,
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
    """Enrol every contact waiting for `campaign` (now active) through the usual rules,
    RESUME_CHUNK contacts at a time with a few statements each (an import of 50,000 made
    while it was paused waits for the resume); one that cannot be mailed any more is
    refused again and counted, not noted twice."""
    result = ResumeEnrolment()
    if campaign.contact_type is None or campaign.status != "active":
        return result
    now = now or utcnow()
    last_id = 0
    while True:
        chunk = [
            ContactFacts(*row)
            for row in session.execute(
                sa.select(*FACT_COLUMNS)
                .where(*_waiting_for(campaign), Contact.id > last_id)
                .order_by(Contact.id)
                .limit(RESUME_CHUNK)
            )
        ]
        if not chunk:
            return result
        bulk = enroll_by_type_many(
            session, chunk, actor=actor, source="resume", now=now, note_refusals=False
        )
        result.enrolled += len(bulk.enrolled)
        result.refused += list(bulk.refused.values())
        last_id = chunk[-1].id
