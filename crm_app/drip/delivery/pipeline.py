"""Deliver messages: re-check, render, claim, send, record, advance. See DELIVERY.md.

Each sending thread works a small chunk at a time (DELIVERY_CLAIM_CHUNK): it loads
the chunk's messages with their contacts, enrolments, campaigns and steps in one
query just before deciding on them, commits the skips, render failures and one
conditional claim UPDATE for the rest BEFORE any send, sends them, then records
every result (sent, retry, failed, activity rows, enrolment advances) in one
commit with set-based statements. A worker killed at any point leaves at most a
chunk per thread `sending`, for the tick to mark `in_doubt` rather than send again.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from markupsafe import escape
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import joinedload

from crm_app.drip.audience.enrollment import (
    advance,
    advance_many,
    mailing_block_reason,
    stop,
    suppression_reasons,
)
from crm_app.drip.audience.unsubscribe import unsubscribe_url
from crm_app.drip.campaigns.rendering import (
    TemplateRenderError,
    build_context,
    contact_context,
    render_email,
    sender_context,
)
from crm_app.drip.common.activity import activity_row, record_activities, record_activity
from crm_app.drip.common.sql import is_postgres, json_rows
from crm_app.drip.delivery.backends import (
    Backend,
    OutgoingEmail,
    PermanentSendError,
    TransientSendError,
)
from crm_app.models import (
    Contact,
    Enrollment,
    Message,
    SystemState,
    utcnow,
)

log = logging.getLogger(__name__)

AUTH_FAILURE_KEY = "backend_auth_failure"
_TABLE = Message.__table__
# Messages a thread loads, claims (one statement, one commit), sends, then records (one
# commit): DELIVERY_CLAIM_CHUNK. Larger saves database work; a kill leaves at most this
# many per thread `sending` (then in doubt).
CLAIM_CHUNK = 10
PHASES = ("load", "render", "claim", "send", "record")


@dataclass(frozen=True)
class DeliverySettings:
    """What delivery needs from the configuration (built once per worker process)."""

    secret_key: str
    public_base_url: str = "http://127.0.0.1:5000"
    unsubscribe_mailto: str = "unsubscribe@example.com"
    from_email: str = "hello@example.com"
    from_name: str = "Drip CRM"
    sender_company: str = "Drip CRM"
    sender_website: str = ""
    max_attempts: int = 5
    retry_base_seconds: float = 30.0
    retry_max_seconds: float = 3600.0

    @classmethod
    def from_config(cls, config: Any) -> DeliverySettings:
        return cls(
            secret_key=config["SECRET_KEY"],
            public_base_url=config.get("PUBLIC_BASE_URL") or "http://127.0.0.1:5000",
            unsubscribe_mailto=config.get("MAIL_UNSUBSCRIBE_MAILTO") or "unsubscribe@example.com",
            from_email=config.get("MAIL_FROM_EMAIL") or "hello@example.com",
            from_name=config.get("MAIL_FROM_NAME") or "",
            sender_company=config.get("SENDER_COMPANY") or "",
            sender_website=config.get("SENDER_WEBSITE") or "",
            max_attempts=int(config.get("DELIVERY_MAX_ATTEMPTS", 5)),
            retry_base_seconds=float(config.get("DELIVERY_RETRY_BASE_SECONDS", 30)),
            retry_max_seconds=float(config.get("DELIVERY_RETRY_MAX_SECONDS", 3600)),
        )


# (message id, when) -> None: puts a retry on Redis once the row is committed.
ScheduleRetry = Callable[[int, datetime], None]


@dataclass
class DeliveryReport:
    sent: list[int] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    retrying: list[int] = field(default_factory=list)
    in_doubt: list[int] = field(default_factory=list)
    not_claimed: list[int] = field(default_factory=list)  # someone else has it, or it is done
    auth_failure: bool = False
    # Where the time went, summed over messages (and threads): load, render, claim, send, record.
    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(PHASES, 0.0))

    def as_dict(self) -> dict[str, Any]:
        return {
            k: (len(v) if isinstance(v, list) else v)
            for k, v in self.__dict__.items()
            if k != "seconds"
        } | {"seconds": {k: round(v, 4) for k, v in self.seconds.items()}}

    def merge(self, other: DeliveryReport) -> None:
        for key, value in other.__dict__.items():
            if isinstance(value, list):
                getattr(self, key).extend(value)
        self.auth_failure = self.auth_failure or other.auth_failure
        for phase, spent in other.seconds.items():
            self.seconds[phase] = self.seconds.get(phase, 0.0) + spent

    def timed(self, phase: str, since: float) -> float:
        """Add the time since `since` to `phase`; returns now, for the next phase."""
        now = time.perf_counter()
        self.seconds[phase] += now - since
        return now


def retry_delay(
    attempt: int, settings: DeliverySettings, retry_after: float | None = None
) -> float:
    """Exponential backoff with jitter; never sooner than the provider's Retry-After."""
    if retry_after is not None:
        return min(settings.retry_max_seconds, retry_after * random.uniform(1.0, 1.2))
    base = settings.retry_base_seconds * (2 ** max(0, attempt - 1))
    return min(settings.retry_max_seconds, base * random.uniform(0.5, 1.5))


class _Run:
    """What the sending threads of one batch share: the stop signal and the health flag."""

    def __init__(self, auth_flag_set: bool):
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.auth_flag_set = auth_flag_set

    def sent(self, session) -> None:
        """A send succeeded: a 401/403 recorded earlier no longer holds (health turns green)."""
        if not self.auth_flag_set:
            return
        with self.lock:
            if not self.auth_flag_set:
                return
            clear_backend_auth_failure(session)
            session.commit()
            self.auth_flag_set = False


def _chunks(ids: list[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(ids), size):
        yield ids[start : start + size]


def _deliver_chunks(
    session,
    chunks: Callable[[], list[int] | None],
    backend: Backend,
    settings: DeliverySettings,
    run: _Run,
    now: Callable[[], datetime],
    schedule_retry: ScheduleRetry | None,
) -> DeliveryReport:
    """One sending thread: take chunks until none is left or the batch stops."""
    report = DeliveryReport()
    while not run.stop.is_set():
        chunk = chunks()
        if not chunk:
            break
        reported: set[int] = set()
        try:
            _deliver_chunk(
                session, chunk, backend, settings, run, now, schedule_retry, report, reported
            )
        except Exception:
            # A bug or a lost database must not take the rest of the batch with it:
            # whatever these rows' states are, the lease and the tick take it from there.
            session.rollback()
            log.exception("delivering messages %s failed", chunk)
            report.in_doubt.extend(i for i in dict.fromkeys(chunk) if i not in reported)
    return report


def deliver_messages(
    session,
    ids: list[int],
    backend: Backend,
    settings: DeliverySettings,
    *,
    now: Callable[[], datetime] = utcnow,
    schedule_retry: ScheduleRetry | None = None,
    claim_chunk: int = CLAIM_CHUNK,
) -> DeliveryReport:
    """Deliver each message in `ids` that is still `queued`, in order, in this session,
    `claim_chunk` at a time (claim committed before the sends, results after them)."""
    run = _Run(session.get(SystemState, AUTH_FAILURE_KEY) is not None)
    pending = _chunks(list(ids), max(1, claim_chunk))
    return _deliver_chunks(
        session, lambda: next(pending, None), backend, settings, run, now, schedule_retry
    )


def deliver_concurrently(
    make_session: Callable[[], Any],
    ids: list[int],
    backend: Backend,
    settings: DeliverySettings,
    *,
    threads: int = 8,
    now: Callable[[], datetime] = utcnow,
    schedule_retry: ScheduleRetry | None = None,
    claim_chunk: int = CLAIM_CHUNK,
) -> DeliveryReport:
    """Deliver `ids` with `threads` sending threads, each with its own session (so its
    own database connection) and its own kept connection to the provider.

    SendGrid answers in 100-300 ms: one thread at a time would idle most of that.
    Each thread claims up to `claim_chunk` messages with one committed conditional
    UPDATE before it sends them, and records their results in one commit after, so
    a kill leaves at most `threads x claim_chunk` messages `sending` (then in doubt),
    never one sent twice. `backend` must be safe to share between threads
    (SendGridBackend and OutboxBackend are)."""
    ids = list(ids)
    claim_chunk = max(1, claim_chunk)
    threads = max(1, min(threads, len(ids)))
    first = make_session()
    try:
        run = _Run(first.get(SystemState, AUTH_FAILURE_KEY) is not None)
        first.rollback()
        if threads == 1:
            pending = _chunks(ids, claim_chunk)
            return _deliver_chunks(
                first, lambda: next(pending, None), backend, settings, run, now, schedule_retry
            )
    finally:
        first.close()

    # Chunks of equal size, at most `claim_chunk`, in whole rounds of `threads` (two at
    # least): the threads then finish together (with SendGrid's latency a thread left
    # with one chunk more than the others would make the job last a round longer).
    rounds = max(2, -(-len(ids) // (threads * claim_chunk)))
    size = max(1, -(-len(ids) // (threads * rounds)))
    pending = _chunks(ids, size)
    take_lock = threading.Lock()

    def take() -> list[int] | None:
        with take_lock:
            return next(pending, None)

    reports: list[DeliveryReport] = []

    def work() -> None:
        report, session = DeliveryReport(), None
        try:
            session = make_session()
            report = _deliver_chunks(session, take, backend, settings, run, now, schedule_retry)
        except Exception:  # _deliver_chunks catches per message; this is a last resort
            # Its claimed rows (if any) stay `sending` and the lease takes them to in doubt.
            log.exception("a sending thread failed")
            run.stop.set()
        finally:
            if session is not None:
                session.close()
            with take_lock:
                reports.append(report)

    workers = [
        threading.Thread(target=work, name=f"drip-send-{n}", daemon=True) for n in range(threads)
    ]
    for worker in workers:
        worker.start()
    try:
        for worker in workers:
            worker.join()
    except BaseException:
        # RQ's job timeout (or a shutdown) interrupts the join: let each thread finish
        # the message it has in flight, and start no other.
        run.stop.set()
        raise
    total = DeliveryReport()
    for report in reports:
        total.merge(report)
    return total


_LOAD_OPTIONS = (
    joinedload(Message.enrollment),
    joinedload(Message.contact).joinedload(Contact.owner),
    joinedload(Message.campaign),
    joinedload(Message.step),
)


def _load_many(session, ids: list[int]) -> dict[int, Message]:
    """A chunk's messages with everything delivery reads, in one query (two with steps)."""
    rows = session.scalars(
        sa.select(Message)
        .where(Message.id.in_(set(ids)))
        .options(*_LOAD_OPTIONS)
        .execution_options(populate_existing=True)
    ).unique()
    return {message.id: message for message in rows}


def _param(name: str, column: str) -> sa.BindParameter:
    return sa.bindparam(name, type_=_TABLE.c[column].type)


# The hot path's two writes, built once (a statement built per message costs more
# Python than the database takes to run it). Same conditions as DELIVERY.md says.
_CLAIM = (
    sa.update(_TABLE)
    .where(
        _TABLE.c.id == sa.bindparam("message_id"),
        _TABLE.c.status == "queued",
        _TABLE.c.attempts == sa.bindparam("seen_attempts"),
    )
    .values(
        status="sending",
        attempts=_TABLE.c.attempts + 1,
        claimed_at=_param("p_claimed_at", "claimed_at"),
        to_email=_param("p_to_email", "to_email"),
        subject=_param("p_subject", "subject"),
        html=_param("p_html", "html"),
        text=_param("p_text", "text"),
        headers=_param("p_headers", "headers"),
        template_version=_param("p_template_version", "template_version"),
    )
)
_RECORD_SENT = (
    sa.update(_TABLE)
    .where(
        _TABLE.c.id == sa.bindparam("message_id"),
        _TABLE.c.status.in_(("sending", "in_doubt")),
        _TABLE.c.attempts == sa.bindparam("attempt"),
    )
    .values(
        status="sent",
        provider_message_id=_param("p_provider_id", "provider_message_id"),
        sent_at=_param("p_sent_at", "sent_at"),
        next_attempt_at=None,
        error="",
    )
)
# The same two on PostgreSQL for a whole chunk: its rows as one jsonb parameter.
_CLAIM_PG = sa.text(
    "UPDATE messages AS m SET status = 'sending', attempts = m.attempts + 1,"
    " claimed_at = r.claimed_at, to_email = r.to_email, subject = r.subject, html = r.html,"
    ' "text" = r."text", headers = r.headers, template_version = r.template_version'
    " FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS r(id integer, seen_attempts integer,"
    ' claimed_at timestamp, to_email text, subject text, html text, "text" text, headers json,'
    " template_version integer)"
    " WHERE m.id = r.id AND m.status = 'queued' AND m.attempts = r.seen_attempts"
    " RETURNING m.id"
)
_RECORD_SENT_PG = sa.text(
    "UPDATE messages AS m SET status = 'sent', provider_message_id = r.provider_id,"
    " sent_at = r.sent_at, next_attempt_at = NULL, error = ''"
    " FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS r(id integer, attempt integer,"
    " provider_id text, sent_at timestamp)"
    " WHERE m.id = r.id AND m.status IN ('sending', 'in_doubt') AND m.attempts = r.attempt"
    " RETURNING m.id"
)


def _skip_reason(
    session, message: Message, suppressions: dict[str, str] | None = None
) -> tuple[str, str] | None:
    """(reason, what to do with the enrolment) when this email must not go out now."""
    enrollment = message.enrollment
    if enrollment.status != "active":
        return f"the enrolment has ended ({enrollment.end_reason or enrollment.status})", "none"
    if enrollment.current_step != message.step_position:
        return "the enrolment moved to another step", "none"
    blocked = mailing_block_reason(session, message.contact, suppressions=suppressions)
    if blocked:
        return blocked, "stop"
    if message.campaign.status != "active":
        return f"the campaign is {message.campaign.status}", "reschedule"
    if message.step is None:
        return "the step was removed from the campaign", "reschedule"
    return None


def compose(message: Message, settings: DeliverySettings) -> OutgoingEmail:
    """Render the step for this contact, add the unsubscribe footer and headers.

    Raises TemplateRenderError (the sandbox refused or the template broke)."""
    contact, step = message.contact, message.step
    sender = sender_context(
        contact.owner,
        fallback_name=settings.from_name,
        fallback_email=settings.from_email,
        company=settings.sender_company,
        website=settings.sender_website,
    )
    context = build_context(contact_context(contact), sender)
    rendered = render_email(step.subject, step.body_html, step.body_text, context)
    link = unsubscribe_url(
        settings.public_base_url, contact.id, contact.email, secret_key=settings.secret_key
    )
    company = settings.sender_company or settings.from_name
    html = (
        f"{rendered.html}\n"
        '<p style="font-size:12px;color:#666;margin-top:24px">'
        f"You receive these emails from {escape(company)}. "
        f'<a href="{escape(link)}">Unsubscribe</a></p>'
    )
    text = f"{rendered.text.rstrip()}\n\n--\nTo stop receiving these emails: {link}\n"
    return OutgoingEmail(
        message_id=message.id,
        to_email=contact.email,
        to_name=contact.full_name if contact.full_name != contact.email else "",
        subject=rendered.subject,
        html=html,
        text=text,
        headers={
            "List-Unsubscribe": (
                f"<mailto:{settings.unsubscribe_mailto}?subject=unsubscribe>, <{link}>"
            ),
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        },
        custom_args={
            "message_id": str(message.id),
            "contact_id": str(contact.id),
            "campaign_id": str(message.campaign_id),
            "step_id": str(message.step_id),
        },
        category=message.campaign.slug,
    )


def _timeline(session, message: Message, kind: str, detail: str, actor: str) -> None:
    record_activity(
        session,
        message.contact,
        kind,
        detail,
        actor=actor,
        campaign=message.campaign,
        enrollment=message.enrollment,
    )


def _update_if(session, message_id: int, condition, **values) -> bool:
    """A conditional UPDATE on one message: True when this caller won the row."""
    statement = sa.update(_TABLE).where(_TABLE.c.id == message_id, condition).values(**values)
    return session.execute(statement).rowcount == 1


@dataclass
class _Claimed:
    """A message this thread claimed: what its result is recorded with."""

    message: Message
    outgoing: OutgoingEmail
    attempt: int  # the attempts value the claim wrote
    label: str
    contact_id: int
    campaign_id: int
    enrollment_id: int
    # Set by the send: "sent", "transient", "permanent", "error"; None: not sent.
    result: str | None = None
    provider_id: str | None = None
    sent_at: datetime | None = None
    error: Exception | None = None

    def activity(self, kind: str, detail: str, created_at: datetime) -> dict:
        return activity_row(
            self.contact_id,
            kind,
            detail,
            actor="system:worker",
            campaign_id=self.campaign_id,
            enrollment_id=self.enrollment_id,
            created_at=created_at,
        )


def _mine(attempt: int) -> sa.ColumnElement:
    """Still ours: this attempt's row, `in_doubt` included (the tick may have given up on
    a slow send that went out); an admin's resend starts another attempt."""
    return sa.and_(_TABLE.c.status.in_(("sending", "in_doubt")), _TABLE.c.attempts == attempt)


def _claim_many(session, claims: list[_Claimed], claimed_at: datetime) -> set[int]:
    """queued -> sending for each message still `queued` at the attempts it was read
    with, its rendered content stored; returns the ids this caller won."""
    rows = [
        {
            "id": c.message.id,
            "seen_attempts": c.attempt - 1,
            "claimed_at": claimed_at,
            "to_email": c.outgoing.to_email,
            "subject": c.outgoing.subject,
            "html": c.outgoing.html,
            "text": c.outgoing.text,
            "headers": c.outgoing.headers,
            "template_version": c.message.step.version,
        }
        for c in claims
    ]
    if not rows:
        return set()
    if is_postgres(session):
        return set(session.execute(_CLAIM_PG, {"rows": json_rows(rows)}).scalars())
    won = set()
    for row in rows:
        params = {"message_id": row["id"], "seen_attempts": row["seen_attempts"]}
        params.update({f"p_{k}": v for k, v in row.items() if k not in ("id", "seen_attempts")})
        if session.execute(_CLAIM, params).rowcount == 1:
            won.add(row["id"])
    return won


def _record_sent_many(session, sent: list[_Claimed]) -> set[int]:
    """sending/in_doubt -> sent for each message still at its attempt; returns those ids."""
    rows = [
        {
            "id": c.message.id,
            "attempt": c.attempt,
            "provider_id": c.provider_id,
            "sent_at": c.sent_at,
        }
        for c in sent
    ]
    if not rows:
        return set()
    if is_postgres(session):
        return set(session.execute(_RECORD_SENT_PG, {"rows": json_rows(rows)}).scalars())
    recorded = set()
    for row in rows:
        params = {
            "message_id": row["id"],
            "attempt": row["attempt"],
            "p_provider_id": row["provider_id"],
            "p_sent_at": row["sent_at"],
        }
        if session.execute(_RECORD_SENT, params).rowcount == 1:
            recorded.add(row["id"])
    return recorded


def _deliver_chunk(
    session,
    chunk: list[int],
    backend: Backend,
    settings: DeliverySettings,
    run: _Run,
    now_fn: Callable[[], datetime],
    schedule_retry: ScheduleRetry | None,
    report: DeliveryReport,
    reported: set[int],
) -> None:
    """Deliver one chunk: load it fresh, decide (skip, render error, or claim) and
    commit the claims, send, then record every result in one commit. Outcomes go to
    `report` once committed; their ids to `reported`."""

    def outcome(kind: str, message_id: int) -> None:
        getattr(report, kind).append(message_id)
        reported.add(message_id)

    mark = time.perf_counter()
    unique = list(dict.fromkeys(chunk))
    repeats = list(chunk)
    for message_id in unique:
        repeats.remove(message_id)
    report.not_claimed.extend(repeats)  # the same id twice in a chunk: one claim at most

    # 1. Decide on rows read just now (one query, and one for the suppression list).
    messages = _load_many(session, unique)
    suppressions = suppression_reasons(
        session, [m.contact.email for m in messages.values() if m.status == "queued"]
    )
    queued = _TABLE.c.status == "queued"
    decided: list[tuple[str, int]] = []
    claims: list[_Claimed] = []
    rendering = 0.0
    for message_id in unique:
        message = messages.get(message_id)
        if message is None or message.status != "queued":
            decided.append(("not_claimed", message_id))
            continue
        label = f"Email {message.step_position} of {message.campaign.name}"
        skip = _skip_reason(session, message, suppressions)
        if skip is not None:
            reason, action = skip
            if not _update_if(session, message.id, queued, status="skipped", error=reason):
                decided.append(("not_claimed", message_id))
                continue
            if action == "stop":
                stop(session, message.enrollment, reason=reason, actor="system:worker")
            elif action == "reschedule":
                # Due again once it can go; the tick then re-queues this same row.
                message.enrollment.next_send_at = now_fn()
            _timeline(
                session, message, "email_skipped", f"{label} skipped: {reason}", "system:worker"
            )
            decided.append(("skipped", message_id))
            continue
        started = time.perf_counter()
        try:
            outgoing = compose(message, settings)
        except TemplateRenderError as error:
            if not _update_if(session, message.id, queued, status="failed", error=str(error)):
                decided.append(("not_claimed", message_id))
                continue
            _timeline(session, message, "email_failed", f"{label} failed: {error}", "system:worker")
            decided.append(("failed", message_id))
            continue
        finally:
            rendering += time.perf_counter() - started
        claims.append(
            _Claimed(
                message,
                outgoing,
                message.attempts + 1,
                label,
                message.contact_id,
                message.campaign_id,
                message.enrollment_id,
            )
        )
    report.seconds["render"] += rendering
    mark = report.timed("load", mark)
    report.seconds["load"] -= rendering
    if run.stop.is_set():
        # A 401/403 elsewhere meanwhile: claim nothing; these stay `queued` (the lease
        # brings them back), as the rest of the batch does.
        claims = []

    # 2. The claims, with the rendered content: committed BEFORE any send, so a kill
    # during the sends leaves `sending` (then in doubt), never `queued` (resent).
    # `attempts` unchanged too: then `attempt` is exactly the number a claim writes.
    won = _claim_many(session, claims, now_fn())
    session.commit()
    for kind, message_id in decided:
        outcome(kind, message_id)
    for claim in claims:
        if claim.message.id not in won:
            outcome("not_claimed", claim.message.id)
    claims = [c for c in claims if c.message.id in won]
    mark = report.timed("claim", mark)

    # 3. The sends. A 401/403 (here or in another thread) sends nothing more.
    for claim in claims:
        if run.stop.is_set():
            break
        try:
            claim.provider_id = backend.send(claim.outgoing)
            claim.result, claim.sent_at = "sent", now_fn()
        except TransientSendError as error:
            claim.result, claim.error = "transient", error
        except PermanentSendError as error:
            claim.result, claim.error = "permanent", error
            if error.is_auth_failure:
                run.stop.set()
        except Exception as error:
            # Unknown outcome: it may have gone out. Not resent by itself.
            log.exception("backend error for message %s", claim.message.id)
            claim.result, claim.error = "error", error
    mark = report.timed("send", mark)

    # 4. Every result in one transaction: conditional on the attempt (an admin may
    # have resent it meanwhile); `in_doubt` included, since a slow send the tick gave
    # up on still went out.
    created = utcnow()
    timeline: list[dict] = []
    advancing: list[tuple[Enrollment, datetime]] = []
    retries: list[tuple[int, datetime]] = []
    results: list[tuple[str, int]] = []
    recorded = _record_sent_many(session, [c for c in claims if c.result == "sent"])
    for claim in claims:
        message_id, error = claim.message.id, claim.error
        if claim.result is None:
            # Claimed but never sent (the batch stopped): it goes back as it was.
            _update_if(
                session,
                message_id,
                sa.and_(_TABLE.c.status == "sending", _TABLE.c.attempts == claim.attempt),
                status="queued",
                attempts=claim.attempt - 1,
            )
        elif claim.result == "sent":
            results.append(("sent", message_id))
            if message_id not in recorded:
                log.warning("message %s was sent, but an admin changed it meanwhile", message_id)
                continue
            detail = f"Sent {claim.label}: {claim.outgoing.subject}"
            timeline.append(claim.activity("email_sent", detail, created))
            enrollment = claim.message.enrollment
            if (
                enrollment.status == "active"
                and enrollment.current_step == claim.message.step_position
            ):
                advancing.append((enrollment, claim.sent_at))
        elif claim.result == "transient" and claim.attempt >= settings.max_attempts:
            detail = f"gave up after {claim.attempt} attempts: {error.detail}"
            if _update_if(session, message_id, _mine(claim.attempt), status="failed", error=detail):
                timeline.append(
                    claim.activity("email_failed", f"{claim.label} failed: {detail}", created)
                )
            results.append(("failed", message_id))
        elif claim.result == "transient":
            delay = retry_delay(claim.attempt, settings, error.retry_after)
            when = now_fn() + timedelta(seconds=delay)
            detail = f"attempt {claim.attempt} of {settings.max_attempts}: {error.detail}"
            # enqueued_at = the retry time: the lease counts from when it is due again.
            if _update_if(
                session,
                message_id,
                _mine(claim.attempt),
                status="queued",
                error=detail,
                next_attempt_at=when,
                enqueued_at=when,
            ):
                text = f"{claim.label} will be retried at {when:%Y-%m-%d %H:%M:%S} UTC ({detail})"
                timeline.append(claim.activity("email_retry", text, created))
            retries.append((message_id, when))
            results.append(("retrying", message_id))
        elif claim.result == "permanent":
            detail = f"SendGrid refused it ({error.status}): {error.detail}"
            if _update_if(session, message_id, _mine(claim.attempt), status="failed", error=detail):
                timeline.append(
                    claim.activity("email_failed", f"{claim.label} failed: {detail}", created)
                )
            if error.is_auth_failure:
                set_backend_auth_failure(session, detail, now_fn())
                results.append(("auth_failed", message_id))
            else:
                results.append(("failed", message_id))
        else:
            _update_if(
                session,
                message_id,
                _mine(claim.attempt),
                status="in_doubt",
                error=f"send error: {error}",
            )
            results.append(("in_doubt", message_id))
    record_activities(session, timeline)
    advance_many(session, advancing)
    session.commit()
    report.timed("record", mark)

    for message_id, when in retries:
        if schedule_retry is not None:
            try:
                schedule_retry(message_id, when)
            except Exception:  # Redis down: the lease brings the row back anyway
                log.exception("could not schedule the retry of message %s", message_id)
    for kind, message_id in results:
        if kind == "auth_failed":
            # A bad API key fails every email: keep the rest of the batch queued
            # (the lease brings them back) instead of failing them all.
            report.auth_failure = True
            run.stop.set()
            kind = "failed"
        outcome(kind, message_id)
    if any(kind == "sent" for kind, _ in results):
        run.sent(session)


# -- the backend's health ------------------------------------------------------------


def set_backend_auth_failure(session, detail: str, now: datetime) -> None:
    state = session.get(SystemState, AUTH_FAILURE_KEY)
    if state is None:
        try:
            # Several threads (or workers) meet the same bad key at once: one inserts the
            # row; the others must not lose their own transaction (the message's `failed`).
            with session.begin_nested():
                session.add(SystemState(key=AUTH_FAILURE_KEY, value=detail, updated_at=now))
            return
        except IntegrityError:
            state = session.get(SystemState, AUTH_FAILURE_KEY, populate_existing=True)
    state.value, state.updated_at = detail, now


def clear_backend_auth_failure(session) -> None:
    session.execute(sa.delete(SystemState).where(SystemState.key == AUTH_FAILURE_KEY))


def backend_auth_failure(session) -> str | None:
    """SendGrid's last 401/403 text while it lasts (health turns red), else None."""
    state = session.get(SystemState, AUTH_FAILURE_KEY)
    return state.value if state is not None else None


# -- admin actions (the pages call these; callers commit) ------------------------------


class DeliveryActionError(Exception):
    """The action does not apply to this message's state; the message is meant for the user."""


def _requeue(session, message: Message, allowed: tuple[str, ...], kind: str, actor: str, now):
    if message.status not in allowed:
        raise DeliveryActionError(
            f"Message #{message.id} is {message.status}, not {' or '.join(allowed)}."
        )
    if not _update_if(
        session,
        message.id,
        _TABLE.c.status == message.status,
        status="queued",
        error="",
        enqueued_at=now,
        next_attempt_at=None,
    ):
        raise DeliveryActionError(f"Message #{message.id} changed meanwhile; reload the page.")
    session.refresh(message)
    _timeline(session, message, kind, f"Email #{message.id} queued again by {actor}", actor)
    return message


def retry_failed(session, message: Message, *, actor: str, now: datetime | None = None) -> Message:
    """failed -> queued. The caller commits, then enqueues the id (crm_app.jobs)."""
    return _requeue(session, message, ("failed",), "email_retried", actor, now or utcnow())


def resend_in_doubt(
    session, message: Message, *, actor: str, now: datetime | None = None
) -> Message:
    """in_doubt -> queued: the admin accepts the risk of a second copy."""
    return _requeue(session, message, ("in_doubt",), "email_resent", actor, now or utcnow())


def mark_sent(
    session, message: Message, *, actor: str, note: str = "", now: datetime | None = None
) -> Message:
    """in_doubt -> sent (an admin knows it went out, or SendGrid reported it): the
    enrolment moves on. `note` says how we know, on the timeline."""
    now = now or utcnow()
    if message.status != "in_doubt":
        raise DeliveryActionError(f"Message #{message.id} is {message.status}, not in doubt.")
    if not _update_if(
        session, message.id, _TABLE.c.status == "in_doubt", status="sent", sent_at=now, error=""
    ):
        raise DeliveryActionError(f"Message #{message.id} changed meanwhile; reload the page.")
    session.refresh(message)
    detail = f"Email #{message.id} marked sent by {actor}" + (f": {note}" if note else "")
    _timeline(session, message, "email_marked_sent", detail, actor)
    enrollment: Enrollment = message.enrollment
    if enrollment.status == "active" and enrollment.current_step == message.step_position:
        advance(session, enrollment, sent_at=now, now=now)
    return message
