"""Optional automatic promotion (AB_AUTO_PROMOTE_AFTER, 0 = off): once every variant of
a running test has been sent that many times and the verdict on opens names a winner,
the winner is promoted as an admin would (a new version; every variant keeps its
figures). An inconclusive test keeps running."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from crm_app.drip.experiments.variants import promote
from crm_app.drip.reporting.variants import variant_counts, verdict
from crm_app.models import StepVariant

ACTOR = "system:auto-promotion"


def auto_promote(session, *, after: int, min_sends: int, now: datetime | None = None) -> list[int]:
    """Promote the winners of the tests that are due; returns the promoted variant ids.
    Callers commit."""
    if after <= 0:
        return []
    running: dict[int, list[StepVariant]] = {}
    for variant in session.scalars(
        sa.select(StepVariant).where(StepVariant.retired_at.is_(None)).order_by(StepVariant.key)
    ):
        running.setdefault(variant.step_id, []).append(variant)
    promoted = []
    for variants in running.values():
        counts = variant_counts(session, [v.id for v in variants])
        if any(counts[v.id].sent < after for v in variants):
            continue
        result = verdict(variants, counts, metric="opened", min_sends=max(after, min_sends))
        if result.winner_id is not None:
            winner = next(v for v in variants if v.id == result.winner_id)
            promote(session, winner, actor=ACTOR, now=now)
            promoted.append(winner.id)
    return promoted
