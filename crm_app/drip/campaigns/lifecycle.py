"""Campaigns are made, not only seeded: create, edit the details (rename, trigger,
goal, re-entry rule), clone with its emails, delete one that never sent. Pausing
and archiving are manage.set_campaign_status. Each is in the audit log. Callers commit.

One campaign per contact type: the type is a campaign's trigger (a new contact of
that type, or one switched to it, is enrolled there), so two campaigns cannot
share one. A campaign without a type is enrolled into by hand only.

The details form carries the revision it was opened at (details_revision): a save
after someone else changed a detail raises CampaignChangedMeanwhile, and nothing is
saved.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, fields

import sqlalchemy as sa

from crm_app.default_campaigns import load_default_campaigns
from crm_app.drip.campaigns.versions import record_version
from crm_app.drip.common.errors import FieldErrors
from crm_app.drip.common.sql import saved_unless_taken
from crm_app.drip.experiments.goals import parse_goal_events
from crm_app.drip.experiments.variants import copy_running_test
from crm_app.drip.team.audit import record_audit
from crm_app.models import (
    CONTACT_TYPES,
    REACHED_STATUSES,
    REENTRY_RULES,
    Campaign,
    CampaignStep,
    Enrollment,
    Message,
)

NAME_MAX = 120
DESCRIPTION_MAX = 2000


class CampaignDetailsError(FieldErrors):
    """Campaign details that cannot be saved, or a delete that is refused."""


class CampaignChangedMeanwhile(Exception):
    """Someone else saved the campaign's details after this form was opened: saving it
    would undo their change without anyone seeing it. Nothing was saved; `campaign` is
    read afresh and `changed` names the details that differ from the opened form's."""

    def __init__(self, campaign: Campaign, changed: list[str]):
        self.campaign = campaign
        self.changed = changed
        now = details_of(campaign)
        said = "; ".join(
            f"the {FIELD_LABELS[name]} is now “{_shown(name, now)}”" for name in changed
        )
        self.message = (
            f"This campaign was changed by someone else since you opened it: {said}. "
            "Nothing was saved."
        )
        super().__init__(self.message)


def _shown(name: str, details: dict[str, str]) -> str:
    value = " ".join(details[name].split()) or "none"
    if name == "contact_type" and not details[name]:
        value = "manual enrolment only"
    return value if len(value) <= 80 else value[:79] + "…"


@dataclass(frozen=True)
class CampaignInput:
    """What the campaign form submits, as text."""

    name: str = ""
    description: str = ""
    contact_type: str = ""  # the trigger; empty: manual enrolment only
    goal_contact_type: str = ""
    reentry: str = "resume"
    goal_events: str = ""  # exit goals: goal event names, one per line
    # The revision the edit form was opened at (details_revision); empty: not checked.
    revision: str = ""


CAMPAIGN_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(CampaignInput))
# How the audit log names each detail an edit changed.
FIELD_LABELS = {
    "name": "name",
    "description": "description",
    "contact_type": "trigger",
    "goal_contact_type": "goal type",
    "reentry": "re-entry rule",
    "goal_events": "goal events",
}


def details_of(campaign: Campaign | None) -> dict[str, str]:
    """The form's values for a campaign (a new one's defaults when None)."""
    if campaign is None:
        return {f.name: f.default for f in fields(CampaignInput)}
    return {
        "name": campaign.name,
        "description": campaign.description,
        "contact_type": campaign.contact_type or "",
        "goal_contact_type": campaign.goal_contact_type,
        "reentry": campaign.reentry,
        "goal_events": campaign.goal_events,
    }


def _digest(value: str) -> str:
    return hashlib.sha256((value or "").encode()).hexdigest()[:12]


def details_revision(campaign: Campaign) -> str:
    """What the edit form carries: a short digest of each detail, in form order, so a
    save tells which details someone else changed since (not when: the campaign's
    other settings, such as its window or status, are no conflict)."""
    return ".".join(_digest(value) for value in details_of(campaign).values())


def _refuse_if_changed_meanwhile(session, campaign: Campaign, revision: str) -> None:
    """CampaignChangedMeanwhile unless the details are still those of `revision`. A
    write to the campaign's row takes its lock (PostgreSQL; SQLite's write lock) until
    the commit, then the details are read afresh: of two saves of one revision at once,
    the second waits, then finds the first's and is refused."""
    if not revision:
        return
    table = Campaign.__table__
    session.execute(
        sa.update(table).where(table.c.id == campaign.id).values(updated_at=table.c.updated_at)
    )
    session.refresh(campaign)
    opened = revision.split(".")
    changed = [
        name
        for i, (name, value) in enumerate(details_of(campaign).items())
        if i >= len(opened) or opened[i] != _digest(value)
    ]
    if changed:
        raise CampaignChangedMeanwhile(campaign, changed)


def type_taken_by(session, contact_type: str, *, other_than: Campaign | None = None):
    """The campaign a contact type already triggers, if another one does."""
    taken = session.scalar(sa.select(Campaign).where(Campaign.contact_type == contact_type))
    return None if taken is None or taken is other_than else taken


def triggers_taken(session, *, other_than: Campaign | None = None) -> dict[str, str]:
    """Contact type -> the name of the campaign it triggers (other than `other_than`):
    the form says which types are taken before an admin picks one."""
    rows = session.execute(
        sa.select(Campaign.contact_type, Campaign.name, Campaign.id).where(
            Campaign.contact_type.is_not(None)
        )
    )
    skip = other_than.id if other_than is not None else None
    return {contact_type: name for contact_type, name, cid in rows if cid != skip}


def _name_taken(session, name: str, other_than: Campaign | None) -> bool:
    found = session.scalar(sa.select(Campaign).where(sa.func.lower(Campaign.name) == name.lower()))
    return found is not None and found is not other_than


def validate_details(session, data: CampaignInput, *, campaign: Campaign | None = None) -> dict:
    """Cleaned values, or CampaignDetailsError with a message per field."""
    errors: dict[str, str] = {}
    name, description = data.name.strip(), data.description.strip()
    if not name:
        errors["name"] = "Give the campaign a name."
    elif len(name) > NAME_MAX:
        errors["name"] = f"At most {NAME_MAX} characters."
    elif _name_taken(session, name, campaign):
        errors["name"] = f"Another campaign is called {name}."
    if len(description) > DESCRIPTION_MAX:
        errors["description"] = f"At most {DESCRIPTION_MAX} characters."
    trigger = data.contact_type.strip()
    if trigger and trigger not in CONTACT_TYPES:
        errors["contact_type"] = "Choose a contact type, or manual enrolment only."
    elif trigger and (owner := type_taken_by(session, trigger, other_than=campaign)):
        errors["contact_type"] = (
            f"{owner.name} already enrols every {trigger} contact: a contact type starts one "
            f"campaign only. Choose manual enrolment only, or give {owner.name} another "
            "trigger first."
        )
    goal = data.goal_contact_type.strip()
    if goal and goal not in CONTACT_TYPES:
        errors["goal_contact_type"] = "Choose a contact type, or no type goal."
    if data.reentry not in REENTRY_RULES:
        errors["reentry"] = "Choose what enrolling a contact again does."
    goal_events, problem = parse_goal_events(data.goal_events)
    if problem:
        errors["goal_events"] = problem
    if errors:
        raise CampaignDetailsError(errors)
    return {
        "name": name,
        "description": description,
        "contact_type": trigger or None,
        "goal_contact_type": goal,
        "reentry": data.reentry,
        "goal_events": goal_events,
    }


def _unique_slug(session, name: str) -> str:
    base = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:50] or "campaign"
    taken = set(session.scalars(sa.select(Campaign.slug).where(Campaign.slug.startswith(base))))
    slug, n = base, 2
    while slug in taken:
        slug, n = f"{base}-{n}", n + 1
    return slug


def _trigger_label(campaign: Campaign) -> str:
    return f"trigger: {campaign.contact_type}" if campaign.contact_type else "manual enrolment only"


def _emails(campaign: Campaign) -> str:
    count = len(campaign.steps)
    return f"{count} email{'' if count == 1 else 's'}"


def create_campaign(session, data: CampaignInput, *, actor: str) -> Campaign:
    """A new, active campaign with no emails yet: it takes no enrolment until it has one."""
    values = validate_details(session, data)
    campaign = Campaign(status="active", **values)
    campaign.customized = True  # not a default campaign: `flask seed` never touches it
    if not _added_under_a_free_slug(session, campaign):
        # The same name saved at once elsewhere (a double click): answer as the check does.
        validate_details(session, data)
        raise CampaignDetailsError({"name": "A campaign was saved meanwhile: try again."})
    summary = f"Created campaign {campaign.name} ({_trigger_label(campaign)})"
    record_audit(session, actor, "campaign.created", "campaign", campaign.id, summary)
    return campaign


def update_details(session, campaign: Campaign, data: CampaignInput, *, actor: str) -> Campaign:
    """Rename, re-describe, change the trigger, goal or re-entry rule. Contacts already
    enrolled stay where they are: a new trigger only enrols contacts from now on.
    Refused (CampaignChangedMeanwhile) when a detail changed since `data.revision`."""
    cleaned = validate_details(session, data, campaign=campaign)
    _refuse_if_changed_meanwhile(session, campaign, data.revision)
    changed = [name for name, value in cleaned.items() if getattr(campaign, name) != value]
    old_name = campaign.name
    for name in changed:
        setattr(campaign, name, cleaned[name])
    campaign.customized = True
    if changed:
        summary = f"Edited campaign {old_name}: {', '.join(FIELD_LABELS[n] for n in changed)}"
        if "name" in changed:
            summary += f"; now called {campaign.name}"
        if "contact_type" in changed:
            summary += f"; {_trigger_label(campaign)}"
        record_audit(session, actor, "campaign.edited", "campaign", campaign.id, summary)
    return campaign


def _added_under_a_free_slug(session, campaign: Campaign, rename_from: str = "") -> bool:
    """Add `campaign` with a slug (and, for a copy of `rename_from`, a name) no campaign
    has. Another save may take the same one between the check and the write: the
    unique index refuses it, and a fresh one is picked (a few times at most)."""
    for _ in range(3):
        if rename_from:
            campaign.name = _copy_name(session, rename_from)
        campaign.slug = _unique_slug(session, campaign.name)
        if saved_unless_taken(session, lambda: session.add(campaign)):
            return True
        if not rename_from and _name_taken(session, campaign.name, None):
            return False  # the same name: the caller says so
    return False


def _copy_name(session, name: str) -> str:
    candidate, n = f"Copy of {name}"[:NAME_MAX], 2
    while _name_taken(session, candidate, None):
        candidate, n = f"Copy of {name} ({n})"[:NAME_MAX], n + 1
    return candidate


def clone_campaign(session, campaign: Campaign, *, actor: str) -> Campaign:
    """A copy with every email (each starting a new history at version 1), the same
    window, goals, conditions and re-entry rule, and no trigger (a type starts one
    campaign only). Each email's running A/B test is copied as a fresh test (no sends
    counted); ended tests are not: their results belong to the emails that ran them."""
    copy = Campaign(
        description=campaign.description,
        contact_type=None,
        status="active",
        send_days=campaign.send_days,
        send_start=campaign.send_start,
        send_end=campaign.send_end,
        goal_contact_type=campaign.goal_contact_type,
        goal_days=campaign.goal_days,
        goal_events=campaign.goal_events,
        reentry=campaign.reentry,
        customized=True,
    )
    if not _added_under_a_free_slug(session, copy, rename_from=campaign.name):
        raise CampaignDetailsError({"name": "Other copies were saved meanwhile: try again."})
    copies: list[tuple[CampaignStep, CampaignStep]] = []
    for step in sorted(campaign.steps, key=lambda s: s.position):
        new = CampaignStep(
            position=step.position,
            delay_days=step.delay_days,
            subject=step.subject,
            body_html=step.body_html,
            body_text=step.body_text,
            condition=step.condition,
            version=1,
        )
        copy.steps.append(new)
        note = f"copied from {campaign.name}, email {step.position} version {step.version}"
        record_version(session, new, actor=actor, note=note)
        copies.append((step, new))
    session.flush()
    for step, new in copies:  # after the flush: a variant needs its step's id
        copy_running_test(session, step, new, actor=actor)
    summary = f"Cloned campaign {campaign.name} as {copy.name} ({_emails(copy)})"
    record_audit(session, actor, "campaign.cloned", "campaign", copy.id, summary)
    return copy


def deletion_refusal(session, campaign: Campaign) -> str | None:
    """Why this campaign cannot be deleted (archive it instead), or None."""
    if campaign.slug in {data["slug"] for data in load_default_campaigns()}:
        return (
            f"{campaign.name} is a default campaign (`flask seed` would bring it back): "
            "archive it instead."
        )
    sent = session.scalar(
        sa.select(sa.func.count(Message.id)).where(
            Message.campaign_id == campaign.id, Message.status.in_(REACHED_STATUSES)
        )
    )
    if sent:
        return f"{campaign.name} has sent emails: archive it instead, so its history stays."
    active = session.scalar(
        sa.select(sa.func.count(Enrollment.id)).where(
            Enrollment.campaign_id == campaign.id, Enrollment.status == "active"
        )
    )
    if active:
        return f"{campaign.name} has {active} active enrolment(s): stop them first, or archive it."
    return None


def delete_campaign(session, campaign: Campaign, *, actor: str) -> str:
    """Delete a campaign that never sent (its emails, versions, tests and ended
    enrolments go with it); returns its name. Refused otherwise: archive it."""
    refusal = deletion_refusal(session, campaign)
    if refusal:
        raise CampaignDetailsError({"delete": refusal})
    name = campaign.name
    summary = f"Deleted campaign {name} ({_emails(campaign)})"
    record_audit(session, actor, "campaign.deleted", "campaign", campaign.id, summary)
    # One statement: the database cascades to steps, enrolments and their messages
    # (an enrolment's step reference must go in the same statement as the step).
    session.execute(sa.delete(Campaign).where(Campaign.id == campaign.id))
    session.expunge(campaign)
    return name
