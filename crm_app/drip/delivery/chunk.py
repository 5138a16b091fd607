"""One chunk of messages through four named steps: decide, claim, send, record
(pipeline.py drives them: many chunks in flight, answers recorded as they arrive).

1. decide: load the chunk fresh (one query) and decide each message: skip it (with
   the reason), fail it (its template broke), or render it for a claim;
2. claim: one conditional UPDATE for the claims, committed BEFORE any send, so a
   kill during the sends leaves `sending` (then in doubt), never `queued` (resent);
3. send: each claimed email to the backend, all at once on the job's event loop;
   `settle` turns the answer into a result; a 401/403 stops the batch;
4. record (recording.py): the results that arrived in a time slice, in one commit,
   conditional on the attempt (an admin may have resent it meanwhile).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cache

import sqlalchemy as sa
from sqlalchemy.orm import joinedload

from crm_app.config import Settings
from crm_app.drip.audience.address_hash import erasure_key
from crm_app.drip.audience.eligibility import suppression_reasons
from crm_app.drip.audience.ending import stop
from crm_app.drip.audience.progress import skip_step
from crm_app.drip.campaigns.rendering import TemplateRenderError
from crm_app.drip.common.activity import activity_row
from crm_app.drip.common.sql import in_named_values, is_postgres
from crm_app.drip.delivery import transitions
from crm_app.drip.delivery.backends import (
    Backend,
    OutgoingEmail,
    PermanentSendError,
    TransientSendError,
    UnknownOutcomeError,
)
from crm_app.drip.delivery.compose import compose, email_label
from crm_app.drip.delivery.frequency_cap import FrequencyCap, WorkerCap, hold_message
from crm_app.drip.delivery.in_doubt import settle_requeued, traced_requeued
from crm_app.drip.delivery.report import BatchControl, DeliveryReport
from crm_app.drip.delivery.send_window import hold_for_window, window_reopens
from crm_app.drip.delivery.skip_rules import skip_reason
from crm_app.drip.experiments.conditions import previous_sent_many
from crm_app.drip.experiments.variants import variants_for_messages
from crm_app.models import Contact, Message

log = logging.getLogger(__name__)

WORKER = "system:worker"
# (message ids, when) -> None: puts their retry on Redis once the rows are committed.
ScheduleRetry = Callable[[list[int], datetime], None]


def retry_delay(attempt: int, settings: Settings, retry_after: float | None = None) -> float:
    """Exponential backoff with jitter; never sooner than the provider's Retry-After."""
    ceiling = settings.delivery_retry_max_seconds
    if retry_after is not None:
        return min(ceiling, retry_after * random.uniform(1.0, 1.2))
    base = settings.delivery_retry_base_seconds * (2 ** max(0, attempt - 1))
    return min(ceiling, base * random.uniform(0.5, 1.5))


@dataclass
class Claim:
    """A message this thread decided to send: what its claim and result are written with."""

    message: Message
    outgoing: OutgoingEmail
    attempt: int  # the attempts value the claim writes
    variant_id: int | None = None  # the A/B variant rendered (kept on the row from then on)
    # Set by the send: "sent", "transient", "permanent", "error"; None: not sent.
    result: str | None = None
    provider_id: str | None = None
    sent_at: datetime | None = None
    error: Exception | None = None

    def activity(self, kind: str, detail: str, created_at: datetime) -> dict:
        return activity_row(
            self.message.contact_id,
            kind,
            detail,
            actor=WORKER,
            campaign_id=self.message.campaign_id,
            enrollment_id=self.message.enrollment_id,
            created_at=created_at,
        )


@dataclass
class ChunkContext:
    """What every chunk of one thread shares."""

    session: object
    backend: Backend
    settings: Settings
    control: BatchControl
    now: Callable[[], datetime]
    schedule_retry: ScheduleRetry | None
    report: DeliveryReport


@dataclass
class Outcomes:
    """Outcomes of one chunk: reported only once committed (`reported` then lists them)."""

    report: DeliveryReport
    reported: set[int] = field(default_factory=set)

    def add(self, kind: str, message_id: int) -> None:
        getattr(self.report, kind).append(message_id)
        self.reported.add(message_id)


# -- 1. decide ------------------------------------------------------------------------

_LOAD_OPTIONS = (
    joinedload(Message.enrollment),
    joinedload(Message.contact).joinedload(Contact.owner),
    joinedload(Message.campaign),
    joinedload(Message.step),
)


@cache
def _load_statement(postgres: bool) -> sa.Select:
    """Built once, the chunk's ids bound by name (building it cost more CPU than reading)."""
    return (
        sa.select(Message)
        .where(in_named_values(postgres, Message.id, "ids"))
        .options(*_LOAD_OPTIONS)
        .execution_options(populate_existing=True)
    )


def _load(session, ids: list[int]) -> dict[int, Message]:
    """A chunk's messages with everything delivery reads, in one query."""
    statement = _load_statement(is_postgres(session))
    rows = session.scalars(statement, {"ids": list(set(ids))}).unique()
    return {message.id: message for message in rows}


@dataclass
class Decision:
    """A chunk decided: outcomes written but not committed, and the claims to make."""

    decided: list[tuple[str, int]] = field(default_factory=list)  # (outcome, message id)
    claims: list[Claim] = field(default_factory=list)
    render_seconds: float = 0.0


def decide(ctx: ChunkContext, ids: list[int]) -> Decision:
    """Skip, fail (broken template) or render each message read just now."""
    session, decision = ctx.session, Decision()
    messages = _load(session, ids)
    suppressions = suppression_reasons(
        session,
        [m.contact.email for m in messages.values() if m.status == "queued"],
        hash_key=erasure_key(ctx.settings),  # a delivery job's session has no app context
    )
    queued = [m for m in messages.values() if m.status == "queued"]
    variants = variants_for_messages(session, queued)
    # An in-doubt email queued again for lack of a trace, that SendGrid reported after
    # all: sent, never claimed again (one query, only when the chunk has any).
    traced = traced_requeued(session, queued)
    # The frequency cap, on what was sent meanwhile (retries, resends; one query).
    cap = WorkerCap(session, FrequencyCap.from_settings(ctx.settings), queued, ctx.now())
    # The previous emails that "send only if" conditions read (one query, not one each).
    previous = previous_sent_many(session, queued)
    for message_id in ids:
        message = messages.get(message_id)
        if message is None or message.status != "queued":
            decision.decided.append(("not_claimed", message_id))
            continue
        if message_id in traced:
            settle_requeued(session, message, at=traced[message_id], actor=WORKER)
            decision.decided.append(("not_claimed", message_id))
            continue
        skip = skip_reason(session, message, suppressions, previous)
        if skip is not None:
            decision.decided.append((_skip(ctx, message, *skip), message_id))
            continue
        held = _held_back(ctx, cap, message)
        if held is not None:
            decision.decided.append((held, message_id))
            continue
        started = time.perf_counter()
        try:
            variant = variants.get(message.id)
            outgoing = compose(message, ctx.settings, variant=variant)
        except TemplateRenderError as error:
            decision.decided.append((_fail_render(session, message, error), message_id))
            continue
        finally:
            decision.render_seconds += time.perf_counter() - started
        variant_id = variant.id if variant is not None else None
        decision.claims.append(Claim(message, outgoing, message.attempts + 1, variant_id))
    if ctx.control.stop.is_set():
        # A 401/403 elsewhere meanwhile: claim nothing; these stay `queued` (the lease
        # brings them back), as the rest of the batch does.
        decision.claims = []
    return decision


def _held_back(ctx: ChunkContext, cap: WorkerCap, message: Message) -> str | None:
    """The outcome ("skipped", or "not_claimed" if the row changed meanwhile) when the
    frequency cap or the closed send window holds this email back; None if it may go."""
    until = cap.held_until(message)
    if until is not None:
        held = hold_message(ctx.session, message, until, WORKER)
        return "skipped" if held else "not_claimed"
    grace = timedelta(minutes=ctx.settings.send_window_grace_minutes)
    until = window_reopens(message, ctx.now(), grace)
    if until is not None:
        held = hold_for_window(ctx.session, message, until, WORKER)
        return "skipped" if held else "not_claimed"
    return None


def _skip(ctx: ChunkContext, message: Message, reason: str, action: str) -> str:
    session = ctx.session
    queued = transitions.MESSAGES.c.status == "queued"
    if not transitions.update_if(session, message.id, queued, status="skipped", error=reason):
        return "not_claimed"
    if action == "stop":
        stop(session, message.enrollment, reason=reason, actor=WORKER)
    elif action == "reschedule":
        # Due again once it can go; the tick then re-queues this same row.
        message.enrollment.next_send_at = ctx.now()
    elif action == "advance":  # "send only if" did not hold: on to the next email
        skip_step(session, message.enrollment, now=ctx.now())
    detail = f"{email_label(message)} skipped: {reason}"
    transitions.record_message_activity(session, message, "email_skipped", detail, WORKER)
    return "skipped"


def _fail_render(session, message: Message, error: TemplateRenderError) -> str:
    queued = transitions.MESSAGES.c.status == "queued"
    if not transitions.update_if(session, message.id, queued, status="failed", error=str(error)):
        return "not_claimed"
    detail = f"{email_label(message)} failed: {error}"
    transitions.record_message_activity(session, message, "email_failed", detail, WORKER)
    return "failed"


# -- 2. claim -------------------------------------------------------------------------


def claim(ctx: ChunkContext, decision: Decision, outcomes: Outcomes) -> list[Claim]:
    """Commit the decisions and the claims; returns the claims this thread won."""
    claims = decision.claims
    rows = [
        transitions.ClaimRow(
            message_id=c.message.id,
            seen_attempts=c.attempt - 1,
            to_email=c.outgoing.to_email,
            subject=c.outgoing.subject,
            html=c.outgoing.html,
            text=c.outgoing.text,
            headers=c.outgoing.headers,
            template_version=c.message.step.version,
            variant_id=c.variant_id,
        )
        for c in claims
    ]
    won = transitions.claim(ctx.session, rows, ctx.now()) if rows else set()
    ctx.session.commit()
    for kind, message_id in decision.decided:
        outcomes.add(kind, message_id)
    for lost in (c for c in claims if c.message.id not in won):
        outcomes.add("not_claimed", lost.message.id)
    return [c for c in claims if c.message.id in won]


# -- 3. send --------------------------------------------------------------------------


async def send_claimed(ctx: ChunkContext, claimed: Claim) -> Claim:
    """One claimed email to the backend (many run at once on the job's event loop);
    its answer is settled on the claim, for `record`."""
    try:
        provider_id = await ctx.backend.asend(claimed.outgoing)
    except Exception as error:
        settle(ctx, claimed, error=error)
    else:
        settle(ctx, claimed, provider_id=provider_id)
    return claimed


def settle(
    ctx: ChunkContext,
    claimed: Claim,
    *,
    provider_id: str | None = None,
    error: Exception | None = None,
) -> None:
    """What the backend answered, as the result `record` writes. A 401/403 stops the batch."""
    if error is None:
        claimed.provider_id = provider_id
        claimed.result, claimed.sent_at = "sent", ctx.now()
    elif isinstance(error, TransientSendError):
        claimed.result, claimed.error = "transient", error
    elif isinstance(error, PermanentSendError):
        claimed.result, claimed.error = "permanent", error
        if error.is_auth_failure:
            ctx.control.stop.set()
    else:
        # Unknown outcome (no answer after the request left, or a bug): it may have
        # gone out. In doubt, never resent by itself.
        if not isinstance(error, UnknownOutcomeError):
            log.error("backend error for message %s: %r", claimed.message.id, error)
        claimed.result, claimed.error = "error", error
