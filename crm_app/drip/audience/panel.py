"""The contact panel: a contact's campaigns as the contact page shows them, its
timeline, and the panel's actions that carry a rule of their own. No HTTP in here.

The page only displays what is decided here: which campaigns are offered, why the
contact cannot be mailed, which emails are stuck waiting for an admin.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache

import sqlalchemy as sa
from sqlalchemy.orm import joinedload
from sqlalchemy.orm.attributes import set_committed_value

from crm_app.drip.audience.address_hash import normalize_email
from crm_app.drip.audience.eligibility import (
    mailing_block_reason,
    not_mailed_label,
    suppression_reason_column,
    suppression_reasons,
    suppression_values,
)
from crm_app.drip.audience.ending import stop_all
from crm_app.drip.audience.enrollment import EnrollmentError, enroll
from crm_app.drip.audience.waiting import is_waiting
from crm_app.drip.reporting.message_lists import ADMIN_LISTS
from crm_app.models import Activity, Campaign, CampaignStep, Contact, Enrollment, Message


@dataclass
class CampaignPanel:
    """What the contact page's campaign panel shows."""

    active: list[Enrollment]
    finished: list[Enrollment]
    # Active campaigns the contact is not already walking through (the manual dropdown).
    available: list[Campaign]
    # Enrolment id -> status of its current step's email, when one exists (queued,
    # sending, failed, in_doubt): why there is no next email date.
    in_flight: dict[int, str] = field(default_factory=dict)
    # Why the contact is never mailed and cannot be enrolled (mailing_block_reason), or None.
    block_reason: str | None = None
    # The same in a word or two ("suppressed by staff"), or None.
    not_mailed: str | None = None
    # The campaign of the contact's type when it is paused or archived and refused this
    # contact: it enrols the contact when it is active again (waiting.py).
    waiting_for: Campaign | None = None
    # Campaign id -> its number of emails ("step 2 of 6").
    step_counts: dict[int, int] = field(default_factory=dict)

    @property
    def enrolled_campaigns(self) -> list[Campaign]:
        """Every campaign the contact was ever enrolled in, with its steps loaded."""
        return list({e.campaign_id: e.campaign for e in self.active + self.finished}.values())

    @staticmethod
    def campaign_stopped(enrollment: Enrollment) -> str | None:
        """Why an active enrolment sends nothing whatever its next date says: its campaign
        is paused or archived (the tick sends only for active campaigns)."""
        campaign = enrollment.campaign
        if campaign.status == "paused":
            return f"{campaign.name} is paused: no email until it resumes"
        if campaign.status == "archived":
            return f"{campaign.name} is archived: no more emails unless it is restored"
        return None

    @property
    def can_enroll(self) -> bool:
        """A contact that is never mailed cannot be enrolled (enrollment.enroll refuses):
        the page offers no enrolment then."""
        return self.block_reason is None

    def delivery_problem(self, enrollment: Enrollment) -> str | None:
        """The state of the enrolment's current email when it waits for an admin
        (one of the admin message lists: failed, in_doubt), else None."""
        state = self.in_flight.get(enrollment.id)
        return state if state in ADMIN_LISTS else None


def in_flight_emails(session, enrollments: list[Enrollment]) -> dict[int, str]:
    """Enrolment id -> status of its current step's email, for the active enrolments
    without a next date (their email is on its way, or waits for an admin)."""
    waiting = [e for e in enrollments if e.next_send_at is None and e.current_step_id]
    if not waiting:
        return {}
    rows = session.execute(
        sa.select(Message.enrollment_id, Message.status, Message.step_id).where(
            Message.enrollment_id.in_([e.id for e in waiting])
        )
    )
    current = {e.id: e.current_step_id for e in waiting}
    return {eid: status for eid, status, step_id in rows if current[eid] == step_id}


# The contact page's statements are built once, the contact bound by name on each visit
# (building a statement and its cache key costs 50 to 90 us of CPU).


@cache
def _panel_statement() -> sa.Select:
    """Every campaign with its number of emails, each with the contact's enrolments in
    it (outer join), and, for a campaign the contact is enrolled in, its steps in order
    (one row per enrolment and step), and on every row the address's reason on the
    suppression list: what the panel and the itinerary read, in one statement instead
    of four (each costs some 0.35 ms of CPU in the app and the database together). The
    steps' identities dedupe repeated rows."""
    step_count = (
        sa.select(sa.func.count(CampaignStep.id))
        .where(CampaignStep.campaign_id == Campaign.id)
        .correlate(Campaign)  # not the outer query's steps
        .scalar_subquery()
    )
    enrolled = sa.and_(
        Enrollment.campaign_id == Campaign.id, Enrollment.contact_id == sa.bindparam("contact_id")
    )
    steps = sa.and_(CampaignStep.campaign_id == Campaign.id, Enrollment.id.is_not(None))
    return (
        sa.select(Campaign, step_count, Enrollment, CampaignStep, suppression_reason_column())
        .outerjoin(Enrollment, enrolled)
        .outerjoin(CampaignStep, steps)
        .order_by(Campaign.name, Campaign.id, Enrollment.id, CampaignStep.position)
    )


@dataclass
class _PanelRead:
    campaigns: list[Campaign]  # by name
    step_counts: dict[int, int]
    enrollments: list[Enrollment]  # newest first, their campaigns' steps loaded
    suppressions: dict[str, str]  # as suppression_reasons gives them


def _read_panel(session, contact: Contact) -> _PanelRead:
    """The panel's statement, its rows gathered (steps already loaded are left as they are)."""
    step_counts: dict[int, int] = {}
    campaigns: list[Campaign] = []
    enrollments: dict[int, Enrollment] = {}
    steps: dict[Campaign, dict[int, CampaignStep]] = {}
    values = {"contact_id": contact.id, **suppression_values(contact.email)}
    rows = session.execute(_panel_statement(), values).all()
    for campaign, step_count, enrollment, step, _ in rows:
        if campaign.id not in step_counts:
            campaigns.append(campaign)
            step_counts[campaign.id] = step_count
        if enrollment is not None:
            enrollments[enrollment.id] = enrollment
            steps.setdefault(campaign, {})
            if "campaign" in sa.inspect(enrollment).unloaded:
                # Held by its enrolment: the session's identity map keeps nothing alive
                # by itself, and a campaign not offered in the dropdown would be dropped.
                set_committed_value(enrollment, "campaign", campaign)
        if step is not None:
            steps[campaign][step.id] = step
    for campaign, its_steps in steps.items():
        if "steps" in sa.inspect(campaign).unloaded:
            set_committed_value(campaign, "steps", list(its_steps.values()))
    newest_first = sorted(enrollments.values(), key=lambda e: (e.enrolled_at, e.id), reverse=True)
    if not rows:  # no campaign at all: no row to carry the suppression list's reason
        suppressions = suppression_reasons(session, [contact.email])
    else:
        reason = rows[0][-1]
        suppressions = {normalize_email(contact.email): reason} if reason is not None else {}
    return _PanelRead(campaigns, step_counts, newest_first, suppressions)


@cache
def _contact_statement() -> sa.Select:
    return (
        sa.select(Contact)
        .where(Contact.id == sa.bindparam("contact_id"))
        .options(joinedload(Contact.owner))
    )


def contact_for_page(session, contact_id: int) -> Contact | None:
    """The contact its page shows, with its owner (whose name the page shows): one
    query whose statement is built once, where `session.get` with a loader option
    builds the option and its cache key on every visit."""
    return session.scalars(_contact_statement(), {"contact_id": contact_id}).one_or_none()


@cache
def _timeline_statement() -> sa.Select:
    return (
        sa.select(Activity)
        .where(Activity.contact_id == sa.bindparam("contact_id"))
        .order_by(Activity.created_at.desc(), Activity.id.desc())
        .limit(sa.bindparam("limit", type_=sa.Integer))
    )


def campaign_panel(session, contact: Contact) -> CampaignPanel:
    """One query: every campaign with its step count, the contact's enrolments and
    their campaigns' steps, the address on the suppression list. Only when the
    contact's type's campaign is paused or archived, whether the contact waits for it;
    only when an active enrolment has no next date, its email's state."""
    read = _read_panel(session, contact)
    campaigns, enrollments, suppressions = read.campaigns, read.enrollments, read.suppressions
    active = [e for e in enrollments if e.status == "active"]
    busy = {e.campaign_id for e in active}
    type_campaign = next((c for c in campaigns if c.contact_type == contact.contact_type), None)
    waiting = (
        type_campaign
        if type_campaign is not None
        and type_campaign.status != "active"
        and is_waiting(session, contact, type_campaign)
        else None
    )
    return CampaignPanel(
        active=active,
        finished=[e for e in enrollments if e.status != "active"],
        available=[c for c in campaigns if c.status == "active" and c.id not in busy],
        in_flight=in_flight_emails(session, active),
        block_reason=mailing_block_reason(session, contact, suppressions=suppressions),
        not_mailed=not_mailed_label(
            contact.email_status,
            suppressions.get(contact.email.lower()),
            erased=contact.erased_at is not None,
        ),
        waiting_for=waiting,
        step_counts=read.step_counts,
    )


TIMELINE_LIMIT = 200


@dataclass
class Timeline:
    """The contact's latest activity, newest first; `more`: older entries are not shown."""

    entries: list[Activity]
    more: bool
    limit: int


def contact_timeline(session, contact: Contact, *, limit: int = TIMELINE_LIMIT) -> Timeline:
    """The contact's activity, newest first, up to `limit` entries: one more is read to
    know whether older ones are left out (the page says so)."""
    values = {"contact_id": contact.id, "limit": limit + 1}
    entries = list(session.scalars(_timeline_statement(), values))
    return Timeline(entries[:limit], len(entries) > limit, limit)


# --- the panel's actions (callers commit) ---


def enroll_chosen(
    session, contact: Contact, campaign_id: int | None, *, actor: str, restart: bool = False
) -> Enrollment:
    """Enrol in the campaign picked in the panel's dropdown (a manual enrolment);
    `restart` confirms a restart the campaign's re-entry rule asked for."""
    campaign = session.get(Campaign, campaign_id) if campaign_id is not None else None
    if campaign is None:
        raise EnrollmentError("Choose a campaign to enrol in.")
    return enroll(session, contact, campaign, actor=actor, source="manual", restart=restart)


def stop_all_or_refuse(session, contact: Contact, *, reason: str, actor: str) -> int:
    """Stop every active enrolment; returns how many. Stopping none is refused: the
    user pressed "Stop all" expecting something to stop, and must be told it did not."""
    count = stop_all(session, contact, reason=reason, actor=actor)
    if count == 0:
        raise EnrollmentError("There is no active enrolment to stop.")
    return count
