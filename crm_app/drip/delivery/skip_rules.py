"""Whether a queued email may still go out, decided on the rows read just before its
claim: the one place these rules live (the worker skips by them; "why did or didn't
this email go" reads them)."""

from __future__ import annotations

from collections.abc import Mapping

from crm_app.drip.audience.eligibility import mailing_block_reason
from crm_app.drip.experiments.conditions import condition_failure
from crm_app.models import Message


def skip_reason(
    session,
    message: Message,
    suppressions: dict[str, str] | None = None,
    previous: Mapping[int, Message | None] | None = None,
) -> tuple[str, str] | None:
    """(reason, what to do with the enrolment: none/stop/reschedule/advance) when this
    email must not go out now, else None ("advance": its condition does not hold, the
    enrolment moves on to the next email).

    Steps are compared by identity: an enrolment whose step was moved elsewhere in the
    sequence still gets this email; one that was moved to another step does not."""
    enrollment = message.enrollment
    if enrollment.converted_at is not None:  # an exit goal (experiments/goals.py)
        return f"the contact reached a goal of the campaign ({enrollment.end_reason})", "none"
    if enrollment.status != "active":
        return f"the enrolment has ended ({enrollment.end_reason or enrollment.status})", "none"
    if message.step_id is None:
        # Removing a step already moved its contacts to the next one, with a date.
        return "the step was removed from the campaign", "none"
    if enrollment.current_step_id != message.step_id:
        return "the enrolment moved to another step", "none"
    blocked = mailing_block_reason(session, message.contact, suppressions=suppressions)
    if blocked:
        return blocked, "stop"
    if message.campaign.status != "active":
        return f"the campaign is {message.campaign.status}", "reschedule"
    failed = condition_failure(session, message, previous)
    if failed:
        return failed, "advance"
    return None
