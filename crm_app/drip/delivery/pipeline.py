"""Deliver a batch of messages: sending threads that take chunks until none is left.

SendGrid answers in 100-300 ms: one thread at a time would idle most of that, so a
batch runs `threads` sending threads, each with its own session (so its own
database connection) and its own kept connection to the provider. Each thread
takes a chunk at a time through chunk.deliver_chunk (decide, claim, send, record):
a kill leaves at most a chunk per thread `sending`, for the tick to mark in doubt
rather than send again. See DELIVERY.md.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

from crm_app.config import Settings
from crm_app.drip.delivery.backends import Backend
from crm_app.drip.delivery.chunk import ChunkContext, ScheduleRetry, deliver_chunk
from crm_app.drip.delivery.provider_health import auth_failure_flag_set
from crm_app.drip.delivery.report import BatchControl, DeliveryReport
from crm_app.models import utcnow

log = logging.getLogger(__name__)

TakeChunk = Callable[[], list[int] | None]


def _chunks(ids: list[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(ids), size):
        yield ids[start : start + size]


def _work_chunks(ctx: ChunkContext, take: TakeChunk) -> DeliveryReport:
    """One sending thread: take chunks until none is left or the batch stops."""
    while not ctx.control.stop.is_set():
        chunk = take()
        if not chunk:
            break
        reported: set[int] = set()
        try:
            deliver_chunk(ctx, chunk, reported)
        except Exception:
            # A bug or a lost database must not take the rest of the batch with it:
            # whatever these rows' states are, the lease and the tick take it from there.
            ctx.session.rollback()
            log.exception("delivering messages %s failed", chunk)
            ctx.report.in_doubt.extend(i for i in dict.fromkeys(chunk) if i not in reported)
    return ctx.report


def deliver_messages(
    session,
    ids: list[int],
    backend: Backend,
    settings: Settings,
    *,
    now: Callable[[], datetime] = utcnow,
    schedule_retry: ScheduleRetry | None = None,
    claim_chunk: int | None = None,
) -> DeliveryReport:
    """Deliver each message in `ids` that is still `queued`, in order, in this session,
    `claim_chunk` at a time (claim committed before the sends, results after them)."""
    control = BatchControl(auth_failure_flag_set(session))
    pending = _chunks(list(ids), max(1, claim_chunk or settings.delivery_claim_chunk))
    ctx = ChunkContext(session, backend, settings, control, now, schedule_retry, DeliveryReport())
    return _work_chunks(ctx, lambda: next(pending, None))


def _even_chunks(ids: list[int], threads: int, claim_chunk: int) -> Iterator[list[int]]:
    """Chunks of equal size, at most `claim_chunk`, in whole rounds of `threads` (two at
    least): the threads then finish together (with SendGrid's latency a thread left with
    one chunk more than the others would make the job last a round longer)."""
    rounds = max(2, -(-len(ids) // (threads * claim_chunk)))
    size = max(1, -(-len(ids) // (threads * rounds)))
    return _chunks(ids, size)


def deliver_concurrently(
    make_session: Callable[[], Any],
    ids: list[int],
    backend: Backend,
    settings: Settings,
    *,
    threads: int | None = None,
    now: Callable[[], datetime] = utcnow,
    schedule_retry: ScheduleRetry | None = None,
    claim_chunk: int | None = None,
) -> DeliveryReport:
    """Deliver `ids` with `threads` sending threads (DELIVERY_THREADS), each claiming
    `claim_chunk` messages at a time (DELIVERY_CLAIM_CHUNK): a kill leaves at most
    `threads x claim_chunk` messages `sending` (then in doubt), never one sent twice.
    `backend` must be safe to share between threads (SendGridBackend and OutboxBackend are)."""
    ids = list(ids)
    claim_chunk = max(1, claim_chunk or settings.delivery_claim_chunk)
    threads = max(1, min(threads or settings.delivery_threads, len(ids)))
    first = make_session()
    try:
        control = BatchControl(auth_failure_flag_set(first))
        first.rollback()
        if threads == 1:
            pending = _chunks(ids, claim_chunk)
            ctx = ChunkContext(
                first, backend, settings, control, now, schedule_retry, DeliveryReport()
            )
            return _work_chunks(ctx, lambda: next(pending, None))
    finally:
        first.close()

    pending = _even_chunks(ids, threads, claim_chunk)
    take_lock = threading.Lock()
    reports: list[DeliveryReport] = []

    def take() -> list[int] | None:
        with take_lock:
            return next(pending, None)

    def work() -> None:
        report, session = DeliveryReport(), None
        try:
            session = make_session()
            ctx = ChunkContext(session, backend, settings, control, now, schedule_retry, report)
            _work_chunks(ctx, take)
        except Exception:  # _work_chunks catches per chunk; this is a last resort
            # Its claimed rows (if any) stay `sending` and the lease takes them to in doubt.
            log.exception("a sending thread failed")
            control.stop.set()
        finally:
            if session is not None:
                session.close()
            with take_lock:
                reports.append(report)

    _run_threads(work, threads, control)
    total = DeliveryReport()
    for report in reports:
        total.merge(report)
    return total


def _run_threads(work: Callable[[], None], count: int, control: BatchControl) -> None:
    workers = [
        threading.Thread(target=work, name=f"drip-send-{n}", daemon=True) for n in range(count)
    ]
    for worker in workers:
        worker.start()
    try:
        for worker in workers:
            worker.join()
    except BaseException:
        # RQ's job timeout (or a shutdown) interrupts the join: let each thread finish
        # the message it has in flight, and start no other.
        control.stop.set()
        raise
