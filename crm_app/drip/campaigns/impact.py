"""What a change to a running campaign's emails does to the contacts waiting in it,
said before it is saved (the live-edit rules, DELIVERY.md "Live edits"):

- a contact waiting for a removed email gets the next one, on the same date;
- an email inserted before a contact's place is not sent to it;
- reordering keeps each contact's next email; an email moved from after its place to
  before it is not sent to it, one moved from before to after is not sent again;
- a new delay applies to contacts who reach the email from now on; those already
  waiting for it keep their date.

Enrolments point at a step's identity, so these follow from the data; this module
only predicts them for the page, from the same order the tick and the worker read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa

from crm_app.drip.campaigns.naming import subject_title
from crm_app.models import Campaign, CampaignStep, Enrollment


@dataclass(frozen=True)
class Waiting:
    """Active contacts waiting for one step (or with its email in flight)."""

    step: CampaignStep
    count: int
    next_at: datetime | None  # the earliest date among them; None: all in flight


@dataclass(frozen=True)
class ImpactLine:
    count: int
    waiting_for: str  # 'email 3 “Title”'
    effect: str  # what happens to them, as a sentence
    next_at: datetime | None


@dataclass
class Impact:
    """The page's impact note. A change with contacts waiting needs a confirmation."""

    change: str
    lines: list[ImpactLine] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    # Why it needs a confirmation, in a few words, said with the lines that explain it:
    # the form's "Not saved yet: ..." must not say more than they do.
    summary: str = "it changes which emails contacts who are waiting get"

    @property
    def waiting(self) -> int:
        return sum(line.count for line in self.lines)

    @property
    def needs_confirmation(self) -> bool:
        return bool(self.lines)


def days(count: int) -> str:
    """'1 day', '3 days'."""
    return f"{count} day{'' if count == 1 else 's'}"


class ImpactNeedsConfirmation(Exception):
    """The change moves contacts who are waiting: show the impact, then confirm."""

    def __init__(self, impact: Impact):
        super().__init__(impact.change)
        self.impact = impact


def waiting_for_steps(session, campaign: Campaign) -> list[Waiting]:
    """Active enrolments per step of the campaign, in step order: one grouped query."""
    by_id = {step.id: step for step in campaign.steps}
    if not by_id:
        return []
    rows = session.execute(
        sa.select(
            Enrollment.current_step_id,
            sa.func.count(Enrollment.id),
            sa.func.min(Enrollment.next_send_at),
        )
        .where(Enrollment.status == "active", Enrollment.current_step_id.in_(list(by_id)))
        .group_by(Enrollment.current_step_id)
    )
    groups = [Waiting(by_id[step_id], count, next_at) for step_id, count, next_at in rows]
    return sorted(groups, key=lambda group: group.step.position)


def _label(step, order: list) -> str:
    """'email 3 “Title”' by its place in `order` (the new order when it is in it)."""
    position = order.index(step) + 1 if step in order else step.position
    if not step.subject:  # a new email not typed yet
        return f"the new email {position}"
    return f"email {position} “{subject_title(step.subject)}”"


def _names(steps: list, order: list) -> str:
    return ", ".join(_label(step, order) for step in steps)


def _effect(group: Waiting, old: list, new: list) -> str:
    """What the new order does to contacts waiting for `group.step` in the old one."""
    place = old.index(group.step)
    already = set(old[:place])  # sent to them in this enrolment: never sent again
    next_step = next((s for s in old[place:] if s in new), None)
    new_rest = [s for s in new[new.index(next_step) :] if s not in already] if next_step else []
    old_rest = old[place:]
    parts = []
    if next_step is group.step:
        parts.append("keep it as their next email")
    elif next_step is None:
        parts.append("have no email left: they complete on their date")
    else:
        parts.append(f"will get {_label(next_step, new)} next instead, on the same date")
    gained = [s for s in new_rest if s not in old_rest]
    later = [s for s in old_rest if s is not group.step and s not in new_rest]
    moved_before = [s for s in later if s in new]
    removed = [s for s in later if s not in new]
    passed = [s for s in new if s not in old and s not in new_rest]
    if gained:
        parts.append(f"later also get {_names(gained, new)}")
    if moved_before:
        parts.append(f"no longer get {_names(moved_before, new)} (now before their place)")
    if removed:
        parts.append(f"no longer get {_names(removed, old)} (removed)")
    if passed:
        parts.append(f"not get {_names(passed, new)} (it comes before their place)")
    return "; ".join(parts) + "."


def order_change(
    session, campaign: Campaign, new_order: list, change: str, *, removed=None
) -> Impact:
    """The impact of replacing the campaign's order of steps by `new_order` (which may
    hold a new step not saved yet, or lack a removed one)."""
    old = sorted(campaign.steps, key=lambda step: step.position)
    impact = Impact(change)
    for group in waiting_for_steps(session, campaign):
        effect = _effect(group, old, new_order)
        waiting_for = _label(group.step, old if group.step is removed else new_order)
        impact.lines.append(ImpactLine(group.count, waiting_for, effect, group.next_at))
    impact.notes.append("Contacts who completed or stopped are not affected.")
    return impact


def edit_change(
    session, step: CampaignStep, new_delay: int | None, content_changed: bool
) -> Impact:
    """Saving a new text and/or delay for `step`. A delay change with contacts at or
    before the email needs a confirmation; a new text goes to everyone who has not
    received the email yet (a note, nothing to confirm)."""
    old = sorted(step.campaign.steps, key=lambda s: s.position)
    label = _label(step, old)
    impact = Impact(f"Saving {label}")
    groups = waiting_for_steps(session, step.campaign)
    if new_delay is not None and new_delay != step.delay_days:
        change = f"{days(new_delay)} instead of {step.delay_days}"
        impact.summary = (
            "the new delay applies to contacts who reach this email from now on; "
            "contacts already waiting for it keep their date"
        )
        for group in groups:
            if group.step is step:
                effect = (
                    f"keep their date; the new delay ({change}) applies to contacts who "
                    "reach it from now on."
                )
            elif group.step.position < step.position:
                effect = f"will wait {change} before {label} when they reach it."
            else:
                continue
            waiting_for = _label(group.step, old)
            impact.lines.append(ImpactLine(group.count, waiting_for, effect, group.next_at))
    waiting_here = next((g for g in groups if g.step is step), None)
    if content_changed and waiting_here is not None:
        impact.notes.append(
            f"{waiting_here.count} contact(s) waiting for {label} will get the version you save."
        )
    return impact
