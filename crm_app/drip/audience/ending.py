"""How an enrolment ends: stopped (by a person, a suppression, a type change, one at a
time or set-based) or completed after its last email. The timeline row, and the audit
entry when a person acted, are written in the caller's transaction. Callers commit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from crm_app.drip.audience.errors import EnrollmentConflict
from crm_app.drip.common.activity import activity_row, record_activities, record_activity
from crm_app.drip.common.sql import expire_updated, in_values, update_rows
from crm_app.drip.team.audit import record_audit
from crm_app.models import Campaign, Contact, Enrollment, utcnow


def stop(
    session,
    enrollment: Enrollment,
    *,
    reason: str,
    actor: str,
    now: datetime | None = None,
) -> Enrollment:
    if enrollment.status != "active":
        raise EnrollmentConflict(f"This enrolment has already ended ({enrollment.end_reason}).")
    name = enrollment.campaign.name
    summary = _stop_summary(name, enrollment.contact.full_name, reason)
    record_audit(session, actor, "enrollment.stopped", "enrollment", enrollment.id, summary)
    return _end(
        session, enrollment, "stopped", reason, _stop_detail(name, reason), actor=actor, now=now
    )


def _stop_detail(campaign_name: str, reason: str) -> str:
    return f"Stopped {campaign_name}: {reason}"


def _stop_summary(campaign_name: str, contact_name: str, reason: str) -> str:
    return f"Stopped {campaign_name} for {contact_name}: {reason}"


@dataclass(frozen=True)
class StopOrder:
    """One enrolment for `stop_many`, with the names its timeline and audit rows quote."""

    enrollment_id: int
    contact_id: int
    contact_name: str
    campaign_id: int
    campaign_name: str
    reason: str


def stop_many(session, orders: Sequence[StopOrder], *, actor: str, now: datetime) -> set[int]:
    """`stop` for many enrolments with one UPDATE and one INSERT (a webhook batch's
    bounces, an import's type switches). An enrolment another writer ended first is
    left as it is. Returns the ids stopped."""
    if not orders:
        return set()
    table = Enrollment.__table__
    stopped = update_rows(
        session,
        table,
        [{"id": o.enrollment_id, "end_reason": o.reason, "ended_at": now} for o in orders],
        where=lambda r: [table.c.status == "active"],
        values=lambda r: {
            "status": "stopped",
            "end_reason": r.end_reason,
            "ended_at": r.ended_at,
            "next_send_at": None,
        },
    )
    done = [o for o in orders if o.enrollment_id in stopped]
    record_activities(
        session,
        [
            activity_row(
                o.contact_id,
                "stopped",
                _stop_detail(o.campaign_name, o.reason),
                actor=actor,
                campaign_id=o.campaign_id,
                enrollment_id=o.enrollment_id,
                created_at=now,
            )
            for o in done
        ],
    )
    for o in done:
        summary = _stop_summary(o.campaign_name, o.contact_name, o.reason)
        record_audit(session, actor, "enrollment.stopped", "enrollment", o.enrollment_id, summary)
    expire_updated(session, Enrollment, stopped)
    return stopped


def active_stop_orders(
    session, contacts: Mapping[int, str], reason: Mapping[int, str]
) -> list[StopOrder]:
    """A StopOrder for each active enrolment of `contacts` (id -> display name), with
    that contact's `reason`."""
    rows = session.execute(
        sa.select(Enrollment.id, Enrollment.contact_id, Enrollment.campaign_id, Campaign.name)
        .join(Campaign, Campaign.id == Enrollment.campaign_id)
        .where(in_values(session, Enrollment.contact_id, contacts), Enrollment.status == "active")
        .order_by(Enrollment.enrolled_at, Enrollment.id)
    )
    return [
        StopOrder(eid, cid, contacts[cid], campaign_id, name, reason[cid])
        for eid, cid, campaign_id, name in rows
    ]


def active_enrollments(session, contact: Contact) -> list[Enrollment]:
    return list(
        session.scalars(
            sa.select(Enrollment)
            .where(Enrollment.contact_id == contact.id, Enrollment.status == "active")
            .order_by(Enrollment.enrolled_at)
        )
    )


def stop_all(
    session, contact: Contact, *, reason: str, actor: str, now: datetime | None = None
) -> int:
    stopped = 0
    for enrollment in active_enrollments(session, contact):
        stop(session, enrollment, reason=reason, actor=actor, now=now)
        stopped += 1
    return stopped


def completed_detail(campaign_name: str) -> str:
    """The timeline's words for an enrolment that completed (one or a chunk's many)."""
    return f"Completed {campaign_name}"


def complete(session, enrollment: Enrollment, *, now: datetime | None = None) -> Enrollment:
    """The last step went out: the enrolment ends as completed."""
    return _end(
        session,
        enrollment,
        "completed",
        "completed all steps",
        completed_detail(enrollment.campaign.name),
        actor="system:worker",
        now=now,
    )


def _end(
    session,
    enrollment: Enrollment,
    status: str,
    reason: str,
    detail: str,
    *,
    actor: str,
    now: datetime | None,
) -> Enrollment:
    """End an enrolment (stopped or completed) and say so on the timeline."""
    enrollment.status = status
    enrollment.end_reason = reason
    enrollment.ended_at = now or utcnow()
    enrollment.next_send_at = None
    kind = "completed" if status == "completed" else "stopped"
    record_activity(
        session,
        enrollment.contact,
        kind,
        detail,
        actor=actor,
        campaign=enrollment.campaign,
        enrollment=enrollment,
    )
    return enrollment
