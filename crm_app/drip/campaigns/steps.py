"""Editing a campaign's emails: add, edit, remove, reorder, each checked before it is saved.

A template that does not parse, uses an unknown merge field, fails to render
for the sample contact or leaves out the unsubscribe link is refused with a
message per field, and nothing is saved. Every saved change bumps the step's
version (each sent email records the version it used) and marks the campaign
as edited, so `flask seed` keeps it.
Callers commit.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import sqlalchemy as sa

from crm_app.drip.campaigns.rendering import (
    PREVIEW_UNSUBSCRIBE_URL,
    SAMPLE_CONTACT,
    TemplateRenderError,
    build_context,
    check_template,
    render_email,
)
from crm_app.drip.campaigns.unsubscribe_link import unsubscribe_link_problems
from crm_app.drip.common.errors import FieldErrors
from crm_app.drip.team.audit import record_audit
from crm_app.models import Campaign, CampaignStep, Enrollment

MAX_DELAY_DAYS = 365
SUBJECT_MAX = 300
TEMPLATE_FIELDS = ("subject", "body_html", "body_text")
FIELD_LABELS = {"subject": "subject", "body_html": "HTML body", "body_text": "plain-text body"}
MOVE_OFFSETS = {"up": -1, "down": 1}


class StepEditError(FieldErrors):
    """An email edit that cannot be saved (broken template, bad delay...)."""


@dataclass(frozen=True)
class StepInput:
    subject: str
    body_html: str
    body_text: str
    delay_days: str


# What the email form submits, by name (each as text).
STEP_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(StepInput))


def validate_step(data: StepInput, sender: dict[str, str]) -> dict:
    """Cleaned values, or StepEditError with one message per field."""
    errors: dict[str, str] = {}
    values = {name: (getattr(data, name) or "").strip() for name in TEMPLATE_FIELDS}
    for name in TEMPLATE_FIELDS:
        if not values[name]:
            errors[name] = f"The {FIELD_LABELS[name]} is required."
        elif problems := check_template(values[name]):
            errors[name] = " ".join(problems)
    if len(values["subject"]) > SUBJECT_MAX:
        errors["subject"] = f"At most {SUBJECT_MAX} characters."
    try:
        delay = int((data.delay_days or "").strip())
        if not 0 <= delay <= MAX_DELAY_DAYS:
            raise ValueError
        values["delay_days"] = delay
    except ValueError:
        errors["delay_days"] = f"Enter a whole number of days from 0 to {MAX_DELAY_DAYS}."
    if not errors:
        # Parsing is not enough: a filter misused on real data fails only when rendering.
        context = build_context(SAMPLE_CONTACT, sender)
        for name in TEMPLATE_FIELDS:
            parts = {field: "" for field in TEMPLATE_FIELDS} | {name: values[name]}
            try:
                render_email(parts["subject"], parts["body_html"], parts["body_text"], context)
            except TemplateRenderError as failed:
                errors[name] = str(failed)
        if not errors:
            # Every email carries a visible unsubscribe link: both bodies must have it.
            email = render_email(
                values["subject"], values["body_html"], values["body_text"], context
            )
            errors.update(
                unsubscribe_link_problems(email.html, email.text, PREVIEW_UNSUBSCRIBE_URL)
            )
    if errors:
        raise StepEditError(errors)
    return values


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
    """Where a new email goes: after the last one."""
    return len(campaign.steps) + 1


def _audit(session, step: CampaignStep, action: str, done: str, actor: str) -> None:
    summary = f"{step.campaign.name}: email {step.position} ({step.subject}) {done}"
    record_audit(session, actor, f"email.{action}", "email", step.id, summary)


def update_step(
    session, step: CampaignStep, data: StepInput, sender: dict[str, str], *, actor: str
) -> bool:
    """Save an edit; returns False when nothing changed (no new version)."""
    values = validate_step(data, sender)
    if all(getattr(step, name) == value for name, value in values.items()):
        return False
    for name, value in values.items():
        setattr(step, name, value)
    step.version += 1
    step.campaign.customized = True
    _audit(session, step, "edited", f"saved as version {step.version}", actor)
    return True


def add_step(
    session, campaign: Campaign, data: StepInput, sender: dict[str, str], *, actor: str
) -> CampaignStep:
    """Append an email at the end of the sequence."""
    values = validate_step(data, sender)
    step = CampaignStep(position=next_position(campaign), version=1, **values)
    campaign.steps.append(step)
    campaign.customized = True
    session.flush()
    _audit(session, step, "added", "added as version 1", actor)
    return step


def remove_step(session, step: CampaignStep, *, actor: str) -> None:
    """Remove an email; contacts keep their place in the rest of the sequence."""
    campaign = step.campaign
    if "remove" not in step_actions(step):
        raise StepEditError({"step": "A campaign needs at least one email: archive it instead."})
    _audit(session, step, "removed", f"removed (at version {step.version})", actor)
    position = step.position
    # Enrolments already past the removed email move back one place with it; those
    # waiting for it now wait for the next one (or complete at their next tick).
    session.execute(
        sa.update(Enrollment)
        .where(
            Enrollment.campaign_id == campaign.id,
            Enrollment.status == "active",
            Enrollment.current_step > position,
        )
        .values(current_step=Enrollment.current_step - 1)
    )
    campaign.steps.remove(step)
    session.flush()
    for later in sorted(campaign.steps, key=lambda s: s.position):
        if later.position > position:
            later.position -= 1
            session.flush()  # one at a time: (campaign, position) is unique
    campaign.customized = True


def move_step(session, step: CampaignStep, direction: str, *, actor: str) -> None:
    """Swap with the neighbouring email ("up" or "down")."""
    if direction not in MOVE_OFFSETS:
        raise StepEditError({"step": "Move a step up or down."})
    wanted = step.position + MOVE_OFFSETS[direction]
    neighbour = next((s for s in step.campaign.steps if s.position == wanted), None)
    if direction not in step_actions(step) or neighbour is None:
        raise StepEditError({"step": f"Email {step.position} cannot move {direction}."})
    mine, theirs = step.position, neighbour.position
    step.position = 0  # free the slot: (campaign, position) is unique
    session.flush()
    neighbour.position = mine
    session.flush()
    step.position = theirs
    session.flush()
    step.campaign.customized = True
    _audit(session, step, "moved", f"moved {direction} from position {mine}", actor)
