"""Deliveries after their first try: the sweep that finds lost ones, an admin's
redelivery, and an endpoint's delivery log."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import sqlalchemy as sa

from crm_app.drip.common.paging import Page, paginate
from crm_app.drip.common.sql import in_values
from crm_app.drip.outbound.events import mark_for_dispatch
from crm_app.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint, utcnow

DELIVERIES = WebhookDelivery.__table__
SWEEP_LIMIT = 5000
LOG_PER_PAGE = 50


class RedeliveryError(Exception):
    """A redelivery the state of the delivery refuses; the message is for the admin."""


def sweep(session, *, lease: timedelta, now: datetime | None = None) -> list[int]:
    """Pending deliveries that are due and whose job or worker was lost (enqueued or
    claimed longer ago than `lease`, or never enqueued), on live endpoints: marks them
    enqueued now and returns their ids. The caller commits, then enqueues them."""
    now = now or utcnow()
    cutoff = now - lease
    live = sa.select(WebhookEndpoint.id).where(
        WebhookEndpoint.enabled.is_(True), WebhookEndpoint.deleted_at.is_(None)
    )
    lost = (
        sa.select(DELIVERIES.c.id)
        .where(
            DELIVERIES.c.status == "pending",
            DELIVERIES.c.next_attempt_at <= now,
            sa.or_(DELIVERIES.c.enqueued_at.is_(None), DELIVERIES.c.enqueued_at < cutoff),
            sa.or_(DELIVERIES.c.claimed_at.is_(None), DELIVERIES.c.claimed_at < cutoff),
            DELIVERIES.c.endpoint_id.in_(live),
        )
        .order_by(DELIVERIES.c.next_attempt_at)
        .limit(SWEEP_LIMIT)
    )
    ids = list(session.scalars(lost))
    if not ids:
        return []
    return list(
        session.scalars(
            sa.update(DELIVERIES)
            .where(in_values(session, DELIVERIES.c.id, ids), DELIVERIES.c.status == "pending")
            .values(enqueued_at=now)
            .returning(DELIVERIES.c.id)
        )
    )


def redeliver(
    session, delivery: WebhookDelivery, *, lease: timedelta, now: datetime | None = None
) -> None:
    """Send this event again now, with the same webhook-id (a delivered or failed one
    starts a new series of attempts). Goes on Redis when the caller commits."""
    now = now or utcnow()
    endpoint = delivery.endpoint
    if endpoint.deleted_at is not None:
        raise RedeliveryError("This endpoint was deleted.")
    if not endpoint.enabled:
        raise RedeliveryError("Enable the endpoint first: a disabled endpoint is sent nothing.")
    claimed = delivery.claimed_at
    # A claim younger than the lease is an attempt in flight; older, its worker is gone.
    if delivery.status == "pending" and claimed is not None and now - claimed < lease:
        raise RedeliveryError("This event is being sent right now.")
    changed = session.execute(
        sa.update(DELIVERIES)
        .where(
            DELIVERIES.c.id == delivery.id,
            DELIVERIES.c.status == delivery.status,
            DELIVERIES.c.attempts == delivery.attempts,
        )
        .values(
            status="pending",
            attempts=0 if delivery.status != "pending" else delivery.attempts,
            next_attempt_at=now,
            enqueued_at=now,
            claimed_at=None,
        )
    ).rowcount
    if changed != 1:
        raise RedeliveryError("This delivery changed meanwhile; reload the page.")
    mark_for_dispatch(session, [delivery.id])


@dataclass
class DeliveryLog(Page[WebhookDelivery]):
    """An endpoint's deliveries, newest first, with each one's attempts."""

    attempts: dict[int, list[WebhookAttempt]] = field(default_factory=dict)


def delivery_log(session, endpoint: WebhookEndpoint, *, page: int = 1) -> DeliveryLog:
    result = paginate(
        session,
        sa.select(WebhookDelivery)
        .where(WebhookDelivery.endpoint_id == endpoint.id)
        .order_by(WebhookDelivery.id.desc()),
        page=page,
        per_page=LOG_PER_PAGE,
    )
    attempts: dict[int, list[WebhookAttempt]] = defaultdict(list)
    if result.items:
        for attempt in session.scalars(
            sa.select(WebhookAttempt)
            .where(in_values(session, WebhookAttempt.delivery_id, [d.id for d in result.items]))
            .order_by(WebhookAttempt.delivery_id, WebhookAttempt.attempt)
        ):
            attempts[attempt.delivery_id].append(attempt)
    return DeliveryLog(result.items, result.total, result.page, result.per_page, dict(attempts))
