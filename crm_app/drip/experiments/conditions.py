"""'Send only if': a condition on an email, checked by the worker just before it goes.

A condition is either a rule on the contact's fields (rules.py) or on engagement with
the previous email of the same enrolment (the last one sent): "opened", "clicked", or
"not_opened" (not opened within this email's delay, i.e. by the time this one is due).
When it does not hold, the email is skipped with the reason on the timeline and the
enrolment moves on to the next email (delivery/skip_rules.py, chunk.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

import sqlalchemy as sa

from crm_app.drip.campaigns.rendering import contact_context
from crm_app.drip.common.errors import FieldErrors
from crm_app.drip.common.sql import checked_on_found_rows, in_values
from crm_app.drip.experiments.rules import describe, matches, rule_errors
from crm_app.drip.team.audit import record_audit
from crm_app.models import CampaignStep, Message

ENGAGEMENT = {
    "opened": "the previous email was opened",
    "clicked": "a link in the previous email was clicked",
    "not_opened": "the previous email was not opened within this email's delay",
}


class ConditionError(FieldErrors):
    """A condition that cannot be saved."""


def describe_condition(condition: dict | None) -> str:
    if not condition:
        return "always"
    if condition.get("kind") == "engagement":
        return ENGAGEMENT.get(condition.get("event", ""), condition.get("event", ""))
    return describe(condition)


def set_condition(
    session,
    step: CampaignStep,
    kind: str,
    field: str,
    op: str,
    value: str,
    event: str,
    *,
    actor: str,
) -> None:
    """Save (kind "field" or "engagement") or clear (kind "none") the step's condition."""
    if kind == "none":
        step.condition = None
    elif kind == "engagement":
        if event not in ENGAGEMENT:
            raise ConditionError({"event": "Choose opened, clicked or not opened."})
        if step.position == 1:
            raise ConditionError({"event": FIRST_HAS_NO_PREVIOUS})
        step.condition = {"kind": "engagement", "event": event}
    elif kind == "field":
        errors = rule_errors(field, op, value)
        if errors:
            raise ConditionError(errors)
        step.condition = {"kind": "field", "field": field.strip(), "op": op, "value": value.strip()}
    else:
        raise ConditionError({"kind": "Choose a kind of condition."})
    step.campaign.customized = True
    summary = (
        f"Email {step.position} of {step.campaign.name}: send only if "
        f"{describe_condition(step.condition)}"
    )
    record_audit(session, actor, "step.condition", "campaign_step", step.id, summary)


FIRST_HAS_NO_PREVIOUS = "The first email has no previous email."


def needs_a_previous_email(step: CampaignStep) -> bool:
    """Whether the step's condition reads the email before it (so it cannot be first)."""
    return bool(step.condition) and step.condition.get("kind") == "engagement"


def previous_sent_many(session, messages: list[Message]) -> dict[int, Message | None]:
    """The previous email sent of each of these messages whose condition reads it, by
    message id: the last one sent in its sequence (its enrolment; for a resumed enrolment,
    every enrolment of the contact in the campaign, whose emails it goes on with), other
    than the message itself. At most two queries for a whole delivery chunk."""
    wanted = [m for m in messages if m.step is not None and needs_a_previous_email(m.step)]
    plain = {m.enrollment_id for m in wanted if m.enrollment.entry != "resumed"}
    resumed = {(m.contact_id, m.campaign_id) for m in wanted if m.enrollment.entry == "resumed"}
    itself = ~in_values(session, Message.id, {m.id for m in wanted})
    by_enrollment: dict[int, Message] = {}
    if plain:
        scope = sa.and_(in_values(session, Message.enrollment_id, plain), itself)
        by_enrollment = {
            last.enrollment_id: last for last in _last_sent(session, [Message.enrollment_id], scope)
        }
    by_pair: dict[tuple[int, int], Message] = {}
    if resumed:
        pair = (Message.contact_id, Message.campaign_id)
        scope = sa.and_(sa.tuple_(*pair).in_(sorted(resumed)), itself)
        by_pair = {(m.contact_id, m.campaign_id): m for m in _last_sent(session, list(pair), scope)}
    return {
        m.id: by_pair.get((m.contact_id, m.campaign_id))
        if m.enrollment.entry == "resumed"
        else by_enrollment.get(m.enrollment_id)
        for m in wanted
    }


def _last_sent(session, sequence: list, scope: sa.ColumnElement[bool]) -> list[Message]:
    """The last email sent of each sequence (grouped by `sequence`) within `scope`, which
    says which rows (checked_on_found_rows)."""
    rank = sa.func.row_number().over(
        partition_by=sequence, order_by=(Message.sent_at.desc(), Message.id.desc())
    )
    ranked = (
        sa.select(Message.id, rank.label("rank"))
        .where(scope, checked_on_found_rows(Message.status == "sent"))
        .subquery()
    )
    return list(
        session.scalars(
            sa.select(Message).join(ranked, ranked.c.id == Message.id).where(ranked.c.rank == 1)
        )
    )


@dataclass(frozen=True)
class ConditionOutlook:
    """How an email's condition reads for a contact before the email is due."""

    label: str  # describe_condition's words
    holds_now: bool | None  # None: on engagement, known only when the email is due

    def note(self) -> str:
        """The itinerary's and "Why?"'s words for it."""
        if self.holds_now is None:
            return f"sent only if {self.label}: decided when it is due"
        if self.holds_now:
            return f"sent only if {self.label} (it holds today)"
        return f"skipped if nothing changes: sent only if {self.label}, which does not hold today"


def condition_outlook(step: CampaignStep, contact) -> ConditionOutlook | None:
    """The step's condition as it stands for `contact` now (None: the step has none).
    A rule on fields is read as the worker will read it (`condition_failure`); the
    contact may still change before the email is due."""
    condition = step.condition
    if not condition:
        return None
    label = describe_condition(condition)
    if condition.get("kind") == "engagement":
        return ConditionOutlook(label, None)
    return ConditionOutlook(label, matches(condition, contact_context(contact)))


def condition_failure(
    session, message: Message, previous: Mapping[int, Message | None] | None = None
) -> str | None:
    """Why this email's condition does not hold for its contact (None: it holds, or
    there is none). Reads only when the step has a condition. `previous`: the previous
    emails read for a whole chunk (previous_sent_many)."""
    condition = message.step.condition if message.step is not None else None
    if not condition:
        return None
    label = describe_condition(condition)
    if condition.get("kind") != "engagement":
        if condition_outlook(message.step, message.contact).holds_now:
            return None
        return f"its condition does not hold ({label})"
    if previous is None or message.id not in previous:
        previous = previous_sent_many(session, [message])
    last = previous.get(message.id)
    if last is None or last.sent_at is None:
        return f"its condition does not hold ({label}): no previous email was sent"
    # A person's engagement only: a machine open (Apple's privacy proxy) or a scanner's
    # click is no sign of interest (tracking/engagement.py).
    event = condition["event"]
    if event == "opened":
        holds = last.human_opened_at is not None
    elif event == "clicked":
        holds = last.human_clicked_at is not None
    else:
        window_end = last.sent_at + timedelta(days=message.step.delay_days)
        opened = last.human_opened_at
        holds = opened is None or opened > window_end
    return None if holds else f"its condition does not hold ({label})"


def condition_fields(steps: list[CampaignStep]) -> set[str]:
    return {s.condition["field"] for s in steps if s.condition and s.condition.get("field")}
