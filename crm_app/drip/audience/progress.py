"""How an enrolment moves from one email to the next: after a send (one at a time, or a
delivery chunk's set-based), after a skipped email, or to completion after the last.
Callers commit.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from crm_app.drip.audience.ending import complete, completed_detail
from crm_app.drip.campaigns.schedule import send_time_for_step
from crm_app.drip.common.activity import activity_row, record_activities
from crm_app.drip.common.sql import in_values, update_rows
from crm_app.models import CampaignStep, Enrollment, utcnow

ENROLLMENTS = Enrollment.__table__


def step_after(steps: list[CampaignStep], step_id: int | None) -> CampaignStep | None:
    """The step that follows `step_id` in the campaign's order now (None after the last)."""
    ordered = sorted(steps, key=lambda step: step.position)
    for index, step in enumerate(ordered):
        if step.id == step_id:
            return ordered[index + 1] if index + 1 < len(ordered) else None
    return None


def advance(
    session, enrollment: Enrollment, *, sent_at: datetime, now: datetime | None = None
) -> Enrollment:
    """The current step went out: move to the step after it in the campaign's order
    now, or complete after the last.

    The delay counts from the moment the email went out, in the contact's time
    zone, and lands inside the campaign's send window.
    """
    following = step_after(enrollment.campaign.steps, enrollment.current_step_id)
    enrollment.last_sent_at = sent_at
    enrollment.step = following
    if following is None:
        return complete(session, enrollment, now=now or sent_at)
    enrollment.next_send_at = send_time_for_step(
        enrollment.campaign, enrollment.contact, following.delay_days, sent_at
    )
    return enrollment


def skip_step(session, enrollment: Enrollment, *, now: datetime) -> Enrollment:
    """The current step was skipped ("send only if" did not hold): move to the step
    after it, due its delay after now (inside the send window), or complete after
    the last. Unlike `advance`, nothing was sent: last_sent_at stays."""
    following = step_after(enrollment.campaign.steps, enrollment.current_step_id)
    enrollment.step = following
    if following is None:
        return complete(session, enrollment, now=now)
    enrollment.next_send_at = send_time_for_step(
        enrollment.campaign, enrollment.contact, following.delay_days, now
    )
    return enrollment


def _step_sequences(session, campaign_ids: set[int]) -> dict[int, list[tuple[int, int]]]:
    """Each campaign's (step id, delay) in order (what `advance` reads from
    campaign.steps): one light query instead of loading the steps with every chunk."""
    steps = CampaignStep.__table__
    sequences: dict[int, list[tuple[int, int]]] = {}
    for campaign_id, step_id, delay_days in session.execute(
        sa.select(steps.c.campaign_id, steps.c.id, steps.c.delay_days)
        .where(in_values(session, steps.c.campaign_id, campaign_ids))
        .order_by(steps.c.campaign_id, steps.c.position)
    ):
        sequences.setdefault(campaign_id, []).append((step_id, delay_days))
    return sequences


def _advance_row(enrollment: Enrollment, sent_at: datetime, sequence: list[tuple[int, int]]):
    """What `advance` would write for this enrolment: the next step, or completion."""
    ids = [step_id for step_id, _ in sequence]
    index = ids.index(enrollment.current_step_id) if enrollment.current_step_id in ids else None
    row = {
        "id": enrollment.id,
        "from_step_id": enrollment.current_step_id,
        "current_step_id": None,
        "last_sent_at": sent_at,
        "next_send_at": None,
        "status": "active",
        "end_reason": None,
        "ended_at": None,
    }
    if index is None or index + 1 >= len(sequence):  # the last step went out: `complete`
        row.update(status="completed", end_reason="completed all steps", ended_at=sent_at)
    else:
        row["current_step_id"], delay = sequence[index + 1]
        row["next_send_at"] = send_time_for_step(
            enrollment.campaign, enrollment.contact, delay, sent_at
        )
    return row


def advance_many(session, sent: list[tuple[Enrollment, datetime]]) -> set[int]:
    """`advance` for many enrolments at once (the delivery worker's chunk): the same
    next step, `next_send_at` and completion, and the same "completed" timeline rows,
    written with one UPDATE and one INSERT instead of through the ORM.

    Each (enrolment, sent_at) moves on only if the database still has it active at
    the step the loaded object shows; returns the ids that moved. The loaded
    objects are not changed (reload them to see the result)."""
    if not sent:
        return set()
    sequences = _step_sequences(session, {e.campaign_id for e, _ in sent})
    rows = [_advance_row(e, at, sequences.get(e.campaign_id, [])) for e, at in sent]
    # Conditional on the step each enrolment was at, so a concurrent stop or move wins.
    moved = update_rows(
        session,
        ENROLLMENTS,
        rows,
        types={"from_step_id": ENROLLMENTS.c.current_step_id.type},
        where=lambda r: [
            ENROLLMENTS.c.status == "active",
            ENROLLMENTS.c.current_step_id == r.from_step_id,
        ],
        values=lambda r: {
            "current_step_id": r.current_step_id,
            "last_sent_at": r.last_sent_at,
            "next_send_at": r.next_send_at,
            "status": r.status,
            "end_reason": sa.func.coalesce(r.end_reason, ENROLLMENTS.c.end_reason),
            "ended_at": sa.func.coalesce(r.ended_at, ENROLLMENTS.c.ended_at),
        },
    )
    completed = {row["id"] for row in rows if row["status"] == "completed"} & moved
    now = utcnow()
    record_activities(
        session,
        [
            activity_row(
                enrollment.contact_id,
                "completed",
                completed_detail(enrollment.campaign.name),
                actor="system:worker",
                campaign_id=enrollment.campaign_id,
                enrollment_id=enrollment.id,
                created_at=now,
            )
            for enrollment, _ in sent
            if enrollment.id in completed
        ],
    )
    return moved
