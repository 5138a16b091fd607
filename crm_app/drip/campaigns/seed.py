"""Load the four default campaigns: idempotent, and never over an admin's edits."""

from __future__ import annotations

from dataclasses import dataclass, field

import sqlalchemy as sa

from crm_app.default_campaigns import load_default_campaigns
from crm_app.drip.campaigns.steps import release_step
from crm_app.drip.campaigns.versions import record_version
from crm_app.models import Campaign, CampaignStep

SEED_ACTOR = "system:seed"


@dataclass
class SeedReport:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    kept_customized: list[str] = field(default_factory=list)


def _step_fields(step: dict) -> dict:
    return {
        "delay_days": int(step["delay_days"]),
        "subject": step["subject"],
        "body_html": step["body_html"],
        "body_text": step["body_text"],
    }


def _sync_steps(session, campaign: Campaign, steps: list[dict]) -> bool:
    """The campaign's emails as the data says, by position; each new or changed text is
    a version, and contacts waiting for a dropped email move on first (release_step)."""
    changed = False
    existing = {s.position: s for s in campaign.steps}
    for position, data in enumerate(steps, start=1):
        wanted = _step_fields(data)
        step = existing.get(position)
        if step is None:
            step = CampaignStep(position=position, version=1, **wanted)
            campaign.steps.append(step)
            record_version(session, step, actor=SEED_ACTOR, note="default campaign")
            changed = True
        elif any(getattr(step, k) != v for k, v in wanted.items()):
            text_changed = any(
                getattr(step, k) != v for k, v in wanted.items() if k != "delay_days"
            )
            for key, value in wanted.items():
                setattr(step, key, value)
            if text_changed:
                step.version += 1
                record_version(session, step, actor=SEED_ACTOR, note="default campaign updated")
            changed = True
    for position, step in sorted(existing.items(), reverse=True):
        if position > len(steps):
            release_step(session, step, actor=SEED_ACTOR)
            campaign.steps.remove(step)
            session.flush()
            changed = True
    return changed


def seed_default_campaigns(session) -> SeedReport:
    report = SeedReport()
    for data in load_default_campaigns():
        campaign = session.scalar(sa.select(Campaign).where(Campaign.slug == data["slug"]))
        if campaign is None:
            campaign = Campaign(
                slug=data["slug"],
                name=data["name"],
                description=data["description"],
                contact_type=data["contact_type"] or None,
                goal_contact_type=data.get("goal_contact_type", ""),
                goal_days=int(data.get("goal_days", 60)),
                status="active",
            )
            session.add(campaign)
            _sync_steps(session, campaign, data["steps"])
            report.created.append(campaign.name)
        elif campaign.customized:
            report.kept_customized.append(campaign.name)
        else:
            meta_changed = False
            for key in ("name", "description", "goal_contact_type"):
                if getattr(campaign, key) != data.get(key, ""):
                    setattr(campaign, key, data.get(key, ""))
                    meta_changed = True
            steps_changed = _sync_steps(session, campaign, data["steps"])
            (report.updated if meta_changed or steps_changed else report.unchanged).append(
                campaign.name
            )
    session.flush()
    return report
