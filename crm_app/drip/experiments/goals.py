"""Exit goals: a campaign's goals end an enrolment as *converted*, at once.

A campaign names goal events (campaigns.goal_events, one name per line: "demo booked")
and/or a contact type (campaigns.goal_contact_type: the contact becomes a client).
When a contact records one of those goal events (from its page or the API), or reaches
that type, each of its active enrolments in such a campaign ends: status "stopped",
end reason "converted: ...", `converted_at` set, a "converted" row on the timeline.
A queued email of that enrolment is then skipped at send (delivery/skip_rules.py), and
analytics counts exactly these enrolments as conversions.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import joinedload

from crm_app.drip.common.activity import activity_row, record_activities, record_activity
from crm_app.drip.common.sql import in_values, update_rows
from crm_app.drip.team.audit import record_audit
from crm_app.models import Campaign, Contact, Enrollment, utcnow

GOAL_NAME_MAX = 90
MAX_GOALS = 20


def goal_key(name: str) -> str:
    """How goal names compare: spaces folded, case ignored ("Demo  booked" = "demo booked")."""
    return " ".join(name.split()).casefold()[:GOAL_NAME_MAX]


def goal_names(campaign: Campaign) -> list[str]:
    return [line.strip() for line in (campaign.goal_events or "").splitlines() if line.strip()]


def parse_goal_events(raw: str) -> tuple[str, str | None]:
    """(the text to store, an error): one goal name per line."""
    names = []
    for line in (raw or "").replace("\r\n", "\n").split("\n"):
        name = " ".join(line.split())
        if not name:
            continue
        if len(name) > GOAL_NAME_MAX:
            return "", f"A goal name has at most {GOAL_NAME_MAX} characters."
        if goal_key(name) not in (goal_key(n) for n in names):
            names.append(name)
    if len(names) > MAX_GOALS:
        return "", f"At most {MAX_GOALS} goals."
    return "\n".join(names), None


def convert(
    session, enrollment: Enrollment, reason: str, *, actor: str, now: datetime | None = None
) -> Enrollment:
    """End an active enrolment as converted, and say why on the timeline."""
    now = now or utcnow()
    enrollment.status = "stopped"
    enrollment.end_reason = f"converted: {reason}"[:200]
    enrollment.ended_at = now
    enrollment.converted_at = now
    enrollment.next_send_at = None
    campaign = enrollment.campaign
    record_activity(
        session,
        enrollment.contact,
        "converted",
        f"Left {campaign.name}: converted ({reason})",
        actor=actor,
        campaign=campaign,
        enrollment=enrollment,
    )
    summary = f"{enrollment.contact.full_name} converted in {campaign.name}: {reason}"
    record_audit(session, actor, "enrollment.converted", "enrollment", enrollment.id, summary)
    return enrollment


def _active(session, contact: Contact) -> list[Enrollment]:
    return list(
        session.scalars(
            sa.select(Enrollment)
            .options(joinedload(Enrollment.campaign))  # exits read each one's goals
            .where(Enrollment.contact_id == contact.id, Enrollment.status == "active")
            .order_by(Enrollment.enrolled_at)
        )
    )


def exit_on_goal_event(
    session, contact: Contact, name: str, *, actor: str, now: datetime | None = None
) -> list[Enrollment]:
    """A goal event was recorded: the enrolments whose campaign names it end, converted."""
    key = goal_key(name)
    ended = []
    for enrollment in _active(session, contact):
        if key in (goal_key(n) for n in goal_names(enrollment.campaign)):
            ended.append(convert(session, enrollment, f"goal {name}", actor=actor, now=now))
    return ended


def exit_on_type(
    session, contact: Contact, new_type: str, *, actor: str, now: datetime | None = None
) -> list[Enrollment]:
    """The contact reached a type: the enrolments whose campaign aims at it end, converted."""
    ended = []
    for enrollment in _active(session, contact):
        if enrollment.campaign.goal_contact_type == new_type:
            reason = f"became a {new_type}"
            ended.append(convert(session, enrollment, reason, actor=actor, now=now))
    return ended


def exit_on_type_many(
    session, reached: list[tuple[int, str]], *, actor: str, now: datetime
) -> set[int]:
    """`exit_on_type` for many contacts at once (a bulk type change, an import): each
    (contact id, new type); one UPDATE and one INSERT. Returns the enrolments ended."""
    if not reached:
        return set()
    new_type = dict(reached)
    campaigns = {
        c.id: c
        for c in session.scalars(
            sa.select(Campaign).where(Campaign.goal_contact_type.in_(set(new_type.values())))
        )
    }
    if not campaigns:
        return set()
    candidates = session.execute(
        sa.select(Enrollment.id, Enrollment.contact_id, Enrollment.campaign_id).where(
            in_values(session, Enrollment.contact_id, set(new_type)),
            Enrollment.status == "active",
            Enrollment.campaign_id.in_(set(campaigns)),
        )
    ).all()
    ending = {
        eid: (contact_id, campaigns[campaign_id])
        for eid, contact_id, campaign_id in candidates
        if campaigns[campaign_id].goal_contact_type == new_type[contact_id]
    }
    table = Enrollment.__table__
    ended = update_rows(
        session,
        table,
        [
            {"id": eid, "end_reason": f"converted: became a {new_type[cid]}", "ended_at": now}
            for eid, (cid, _) in ending.items()
        ],
        where=lambda r: [table.c.status == "active"],
        values=lambda r: {
            "status": "stopped",
            "end_reason": r.end_reason,
            "ended_at": r.ended_at,
            "converted_at": r.ended_at,
            "next_send_at": None,
        },
    )
    record_activities(
        session,
        [
            activity_row(
                cid,
                "converted",
                f"Left {campaign.name}: converted (became a {new_type[cid]})",
                actor=actor,
                campaign_id=campaign.id,
                enrollment_id=eid,
                created_at=now,
            )
            for eid, (cid, campaign) in ending.items()
            if eid in ended
        ],
    )
    return ended
