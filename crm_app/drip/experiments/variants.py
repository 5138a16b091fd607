"""A/B variants of an email: 2 to 4 variants (subject, body or both) with weights.

Each contact's variant comes from a hash of (step, contact), so the same contact always
lands on the same one; the worker records the variant on the message at its first
claim and every retry renders that same variant (messages.variant_id). A running test
is not edited (its figures would mix two texts): it ends by promoting a winner (the
winner's text becomes the email's new version; every variant keeps its figures) or by
being stopped, and a new test can start after.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from crm_app.drip.campaigns.step_input import SUBJECT_MAX, TEMPLATE_MAX, template_errors
from crm_app.drip.campaigns.versions import record_version
from crm_app.drip.common.errors import FieldErrors
from crm_app.drip.experiments.blocks import unknown_blocks
from crm_app.drip.team.audit import record_audit
from crm_app.models import VARIANT_KEYS, CampaignStep, Message, StepVariant, utcnow

MIN_VARIANTS, MAX_VARIANTS = 2, 4
BUCKETS = 10_000


class VariantError(FieldErrors):
    """A test that cannot start or change; `errors` per field ("variant-B-subject")."""


@dataclass
class VariantInput:
    key: str
    weight: str
    subject: str = ""
    body_html: str = ""
    body_text: str = ""


def running_variants(session, step: CampaignStep) -> list[StepVariant]:
    return list(
        session.scalars(
            sa.select(StepVariant)
            .where(StepVariant.step_id == step.id, StepVariant.retired_at.is_(None))
            .order_by(StepVariant.key)
        )
    )


def running_variants_by_step(session) -> dict[int, list[StepVariant]]:
    """Every running test's variants, by step id (one read for a page that names the
    emails of several campaigns)."""
    running: dict[int, list[StepVariant]] = {}
    for variant in session.scalars(sa.select(StepVariant).where(StepVariant.retired_at.is_(None))):
        running.setdefault(variant.step_id, []).append(variant)
    return running


def bucket(step_id: int, contact_id: int) -> int:
    """0..9999, the same for the same (step, contact) on every machine and run."""
    digest = hashlib.sha256(f"drip-ab:{step_id}:{contact_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


def choose(variants: list[StepVariant], step_id: int, contact_id: int) -> StepVariant | None:
    """The contact's variant among a running test's (weights in percent, adding to 100)."""
    if not variants:
        return None
    point = bucket(step_id, contact_id)
    edge = 0
    for variant in sorted(variants, key=lambda v: v.key):
        edge += variant.weight * BUCKETS // 100
        if point < edge:
            return variant
    return sorted(variants, key=lambda v: v.key)[-1]


def variants_for_messages(session, messages: list[Message]) -> dict[int, StepVariant]:
    """The variant each message renders (by message id), in one query: the one recorded
    on it (a retry), else the contact's among the step's running test."""
    step_ids = {m.step_id for m in messages if m.step_id is not None}
    recorded = {m.variant_id for m in messages if m.variant_id is not None}
    if not step_ids and not recorded:
        return {}
    rows = list(
        session.scalars(
            sa.select(StepVariant).where(
                sa.or_(
                    sa.and_(StepVariant.step_id.in_(step_ids), StepVariant.retired_at.is_(None)),
                    StepVariant.id.in_(recorded or {-1}),
                )
            )
        )
    )
    by_id = {v.id: v for v in rows}
    running: dict[int, list[StepVariant]] = {}
    for variant in rows:
        if variant.retired_at is None:
            running.setdefault(variant.step_id, []).append(variant)
    chosen = {}
    for message in messages:
        if message.variant_id is not None and message.variant_id in by_id:
            chosen[message.id] = by_id[message.variant_id]
        elif message.variant_id is None and message.step_id in running:
            chosen[message.id] = choose(
                running[message.step_id], message.step_id, message.contact_id
            )
    return chosen


def variant_texts(step: CampaignStep, variant: StepVariant | None) -> tuple[str, str, str]:
    """(subject, html, text) an email renders: the variant's, each blank part the step's."""
    if variant is None:
        return step.subject, step.body_html, step.body_text
    return (
        variant.subject or step.subject,
        variant.body_html or step.body_html,
        variant.body_text or step.body_text,
    )


def _weights(inputs: list[VariantInput], errors: dict[str, str]) -> list[int]:
    weights = []
    for item in inputs:
        try:
            weight = int(item.weight.strip())
        except ValueError:
            weight = 0
        if not 1 <= weight <= 99:
            errors[f"variant-{item.key}-weight"] = "A whole percentage from 1 to 99."
        weights.append(weight)
    if not errors and sum(weights) != 100:
        errors["weights"] = f"The weights add up to {sum(weights)}: they must add up to 100."
    return weights


def validate_variants(
    session, step: CampaignStep, inputs: list[VariantInput], sender: dict[str, str]
) -> list[dict]:
    """Cleaned variants, or VariantError with a message next to each bad field."""
    inputs = [
        i
        for i in inputs
        if i.key in VARIANT_KEYS
        and (i.weight.strip() or i.subject.strip() or i.body_html.strip() or i.body_text.strip())
    ]
    errors: dict[str, str] = {}
    if not MIN_VARIANTS <= len(inputs) <= MAX_VARIANTS:
        raise VariantError({"variants": f"A test needs {MIN_VARIANTS} to {MAX_VARIANTS} variants."})
    weights = _weights(inputs, errors)
    cleaned = []
    sends: dict[tuple[str, ...], str] = {}  # the email a variant sends -> its key
    for item, weight in zip(inputs, weights, strict=True):
        # A part left blank is the email's own; a variant left blank is the email as it
        # is: the control the others are measured against.
        texts = {
            name: (getattr(item, name) or "").replace("\r\n", "\n").strip()
            for name in ("subject", "body_html", "body_text")
        }
        full = dict(
            zip(("subject", "body_html", "body_text"), variant_texts(step, None), strict=True)
        )
        full |= {name: value for name, value in texts.items() if value}
        if len(full["subject"]) > SUBJECT_MAX or any(len(v) > TEMPLATE_MAX for v in full.values()):
            errors[f"variant-{item.key}-subject"] = "Too long."
            continue
        problems = template_errors(full, sender) | unknown_blocks(session, texts)
        for name, message in problems.items():
            if texts.get(name):
                errors[f"variant-{item.key}-{name}"] = message
            else:  # the step's own text, when it is the one at fault
                errors.setdefault(f"variant-{item.key}-subject", message)
        cleaned.append(texts | {"key": item.key, "weight": weight})
        # Compared as sent, a blank part filled in: a test of two equal emails says nothing.
        same = sends.setdefault(tuple(full.values()), item.key)
        if same != item.key:
            errors.setdefault(
                "variants",
                f"Variants {same} and {item.key} send the same email: make each one different.",
            )
    if errors:
        raise VariantError(errors)
    return cleaned


def _lock_test(session, step: CampaignStep) -> None:
    """Changes to an email's test run one at a time: a write to the step's row takes its
    lock (PostgreSQL) or the database's (SQLite), then the step is read afresh. Two at
    once (a double click on Start, two admins promoting) both saw the same state: two
    tests ran side by side (one variant never sent), or a winner was saved twice."""
    table = CampaignStep.__table__
    session.execute(sa.update(table).where(table.c.id == step.id).values(version=table.c.version))
    session.refresh(step)


def start_test(
    session,
    step: CampaignStep,
    inputs: list[VariantInput],
    sender: dict[str, str],
    *,
    actor: str,
    now: datetime | None = None,
) -> list[StepVariant]:
    """Start an A/B test on an email; VariantError when refused. Callers commit."""
    _lock_test(session, step)
    if running_variants(session, step):
        raise VariantError({"variants": "A test is running: promote a winner or stop it first."})
    cleaned = validate_variants(session, step, inputs, sender)
    return open_test(session, step, cleaned, actor=actor, now=now)


def open_test(
    session,
    step: CampaignStep,
    cleaned: list[dict],
    *,
    actor: str,
    now: datetime | None = None,
    note: str = "",
) -> list[StepVariant]:
    """Write a test's variants, already validated (validate_variants), and audit it."""
    variants = [StepVariant(step_id=step.id, created_at=now or utcnow(), **c) for c in cleaned]
    session.add_all(variants)
    # An admin's experiment: `flask seed` must not rewrite (or drop) the email under it.
    step.campaign.customized = True
    session.flush()
    summary = f"A/B test started on email {step.position} of {step.campaign.name}: " + ", ".join(
        f"{v.key} {v.weight}%" for v in variants
    )
    record_audit(session, actor, "ab_test.started", "campaign_step", step.id, summary + note)
    return variants


def copy_running_test(
    session, source: CampaignStep, target: CampaignStep, *, actor: str
) -> list[StepVariant]:
    """Start `source`'s running test again on `target` (a copy of it with the same text):
    fresh variants, so no send of the source's counts for them. Not validated again: they
    were when the source's test started, and a clone is not refused for a later change
    (a deleted block) that the source's running test already lives with."""
    cleaned = [
        {
            "key": v.key,
            "weight": v.weight,
            "subject": v.subject,
            "body_html": v.body_html,
            "body_text": v.body_text,
        }
        for v in running_variants(session, source)
    ]
    if not cleaned:
        return []
    note = f" (copied from email {source.position} of {source.campaign.name})"
    return open_test(session, target, cleaned, actor=actor, note=note)


def promote(
    session, variant: StepVariant, *, actor: str, now: datetime | None = None
) -> CampaignStep:
    """The winner's text becomes the email's next version; the test ends (no other
    variant is sent again) and every variant keeps its figures."""
    _lock_test(session, variant.step)
    session.refresh(variant)
    if variant.retired_at is not None:
        raise VariantError({"variants": "This test has already ended."})
    now = now or utcnow()
    step = variant.step
    subject, html, text = variant_texts(step, variant)
    changed = (subject, html, text) != (step.subject, step.body_html, step.body_text)
    if changed:
        step.subject, step.body_html, step.body_text = subject, html, text
        step.version += 1
        record_version(
            session,
            step,
            actor=actor,
            note=f"promoted variant {variant.key} of an A/B test",
            now=now,
        )
        step.campaign.customized = True
    for other in running_variants(session, step):
        other.retired_at = now
        other.outcome = "promoted" if other.id == variant.id else "lost"
    summary = f"Promoted variant {variant.key} of email {step.position} of {step.campaign.name}"
    record_audit(session, actor, "ab_test.promoted", "campaign_step", step.id, summary)
    return step


def stop_test(session, step: CampaignStep, *, actor: str, now: datetime | None = None) -> int:
    """End a test without a winner: the email's own text goes out again."""
    _lock_test(session, step)
    running = running_variants(session, step)
    for variant in running:
        variant.retired_at, variant.outcome = now or utcnow(), "stopped"
    if running:
        summary = f"Stopped the A/B test of email {step.position} of {step.campaign.name}"
        record_audit(session, actor, "ab_test.stopped", "campaign_step", step.id, summary)
    return len(running)


def past_tests(session, step: CampaignStep) -> list[StepVariant]:
    """Variants of tests that ended, newest first."""
    return list(
        session.scalars(
            sa.select(StepVariant)
            .where(StepVariant.step_id == step.id, StepVariant.retired_at.is_not(None))
            .order_by(StepVariant.retired_at.desc(), StepVariant.key)
        )
    )
