"""Step 4 of a chunk (chunk.py): record the results that arrived in a time slice, in
one commit, each conditional on its attempt (an admin may have resent it meanwhile);
then the retries onto Redis, then the outcomes the batch reports."""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from crm_app.drip.audience.progress import advance_many
from crm_app.drip.common.activity import record_activities
from crm_app.drip.delivery import transitions
from crm_app.drip.delivery.chunk import ChunkContext, Claim, Outcomes, retry_delay
from crm_app.drip.delivery.compose import email_label
from crm_app.drip.delivery.provider_health import set_backend_auth_failure
from crm_app.models import Enrollment, utcnow

log = logging.getLogger(__name__)


@dataclass
class _Records:
    """What one chunk's results write, gathered before one commit."""

    created_at: datetime
    timeline: list[dict] = field(default_factory=list)
    advancing: list[tuple[Enrollment, datetime]] = field(default_factory=list)
    retries: list[tuple[int, datetime]] = field(default_factory=list)
    results: list[tuple[str, int]] = field(default_factory=list)


def record(ctx: ChunkContext, claims: list[Claim], outcomes: Outcomes) -> None:
    """Every result in one transaction, then the retries onto Redis, then the outcomes."""
    session, records = ctx.session, _Records(created_at=utcnow())
    sent = [c for c in claims if c.result == "sent"]
    recorded = transitions.record_sent(
        session, [(c.message.id, c.attempt, c.provider_id, c.sent_at) for c in sent]
    )
    for claimed in claims:
        if claimed.result is None:
            transitions.release_unsent(session, claimed.message.id, claimed.attempt)
        elif claimed.result == "sent":
            _record_sent(claimed, claimed.message.id in recorded, records)
        elif claimed.result == "transient":
            _record_transient(ctx, claimed, records)
        elif claimed.result == "permanent":
            _record_permanent(ctx, claimed, records)
        else:
            _record_unknown(session, claimed, records)
    record_activities(session, records.timeline)
    advance_many(session, records.advancing)
    session.commit()
    _schedule_retries(ctx, records.retries)
    for kind, message_id in records.results:
        if kind == "auth_failed":
            # A bad API key fails every email: keep the rest of the batch queued
            # (the lease brings them back) instead of failing them all.
            ctx.report.auth_failure = True
            ctx.control.stop.set()
            kind = "failed"
        outcomes.add(kind, message_id)
    if any(kind == "sent" for kind, _ in records.results):
        ctx.control.sent(session)


def _record_sent(claimed: Claim, recorded: bool, records: _Records) -> None:
    message = claimed.message
    records.results.append(("sent", message.id))
    if not recorded:
        log.warning("message %s was sent, but an admin changed it meanwhile", message.id)
        return
    detail = f"Sent {email_label(message, claimed.outgoing.subject)}"
    records.timeline.append(claimed.activity("email_sent", detail, records.created_at))
    enrollment = message.enrollment
    if enrollment.status == "active" and enrollment.current_step == message.step_position:
        records.advancing.append((enrollment, claimed.sent_at))


def _fail(session, claimed: Claim, detail: str, records: _Records) -> None:
    message_id = claimed.message.id
    if transitions.update_if(
        session, message_id, transitions.still_ours(claimed.attempt), status="failed", error=detail
    ):
        text = f"{email_label(claimed.message, claimed.outgoing.subject)} failed: {detail}"
        records.timeline.append(claimed.activity("email_failed", text, records.created_at))


def _record_transient(ctx: ChunkContext, claimed: Claim, records: _Records) -> None:
    error, message_id = claimed.error, claimed.message.id
    max_attempts = ctx.settings.delivery_max_attempts
    if claimed.attempt >= max_attempts:
        detail = f"gave up after {claimed.attempt} attempts: {error.detail}"
        _fail(ctx.session, claimed, detail, records)
        records.results.append(("failed", message_id))
        return
    delay = retry_delay(claimed.attempt, ctx.settings, error.retry_after)
    when = ctx.now() + timedelta(seconds=delay)
    detail = f"attempt {claimed.attempt} of {max_attempts}: {error.detail}"
    # enqueued_at = the retry time: the lease counts from when it is due again.
    if transitions.update_if(
        ctx.session,
        message_id,
        transitions.still_ours(claimed.attempt),
        status="queued",
        error=detail,
        next_attempt_at=when,
        enqueued_at=when,
    ):
        label = email_label(claimed.message, claimed.outgoing.subject)
        text = f"{label} will be retried at {when:%Y-%m-%d %H:%M:%S} UTC ({detail})"
        records.timeline.append(claimed.activity("email_retry", text, records.created_at))
    records.retries.append((message_id, when))
    records.results.append(("retrying", message_id))


def _record_permanent(ctx: ChunkContext, claimed: Claim, records: _Records) -> None:
    error = claimed.error
    detail = f"SendGrid refused it ({error.status}): {error.detail}"
    _fail(ctx.session, claimed, detail, records)
    if error.is_auth_failure:
        set_backend_auth_failure(ctx.session, detail, ctx.now())
        records.results.append(("auth_failed", claimed.message.id))
    else:
        records.results.append(("failed", claimed.message.id))


def _record_unknown(session, claimed: Claim, records: _Records) -> None:
    message_id = claimed.message.id
    if transitions.update_if(
        session,
        message_id,
        transitions.still_ours(claimed.attempt),
        status="in_doubt",
        error=f"send error: {claimed.error}",
    ):
        # On the contact's timeline, as the tick's in doubt (a worker stopped) is: a later
        # "queued again" or "marked sent" then follows something.
        text = (
            f"{email_label(claimed.message, claimed.outgoing.subject)} may or may not have "
            f"been sent (SendGrid's answer never came: {claimed.error})"
        )
        records.timeline.append(claimed.activity("email_in_doubt", text, records.created_at))
    records.results.append(("in_doubt", message_id))


def _schedule_retries(ctx: ChunkContext, retries: list[tuple[int, datetime]]) -> None:
    """One job per second of retry time, not one per message: a burst of 429s on a batch
    of a thousand would put a thousand jobs on the scheduler. Each goes at the end of
    its second, never before a message's own next attempt."""
    if ctx.schedule_retry is None:
        return
    by_second: dict[datetime, list[int]] = defaultdict(list)
    for message_id, when in retries:
        due = when.replace(microsecond=0)
        by_second[due + timedelta(seconds=1) if due < when else due].append(message_id)
    for due, message_ids in sorted(by_second.items()):
        try:
            ctx.schedule_retry(message_ids, due)
        except Exception:  # Redis down: the lease brings the rows back anyway
            log.exception("could not schedule the retry of messages %s", message_ids)
