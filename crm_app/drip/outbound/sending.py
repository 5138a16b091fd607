"""One signed attempt of a webhook delivery, and what its answer changes.

At least once: a delivery is claimed (a committed conditional UPDATE) before it is
sent and recorded after, so a second job for it sends nothing while the claim is
fresh; a worker killed mid-send leaves a claim that the sweep, after the lease,
sends again. A receiver may so see an event twice, always with the same webhook-id.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta

import httpx
import sqlalchemy as sa
from standardwebhooks.webhooks import Webhook

from crm_app.drip.outbound.addresses import deadline
from crm_app.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint, utcnow

# After the first attempt fails, the next ones wait this long (Standard Webhooks'
# suggested schedule): about 18 hours in all, then the delivery has failed.
RETRY_DELAYS = tuple(
    timedelta(seconds=s) for s in (5, 5 * 60, 30 * 60, 2 * 3600, 5 * 3600, 10 * 3600)
)
MAX_ATTEMPTS = 1 + len(RETRY_DELAYS)
RESPONSE_SNIPPET = 500  # characters of a failed answer kept in the log
USER_AGENT = "DripCRM-Webhooks/1"
DELIVERIES = WebhookDelivery.__table__
ENDPOINTS = WebhookEndpoint.__table__
# (delivery id, when) -> None: puts the retry on Redis once the row is committed.
ScheduleRetry = Callable[[int, datetime], None]


@dataclass(frozen=True)
class SendOptions:
    timeout: float
    lease: timedelta
    disable_after: timedelta


@dataclass
class Answer:
    status: int | None = None  # None: no HTTP answer (timeout, refused, DNS...)
    duration_ms: int = 0
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def signed_headers(secret: str, event_id: str, body: str, at: datetime) -> dict[str, str]:
    """The Standard Webhooks headers (HMAC-SHA256 over id.timestamp.body)."""
    return {
        "webhook-id": event_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": Webhook(secret).sign(event_id, at, body),
        "content-type": "application/json",
        "user-agent": USER_AGENT,
    }


def post(client: httpx.Client, url: str, headers: dict, body: str, timeout: float) -> Answer:
    """POST, never following a redirect; reads at most a snippet of the answer; takes at
    most `timeout` in all (with the client's CheckedTransport)."""
    started = time.monotonic()
    try:
        with (
            deadline(timeout),
            client.stream(
                "POST", url, content=body.encode(), headers=headers, timeout=timeout
            ) as response,
        ):
            text = ""
            if not 200 <= response.status_code < 300:
                for chunk in response.iter_text():
                    text += chunk
                    if len(text) >= RESPONSE_SNIPPET:
                        break
            elapsed = int((time.monotonic() - started) * 1000)
            return Answer(response.status_code, elapsed, text[:RESPONSE_SNIPPET])
    except httpx.HTTPError as failed:
        elapsed = int((time.monotonic() - started) * 1000)
        return Answer(None, elapsed, f"{type(failed).__name__}: {failed}"[:RESPONSE_SNIPPET])


def _claim(session, delivery: WebhookDelivery, now: datetime, lease: timedelta) -> bool:
    """Take the delivery for one attempt, or learn another worker has it (COMMITS)."""
    claimed = session.execute(
        sa.update(DELIVERIES)
        .where(
            DELIVERIES.c.id == delivery.id,
            DELIVERIES.c.status == "pending",
            DELIVERIES.c.attempts == delivery.attempts,
            DELIVERIES.c.next_attempt_at <= now,
            sa.or_(DELIVERIES.c.claimed_at.is_(None), DELIVERIES.c.claimed_at < now - lease),
        )
        .values(attempts=DELIVERIES.c.attempts + 1, claimed_at=now)
    ).rowcount
    session.commit()
    return claimed == 1


def deliver_one(
    session,
    delivery_id: int,
    *,
    client: httpx.Client,
    options: SendOptions,
    schedule_retry: ScheduleRetry | None = None,
    now: Callable[[], datetime] = utcnow,
) -> str:
    """One attempt: "delivered", "retry", "failed", or "skipped" (not due, not pending,
    taken by another worker, or its endpoint is disabled)."""
    delivery = session.get(WebhookDelivery, delivery_id, populate_existing=True)
    if delivery is None or delivery.status != "pending" or not delivery.endpoint.is_live:
        session.rollback()
        return "skipped"
    started, attempt, endpoint = now(), delivery.attempts + 1, delivery.endpoint
    if not _claim(session, delivery, started, options.lease):
        return "skipped"
    headers = signed_headers(endpoint.secret, delivery.event_id, delivery.body, started)
    answer = post(client, endpoint.url, headers, delivery.body, options.timeout)
    outcome, retry_at = _record(session, delivery, endpoint, attempt, answer, now(), options)
    session.commit()
    if retry_at is not None and schedule_retry is not None:
        schedule_retry(delivery.id, retry_at)
    return outcome


def deliver_many(
    make_session: Callable[[], object],
    ids: Sequence[int],
    *,
    client: httpx.Client,
    options: SendOptions,
    schedule_retry: ScheduleRetry | None = None,
    threads: int = 1,
) -> Counter[str]:
    """`deliver_one` for each id, on `threads` threads with a session each: receivers
    answer in 100-500 ms, one at a time would leave a worker waiting. Order between
    events is not kept (Standard Webhooks promises none: receivers use the timestamp)."""
    outcomes: Counter[str] = Counter()
    lock = threading.Lock()

    def work(share: Sequence[int]) -> None:
        session = make_session()
        try:
            for delivery_id in share:
                outcome = deliver_one(
                    session, delivery_id, client=client, options=options,
                    schedule_retry=schedule_retry,
                )  # fmt: skip
                with lock:
                    outcomes[outcome] += 1
        finally:
            session.close()

    threads = max(1, min(threads, len(ids)))
    with ThreadPoolExecutor(threads, thread_name_prefix="drip-webhook") as pool:
        list(pool.map(work, [ids[n::threads] for n in range(threads)]))
    return outcomes


def _record(
    session,
    delivery: WebhookDelivery,
    endpoint: WebhookEndpoint,
    attempt: int,
    answer: Answer,
    at: datetime,
    options: SendOptions,
) -> tuple[str, datetime | None]:
    """The attempt's row, the delivery's new state and the endpoint's health."""
    session.add(
        WebhookAttempt(
            delivery_id=delivery.id,
            attempt=attempt,
            attempted_at=at,
            response_status=answer.status,
            duration_ms=answer.duration_ms,
            succeeded=answer.ok,
            error=answer.error,
        )
    )
    result = {
        "last_attempt_at": at,
        "response_status": answer.status,
        "duration_ms": answer.duration_ms,
        "error": answer.error,
        "claimed_at": None,
    }
    if answer.ok:
        outcome, retry_at = "delivered", None
        result.update(status="delivered", delivered_at=at, next_attempt_at=None)
    elif attempt < MAX_ATTEMPTS:
        outcome, retry_at = "retry", at + RETRY_DELAYS[attempt - 1]
        # "Enqueued" for when it is due: the lease counts from then.
        result.update(next_attempt_at=retry_at, enqueued_at=retry_at)
    else:
        outcome, retry_at = "failed", None
        result.update(status="failed", next_attempt_at=None)
    # Conditional on this attempt: a redelivery or another worker meanwhile wins.
    session.execute(
        sa.update(DELIVERIES)
        .where(
            DELIVERIES.c.id == delivery.id,
            DELIVERIES.c.status == "pending",
            DELIVERIES.c.attempts == attempt,
        )
        .values(**result)
    )
    _endpoint_health(session, endpoint, answer.ok, outcome == "failed", at, options)
    return outcome, retry_at


def _endpoint_health(
    session, endpoint: WebhookEndpoint, ok: bool, gave_up: bool, at: datetime, options: SendOptions
) -> None:
    """Track since when every attempt failed; disable the endpoint when a delivery
    has used all its attempts and nothing has succeeded for `disable_after`."""
    this = ENDPOINTS.c.id == endpoint.id
    if ok:
        session.execute(
            sa.update(ENDPOINTS).where(this, ENDPOINTS.c.failing_since.is_not(None))
            .values(failing_since=None)
        )  # fmt: skip
        return
    session.execute(
        sa.update(ENDPOINTS).where(this, ENDPOINTS.c.failing_since.is_(None))
        .values(failing_since=at)
    )  # fmt: skip
    if not gave_up:
        return
    since = session.scalar(sa.select(ENDPOINTS.c.failing_since).where(this))
    if since is not None and at - since >= options.disable_after:
        days = options.disable_after.total_seconds() / 86400
        reason = (
            f"Disabled automatically on {at:%d %b %Y %H:%M} UTC: every delivery has failed "
            f"since {since:%d %b %Y %H:%M} UTC (more than {days:g} days). Fix the receiver, "
            "then enable the endpoint again: its pending events will be sent."
        )
        session.execute(
            sa.update(ENDPOINTS).where(this, ENDPOINTS.c.enabled.is_(True))
            .values(enabled=False, disabled_reason=reason)
        )  # fmt: skip
