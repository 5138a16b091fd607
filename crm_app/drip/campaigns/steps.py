"""Editing a campaign's emails: add (at any place), edit, remove, reorder, restore a
version, each checked before it is saved.

A template that does not parse, uses an unknown merge field, fails to render
for the sample contact or leaves out the unsubscribe link is refused with a
message per field, and nothing is saved. Every saved text is a new version
(versions.py: each sent email records the version it used) and marks the campaign
as edited, so `flask seed` keeps it.

Enrolments point at a step's identity, so the live-edit rules (impact.py, and
DELIVERY.md "Live edits") follow from the data; a change that moves contacts who
are waiting raises ImpactNeedsConfirmation until the caller confirms it, after
showing the impact. The editor's form carries the revision it was opened at
(step_revisions.py): a save against a newer one raises StepChangedMeanwhile, and
nothing is saved. Callers commit.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from crm_app.drip.campaigns.impact import (
    Impact,
    ImpactNeedsConfirmation,
    days,
    edit_change,
    order_change,
)
from crm_app.drip.campaigns.naming import email_name, step_name, step_title
from crm_app.drip.campaigns.step_input import (
    TEMPLATE_FIELDS,
    StepEditError,
    StepInput,
    cleaned_texts,
    parse_delay,
    validate_step,
)
from crm_app.drip.campaigns.step_revisions import refuse_if_changed_meanwhile
from crm_app.drip.campaigns.versions import record_version, version_of
from crm_app.drip.common.activity import activity_row, record_activities
from crm_app.drip.experiments.conditions import FIRST_HAS_NO_PREVIOUS, needs_a_previous_email
from crm_app.drip.team.audit import record_audit
from crm_app.models import Campaign, CampaignStep, Enrollment, utcnow

MOVE_OFFSETS = {"up": -1, "down": 1}


def step_actions(step: CampaignStep) -> frozenset[str]:
    """What an email allows where it stands: "up", "down", "remove". The editor offers
    only these, and move_step / remove_step refuse the others."""
    count = len(step.campaign.steps)
    allowed = set()
    if step.position > 1:
        allowed.add("up")
    if step.position < count:
        allowed.add("down")
    if count > 1:  # a campaign keeps at least one email: archive it instead
        allowed.add("remove")
    return frozenset(allowed)


def next_position(campaign: Campaign) -> int:
    """Where a new email goes by default: after the last one."""
    return len(campaign.steps) + 1


def _audit(session, step: CampaignStep, action: str, done: str, actor: str) -> None:
    summary = f"{step.campaign.name}: email {step.position} ({step_title(step)}) {done}"
    record_audit(session, actor, f"email.{action}", "email", step.id, summary)


def _lock_order(session, campaign: Campaign, step: CampaignStep | None = None) -> None:
    """Changes to a campaign's order of emails run one at a time: a write to the
    campaign's row takes its lock (PostgreSQL) or the database's (SQLite, where a
    SELECT .. FOR UPDATE locks nothing), then its emails are read afresh. Two at once (a
    double click on Add or on Move) both took one position: a unique violation, a 500.
    Now the second sees the first's result and goes after it. StepEditError when `step`
    was removed meanwhile."""
    table = Campaign.__table__
    session.execute(
        sa.update(table).where(table.c.id == campaign.id).values(updated_at=table.c.updated_at)
    )
    fresh = session.scalars(
        sa.select(CampaignStep)
        .where(CampaignStep.campaign_id == campaign.id)
        .execution_options(populate_existing=True)
    ).all()
    session.expire(campaign, ["steps"])
    if step is not None and step not in fresh:
        raise StepEditError({"step": "This email was removed meanwhile."})


def _ordered(campaign: Campaign) -> list[CampaignStep]:
    return sorted(campaign.steps, key=lambda step: step.position)


def insert_position(campaign: Campaign, raw: str | None) -> int:
    """The place asked for a new email (1..after the last), or StepEditError."""
    last = next_position(campaign)
    if not (raw or "").strip():
        return last
    try:
        position = int(raw)
    except ValueError:
        position = 0
    if not 1 <= position <= last:
        raise StepEditError({"position": f"Choose a place from 1 to {last}."})
    return position


def _confirm(impact: Impact, confirmed: bool) -> None:
    if impact.needs_confirmation and not confirmed:
        raise ImpactNeedsConfirmation(impact)


# ---------------------------------------------------------------- add and edit


def insert_impact(session, campaign: Campaign, draft: CampaignStep, position: int) -> Impact:
    order = _ordered(campaign)
    order.insert(position - 1, draft)
    change = f"Inserting a new email at place {position}"
    return order_change(session, campaign, order, change)


def add_step(
    session,
    campaign: Campaign,
    data: StepInput,
    sender: dict[str, str],
    *,
    actor: str,
    confirmed: bool = False,
) -> CampaignStep:
    """Insert an email at the place asked (after the last by default). Contacts already
    past that place never get it; the others get it when they reach it."""
    values = validate_step(data, sender, session)
    _lock_order(session, campaign)
    position = insert_position(campaign, data.position)
    step = CampaignStep(version=1, **values)
    _confirm(insert_impact(session, campaign, step, position), confirmed)
    for later in reversed(_ordered(campaign)):
        if later.position >= position:
            later.position += 1
            session.flush()  # one at a time: (campaign, position) is unique
    step.position = position
    campaign.steps.append(step)
    campaign.customized = True
    session.flush()
    record_version(session, step, actor=actor, note="new email")
    _audit(session, step, "added", "added as version 1", actor)
    return step


def edit_impact(session, step: CampaignStep, data: StepInput) -> Impact:
    """What saving this form would do to the contacts waiting in the campaign."""
    content = any(text != getattr(step, n) for n, text in cleaned_texts(data).items())
    return edit_change(session, step, parse_delay(data.delay_days), content)


def update_step(
    session,
    step: CampaignStep,
    data: StepInput,
    sender: dict[str, str],
    *,
    actor: str,
    confirmed: bool = False,
) -> bool:
    """Save an edit; returns False when nothing changed. A new text is a new version;
    a new delay with contacts waiting for the email needs a confirmation. Refused
    (StepChangedMeanwhile) when the email changed since `data.revision`."""
    values = validate_step(data, sender, session)
    refuse_if_changed_meanwhile(session, step, data.revision)
    content_changed = any(getattr(step, name) != values[name] for name in TEMPLATE_FIELDS)
    delay_changed = step.delay_days != values["delay_days"]
    if not (content_changed or delay_changed):
        return False
    if content_changed:
        _refuse_during_a_test(session, step)
    if delay_changed:
        _confirm(edit_change(session, step, values["delay_days"], content_changed), confirmed)
    for name, value in values.items():
        setattr(step, name, value)
    step.campaign.customized = True
    if content_changed:
        step.version += 1
        record_version(session, step, actor=actor)
        _audit(session, step, "edited", f"saved as version {step.version}", actor)
    if delay_changed:
        _audit(session, step, "edited", f"delay set to {days(step.delay_days)}", actor)
    return True


def restore_version(
    session, step: CampaignStep, number: int, sender: dict[str, str], *, actor: str
) -> CampaignStep:
    """Save an earlier version's text as a new version (checked as any edit is)."""
    old = version_of(session, step.id, number)
    if old is None:
        raise StepEditError({"version": f"Email {step.position} has no version {number}."})
    if (old.subject, old.body_html, old.body_text) == (
        step.subject,
        step.body_html,
        step.body_text,
    ):
        raise StepEditError({"version": f"Version {number} is the text saved now."})
    _refuse_during_a_test(session, step)
    data = StepInput(old.subject, old.body_html, old.body_text, str(step.delay_days))
    values = validate_step(data, sender, session)
    for name in TEMPLATE_FIELDS:
        setattr(step, name, values[name])
    step.version += 1
    step.campaign.customized = True
    record_version(session, step, actor=actor, note=f"restored from version {number}")
    _audit(session, step, "restored", f"version {number} restored as version {step.version}", actor)
    return step


# ---------------------------------------------------------------- remove and move


def _refuse_during_a_test(session, step: CampaignStep) -> None:
    """A running A/B test's variants send the email's own text for every part they leave
    blank (the control sends it whole): a new text mid-test would mix two emails in one
    variant's figures and could make two variants the same email."""
    # Imported here: experiments.variants reads this module's limits and checks.
    from crm_app.drip.experiments.variants import running_variants

    if running_variants(session, step):
        raise StepEditError(
            {
                "subject": f"{step_name(step)} runs an A/B test: promote a winner or stop "
                "the test before changing its text."
            }
        )


def removal_impact(session, step: CampaignStep) -> Impact:
    order = [s for s in _ordered(step.campaign) if s is not step]
    change = f"Removing {step_name(step)}"
    return order_change(session, step.campaign, order, change, removed=step)


def release_step(session, step: CampaignStep, *, actor: str, now: datetime | None = None) -> int:
    """Move every enrolment at `step` to the one after it, before the step goes: active
    ones keep their date (one whose email for it is in flight is due now: that email
    is skipped, the step being gone); none left: the tick completes them. Returns how
    many active ones moved, each with its timeline row."""
    now = now or utcnow()
    following = next((s for s in _ordered(step.campaign) if s.position > step.position), None)
    table = Enrollment.__table__
    at_step = table.c.current_step_id == step.id
    moving = session.execute(
        sa.select(table.c.id, table.c.contact_id).where(at_step, table.c.status == "active")
    ).all()
    next_id = following.id if following is not None else None
    loaded = [e for e in session.identity_map.values() if isinstance(e, Enrollment)]
    session.execute(
        sa.update(table)
        .where(at_step, table.c.status == "active")
        .values(current_step_id=next_id, next_send_at=sa.func.coalesce(table.c.next_send_at, now))
    )
    session.execute(sa.update(table).where(at_step).values(current_step_id=next_id))
    for enrollment in loaded:  # changed in SQL: read them again when next used
        if enrollment.current_step_id == step.id:
            session.expire(enrollment)
    then = f"next is “{step_title(following)}”, on the same date" if following else "no email left"
    detail = f"{step_name(step)} was removed from the campaign: {then}"
    record_activities(
        session,
        [
            activity_row(
                contact_id,
                "step_removed",
                detail,
                actor=actor,
                campaign_id=step.campaign_id,
                enrollment_id=enrollment_id,
                created_at=now,
            )
            for enrollment_id, contact_id in moving
        ],
    )
    return len(moving)


def remove_step(session, step: CampaignStep, *, actor: str, confirmed: bool = False) -> str:
    """Remove an email: its waiting contacts move to the next one on the same date, the
    others keep their place. Returns the removed email's name."""
    campaign = step.campaign
    _lock_order(session, campaign, step)
    if "remove" not in step_actions(step):
        raise StepEditError({"step": "A campaign needs at least one email: archive it instead."})
    remaining = [s for s in _ordered(campaign) if s is not step]
    _refuse_a_first_email_that_needs_a_previous_one(remaining)
    _confirm(removal_impact(session, step), confirmed)
    _audit(session, step, "removed", f"removed (at version {step.version})", actor)
    name, position = step_name(step), step.position
    release_step(session, step, actor=actor)
    campaign.steps.remove(step)
    session.flush()
    for later in _ordered(campaign):
        if later.position > position:
            later.position -= 1
            session.flush()  # one at a time: (campaign, position) is unique
    campaign.customized = True
    return name


def _refuse_a_first_email_that_needs_a_previous_one(order: list[CampaignStep]) -> None:
    # Else every contact enrolled from then on would have its first email skipped.
    if order and needs_a_previous_email(order[0]):
        raise StepEditError(
            {"step": f"{FIRST_HAS_NO_PREVIOUS} Clear the 'send only if' of "
                     f"{step_name(order[0])} before it becomes the first."}
        )  # fmt: skip


def _neighbour(step: CampaignStep, direction: str) -> CampaignStep:
    if direction not in MOVE_OFFSETS:
        raise StepEditError({"step": "Move a step up or down."})
    wanted = step.position + MOVE_OFFSETS[direction]
    neighbour = next((s for s in step.campaign.steps if s.position == wanted), None)
    if direction not in step_actions(step) or neighbour is None:
        raise StepEditError({"step": f"Email {step.position} cannot move {direction}."})
    return neighbour


def move_impact(session, step: CampaignStep, direction: str) -> Impact:
    neighbour = _neighbour(step, direction)
    order = _ordered(step.campaign)
    i, j = order.index(step), order.index(neighbour)
    order[i], order[j] = neighbour, step
    change = f"Moving {step_name(step)} {direction}"
    return order_change(session, step.campaign, order, change)


def move_step(
    session, step: CampaignStep, direction: str, *, actor: str, confirmed: bool = False
) -> str:
    """Swap with the neighbouring email ("up" or "down"); every contact keeps its next
    email. Returns the moved email's name, at its new place."""
    _lock_order(session, step.campaign, step)
    neighbour = _neighbour(step, direction)
    first = step if neighbour.position == 1 else neighbour if step.position == 1 else None
    _refuse_a_first_email_that_needs_a_previous_one([first] if first is not None else [])
    _confirm(move_impact(session, step, direction), confirmed)
    mine, theirs = step.position, neighbour.position
    step.position = 0  # free the slot: (campaign, position) is unique
    session.flush()
    neighbour.position = mine
    session.flush()
    step.position = theirs
    session.flush()
    step.campaign.customized = True
    _audit(session, step, "moved", f"moved {direction} from position {mine}", actor)
    return email_name(step.position, step.campaign.name, step.subject)
