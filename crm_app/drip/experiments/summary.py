"""What the campaign page and an email's experiment page show: running tests with
their results and verdicts, conditions, and warnings about rules on vanished fields."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import sqlalchemy as sa

from crm_app.drip.experiments.blocks import all_blocks
from crm_app.drip.experiments.conditions import condition_fields, describe_condition
from crm_app.drip.experiments.rules import missing_custom_fields
from crm_app.drip.experiments.variants import past_tests, running_variants
from crm_app.drip.reporting.variants import (
    METRICS,
    VariantCounts,
    Verdict,
    variant_counts,
    verdict,
)
from crm_app.models import Campaign, CampaignStep, StepVariant


@dataclass
class VariantRow:
    variant: StepVariant
    counts: VariantCounts


@dataclass
class StepExperiment:
    step: CampaignStep
    running: list[VariantRow]
    verdicts: list[Verdict]
    past: list[VariantRow]
    condition: str

    @property
    def winner_id(self) -> int | None:
        return self.verdicts[0].winner_id if self.verdicts else None


def _said_once(verdicts: list[Verdict]) -> list[Verdict]:
    """One verdict when every metric's says the same (too few emails sent is not a
    matter of opens or clicks): the pages would repeat it word for word."""
    if len(verdicts) > 1 and len({v.text for v in verdicts}) == 1:
        return [replace(verdicts[0], metric="all")]
    return verdicts


def step_experiment(session, step: CampaignStep, *, min_sends: int) -> StepExperiment:
    running = running_variants(session, step)
    past = past_tests(session, step)
    counts = variant_counts(session, [v.id for v in running + past])
    verdicts = (
        _said_once([verdict(running, counts, metric=m, min_sends=min_sends) for m in METRICS])
        if running
        else []
    )
    return StepExperiment(
        step,
        [VariantRow(v, counts[v.id]) for v in running],
        verdicts,
        [VariantRow(v, counts[v.id]) for v in past],
        describe_condition(step.condition),
    )


@dataclass
class CampaignExperiments:
    running: dict[int, list[StepVariant]] = field(default_factory=dict)  # by step id
    warnings: list[str] = field(default_factory=list)


def campaign_experiments(session, campaign: Campaign) -> CampaignExperiments:
    """Running tests by step, and a warning per condition or block rule on a custom
    field no contact has any more (such a rule never matches)."""
    result = CampaignExperiments()
    step_ids = [s.id for s in campaign.steps]
    for variant in session.scalars(
        sa.select(StepVariant)
        .where(StepVariant.step_id.in_(step_ids or [-1]), StepVariant.retired_at.is_(None))
        .order_by(StepVariant.key)
    ):
        result.running.setdefault(variant.step_id, []).append(variant)
    by_field: dict[str, list[str]] = {}
    for step in campaign.steps:
        for name in condition_fields([step]):
            by_field.setdefault(name, []).append(f"the condition of email {step.position}")
    for block in all_blocks(session).values():
        for rule in block.rules or []:
            by_field.setdefault(rule["field"], []).append(f'a rule of block "{block.name}"')
    for name in sorted(missing_custom_fields(session, set(by_field))):
        uses = ", ".join(sorted(set(by_field[name])))
        result.warnings.append(f"No contact has the field {name} any more: {uses} can never match.")
    return result


def campaign_tests(session, campaign: Campaign, *, min_sends: int) -> list[StepExperiment]:
    """Every email of the campaign that has run an A/B test, with its variants' results
    (the analytics page): 1 query for the steps, 3 per step shown."""
    tested = set(
        session.scalars(
            sa.select(StepVariant.step_id)
            .join(CampaignStep, CampaignStep.id == StepVariant.step_id)
            .where(CampaignStep.campaign_id == campaign.id)
            .distinct()
        )
    )
    return [
        step_experiment(session, step, min_sends=min_sends)
        for step in sorted(campaign.steps, key=lambda s: s.position)
        if step.id in tested
    ]
