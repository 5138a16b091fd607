"""Per-variant results of an A/B test, and an honest verdict.

`variant_counts` is the ONE place that counts a variant's engagement. It counts human
opens and clicks only (tracking/engagement.py): an open by Apple's privacy proxy or a
link scanner's click says nothing about which subject a person preferred.

The verdict is a two-proportion z-test (pooled, two-sided) of the leader against each
other variant, on unique opens (or clicks) per email sent, at 95 % with a Bonferroni
correction for 3 or 4 variants. Below the minimum sample (every variant at least
AB_MIN_SENDS_PER_VARIANT emails, and at least 5 successes and 5 failures on each side of
every comparison, where the normal approximation holds) the verdict is "not enough data
yet", whatever the rates look like.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import sqlalchemy as sa

from crm_app.drip.common.sql import count_where
from crm_app.models import Enrollment, Message, StepVariant

ALPHA = 0.05
METRICS = {"opened": "opens", "clicked": "clicks"}


@dataclass
class VariantCounts:
    sent: int = 0
    delivered: int = 0
    opened: int = 0  # unique: messages opened at least once
    clicked: int = 0
    converted: int = 0  # enrolments that reached an exit goal after this email

    def rate(self, metric: str) -> float | None:
        value = getattr(self, metric)
        return round(100.0 * value / self.sent, 1) if self.sent else None


def variant_counts(session, variant_ids: list[int]) -> dict[int, VariantCounts]:
    """Sent, delivered, unique human opens and clicks, conversions per variant: one query.
    Counted over the emails that went out (sent_at set), opens and clicks once per email;
    a conversion is the email's enrolment ending as converted after the email was sent."""
    if not variant_ids:
        return {}
    converted = sa.and_(
        Enrollment.converted_at.is_not(None), Enrollment.converted_at >= Message.sent_at
    )
    rows = session.execute(
        sa.select(
            Message.variant_id,
            sa.func.count(Message.id),
            count_where(Message.delivered_at.is_not(None)),
            count_where(Message.human_opened_at.is_not(None)),
            count_where(Message.human_clicked_at.is_not(None)),
            count_where(converted),
        )
        .join(Enrollment, Enrollment.id == Message.enrollment_id)
        .where(Message.variant_id.in_(variant_ids), Message.sent_at.is_not(None))
        .group_by(Message.variant_id)
    )
    counts = {variant_id: VariantCounts() for variant_id in variant_ids}
    for variant_id, *values in rows:
        counts[variant_id] = VariantCounts(*(int(v or 0) for v in values))
    return counts


def z_test(successes_a: int, n_a: int, successes_b: int, n_b: int) -> tuple[float, float]:
    """(z, two-sided p) of the pooled two-proportion z-test; (0, 1) when undefined."""
    if not n_a or not n_b:
        return 0.0, 1.0
    pooled = (successes_a + successes_b) / (n_a + n_b)
    spread = math.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))
    if spread == 0:
        return 0.0, 1.0
    z = (successes_a / n_a - successes_b / n_b) / spread
    return z, math.erfc(abs(z) / math.sqrt(2))


def _p(value: float) -> str:
    return "p < 0.001" if value < 0.001 else f"p = {value:.3f}"


@dataclass
class Verdict:
    metric: str
    text: str
    winner_id: int | None = None  # set only when the test is conclusive
    p_values: dict[str, float] = field(default_factory=dict)  # "A vs B" -> p

    @property
    def enough_data(self) -> bool:
        return not self.text.startswith("Not enough data yet")


def verdict(
    variants: list[StepVariant],
    counts: dict[int, VariantCounts],
    *,
    metric: str = "opened",
    min_sends: int = 100,
) -> Verdict:
    """Which variant wins on `metric` ("opened" or "clicked"), if any, at 95 %."""
    label = METRICS[metric]
    if len(variants) < 2:
        return Verdict(metric, "Not enough data yet: a test needs two variants.")
    short = [v.key for v in variants if counts[v.id].sent < min_sends]
    if short:
        return Verdict(
            metric,
            f"Not enough data yet: each variant needs at least {min_sends} emails sent "
            f"({', '.join(short)} not yet).",
        )

    def share(v: StepVariant) -> float:
        return getattr(counts[v.id], metric) / counts[v.id].sent

    ranked = sorted(variants, key=share, reverse=True)
    leader, others = ranked[0], ranked[1:]
    lead = counts[leader.id]
    threshold = ALPHA / len(others)
    result = Verdict(metric, "")
    for other in others:
        theirs = counts[other.id]
        x1, x2 = getattr(lead, metric), getattr(theirs, metric)
        n1, n2 = lead.sent, theirs.sent
        if min(x1 + x2, (n1 - x1) + (n2 - x2)) < 10 or min(x1, n1 - x1, x2, n2 - x2) < 5:
            result.text = (
                f"Not enough data yet: too few {label} (or too few without) to compare "
                f"{leader.key} with {other.key}."
            )
            return result
        result.p_values[f"{leader.key} vs {other.key}"] = z_test(x1, n1, x2, n2)[1]
    worst = max(result.p_values.values())
    if worst < threshold:
        result.winner_id = leader.id
        result.text = (
            f"{leader.key} wins on {label}: {lead.rate(metric)} % "
            f"({_p(worst)}, significant at 95 %)."
        )
    else:
        result.text = (
            f"No clear winner on {label} yet: {leader.key} leads at {lead.rate(metric)} % but "
            f"the difference could be chance ({_p(worst)}; needs p < {threshold:.3g})."
        )
    return result
