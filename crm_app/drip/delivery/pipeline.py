"""Deliver a batch of messages: many requests in flight, one database connection.

SendGrid answers in 100-300 ms. A batch keeps up to DELIVERY_CONCURRENCY requests in
flight on ONE asyncio event loop (its own thread, aiohttp's connection pool), while
the calling thread does every database write with ONE session:

- claim: as soon as there is room in flight (and tokens in the shared pace), up to
  DELIVERY_CLAIM_CHUNK messages are decided and claimed in one commit, then all of
  them are sent at once. Nothing claimed waits for anything but its answer.
- record: answers are written as they arrive, every DELIVERY_RECORD_MS (or every
  DELIVERY_CLAIM_CHUNK answers), in one commit each. A SIGKILL at any moment leaves
  `sending` (then in doubt) only the requests in flight and the answers of the last
  slice; every 202 recorded before it is `sent`.

The first request of a backend that has not been answered 2xx yet goes alone: a
revoked key then fails one email and the rest stay `queued`, as before. See DELIVERY.md.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from datetime import datetime
from typing import Any, ClassVar

from crm_app.config import Settings
from crm_app.drip.delivery.backends import Backend, TransientSendError
from crm_app.drip.delivery.chunk import (
    ChunkContext,
    Claim,
    Outcomes,
    ScheduleRetry,
    claim,
    decide,
    send_claimed,
    settle,
)
from crm_app.drip.delivery.pacing import Pacer
from crm_app.drip.delivery.provider_health import auth_failure_flag_set
from crm_app.drip.delivery.recording import record
from crm_app.drip.delivery.report import BatchControl, DeliveryReport
from crm_app.models import utcnow

log = logging.getLogger(__name__)


class _EventLoop:
    """The process's asyncio event loop, in a thread of its own, where the requests wait
    for their answers. It outlives each batch, so a backend's kept-alive connections to
    SendGrid serve the next delivery job too: a loop per job opened up to
    DELIVERY_CONCURRENCY new connections (TLS handshakes included) for every 1,000 emails."""

    _shared: ClassVar[_EventLoop | None] = None
    _guard = threading.Lock()

    @classmethod
    def shared(cls) -> _EventLoop:
        """This process's loop, started on first use (again in a forked child)."""
        with cls._guard:
            current = cls._shared
            if current is None or current.pid != os.getpid() or not current.thread.is_alive():
                current = cls._shared = cls()
                atexit.register(current.shutdown)
            return current

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="drip-send", daemon=True)
        self.thread.start()
        self.users: dict[int, int] = {}  # id(backend) -> batches sending with it now
        self.idle: dict[int, Backend] = {}  # backends no batch uses: connections kept

    def submit(self, coroutine) -> Future:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop)

    def acquire(self, backend: Backend) -> None:
        """A batch starts sending with `backend`. An idle backend that is not this one
        (other settings, an earlier test's) has its connections closed."""
        with self._guard:
            stale = [b for b in self.idle.values() if b is not backend]
            self.idle = {key: b for key, b in self.idle.items() if b is backend}
            self.users[id(backend)] = self.users.get(id(backend), 0) + 1
        for old in stale:
            self._close(old)

    def release(self, backend: Backend) -> None:
        """The batch is done: the backend's connections stay open for the next one."""
        with self._guard:
            left = self.users.pop(id(backend)) - 1
            if left:
                self.users[id(backend)] = left
            else:
                self.idle[id(backend)] = backend

    def shutdown(self) -> None:
        """The process exits: close the idle connections and stop the loop."""
        for backend in list(self.idle.values()):
            self._close(backend)
        self.idle.clear()
        if self.thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=10)

    def _close(self, backend: Backend) -> None:
        try:
            self.submit(backend.aclose()).result(timeout=10)
        except Exception:  # closing connections must not hide a batch's outcome
            log.exception("closing the backend's connections failed")


class _Batch:
    """One batch's state, driven by the calling thread (the only one touching the DB)."""

    def __init__(self, ctx: ChunkContext, ids: list[int], pacer: Pacer | None) -> None:
        self.ctx, self.pacer = ctx, pacer
        settings = ctx.settings
        self.concurrency = max(1, settings.delivery_concurrency)
        self.chunk = max(1, settings.delivery_claim_chunk)
        self.slice_seconds = max(0, settings.delivery_record_ms) / 1000
        self.pending: deque[int] = deque(ids)
        self.answers: queue.SimpleQueue[Claim] = queue.SimpleQueue()
        self.in_flight = 0
        self.answered: list[Claim] = []
        self.first_answer_at = 0.0
        self.pace_until = 0.0
        self.outcomes = Outcomes(ctx.report)
        self.events = _EventLoop.shared()
        self.events.acquire(ctx.backend)

    # -- the loop -------------------------------------------------------------------
    def run(self) -> None:
        try:
            while self._more_to_do():
                self._claim_and_send()
                self._wait_for_answers()
                if self._slice_due():
                    self._record()
        except BaseException:
            # RQ's job timeout or a shutdown: keep what was already answered (those
            # 202s are `sent`, not in doubt); what is still in flight stays `sending`.
            self._record_on_the_way_out()
            raise
        finally:
            self.events.release(self.ctx.backend)

    def _record_on_the_way_out(self) -> None:
        try:
            while True:
                self.answered.append(self.answers.get_nowait())
        except queue.Empty:
            pass
        if not self.answered:
            return
        try:
            self.ctx.session.rollback()
            self._record()
        except Exception:
            log.exception("recording the answers of an interrupted batch failed")

    def _more_to_do(self) -> bool:
        stopping = self.ctx.control.stop.is_set()
        return bool((self.pending and not stopping) or self.in_flight or self.answered)

    def _window(self) -> int:
        if not getattr(self.ctx.backend, "answered_ok", True):
            # Never answered 2xx yet: one at a time, until the key is proven to work.
            return 1
        return self.concurrency

    def _claim_and_send(self) -> None:
        ctx = self.ctx
        while self.pending and not ctx.control.stop.is_set():
            window = self._window()
            room = window - self.in_flight
            # Claim in chunks: wait for room for a whole one (or for what is left).
            if room <= 0 or room < min(self.chunk, len(self.pending), window):
                return
            wanted = min(room, self.chunk, len(self.pending))
            if self.pacer is not None:
                if time.monotonic() < self.pace_until:
                    return
                grant = self.pacer.take(wanted)
                if grant.granted == 0:
                    self.pace_until = time.monotonic() + grant.wait_seconds
                    return
                wanted = grant.granted
            ids = [self.pending.popleft() for _ in range(wanted)]
            self._claim_chunk(ids)

    def _claim_chunk(self, ids: list[int]) -> None:
        ctx, report = self.ctx, self.ctx.report
        unique = list(dict.fromkeys(ids))
        repeats = list(ids)
        for message_id in unique:
            repeats.remove(message_id)
        report.not_claimed.extend(repeats)  # the same id twice: one claim at most
        mark = time.perf_counter()
        decision = decide(ctx, unique)
        report.seconds["render"] += decision.render_seconds
        mark = report.timed("load", mark)
        report.seconds["load"] -= decision.render_seconds
        try:
            claims = claim(ctx, decision, self.outcomes)
        except Exception:
            ctx.session.rollback()
            log.exception("claiming messages %s failed", unique)
            report.in_doubt.extend(i for i in unique if i not in self.outcomes.reported)
            return
        report.timed("claim", mark)
        for claimed in claims:
            if ctx.control.stop.is_set():
                # A 401/403 arrived meanwhile: never sent, back to `queued` as it was.
                self.answered.append(claimed)
                continue
            self.in_flight += 1
            future = self.events.submit(send_claimed(ctx, claimed))
            future.add_done_callback(self._answered(claimed))

    def _answered(self, claimed: Claim) -> Callable[[Future], None]:
        def done(future: Future) -> None:
            error = future.exception()
            if error is not None and claimed.result is None:
                settle(self.ctx, claimed, error=error)
            self.answers.put(claimed)

        return done

    def _wait_for_answers(self) -> None:
        """Take the answers that arrived; block until one does (or the slice, or the
        pace, is due) when nothing else can be done now."""
        mark = time.perf_counter()
        timeout = self._wait_timeout()
        try:
            got = self.answers.get(timeout=timeout) if timeout > 0 else self.answers.get_nowait()
        except queue.Empty:
            got = None
        while got is not None:
            self._take_answer(got)
            try:
                got = self.answers.get_nowait()
            except queue.Empty:
                got = None
        self.ctx.report.timed("send", mark)

    def _wait_timeout(self) -> float:
        if not self.in_flight:
            if self.answered:
                return 0.0
            if self.pending and not self.ctx.control.stop.is_set():
                return max(0.0, self.pace_until - time.monotonic())
            return 0.0
        now = time.monotonic()
        waits = [1.0]
        if self.answered:
            waits.append(self.first_answer_at + self.slice_seconds - now)
        if self.pending and self.pace_until > now:
            waits.append(self.pace_until - now)
        return max(0.0, min(waits))

    def _take_answer(self, claimed: Claim) -> None:
        self.in_flight -= 1
        if not self.answered:
            self.first_answer_at = time.monotonic()
        self.answered.append(claimed)
        backend = self.ctx.backend
        if claimed.result == "sent" and hasattr(backend, "answered_ok"):
            backend.answered_ok = True
        elif claimed.result == "permanent" and claimed.error.is_auth_failure:
            if hasattr(backend, "answered_ok"):
                backend.answered_ok = False
        if isinstance(claimed.error, TransientSendError) and claimed.error.is_rate_limit:
            if self.pacer is not None:
                self.pacer.slow_down(claimed.error.retry_after)

    def _slice_due(self) -> bool:
        if not self.answered:
            return False
        if len(self.answered) >= self.chunk or not self.in_flight:
            return True
        return time.monotonic() - self.first_answer_at >= self.slice_seconds

    def _record(self) -> None:
        ctx, answered = self.ctx, self.answered
        self.answered = []
        mark = time.perf_counter()
        try:
            record(ctx, answered, self.outcomes)
        except Exception:
            # A bug or a lost database: these rows stay `sending`; the lease takes them
            # to in doubt (the Event Webhook resolves those that went out).
            ctx.session.rollback()
            log.exception("recording messages %s failed", [c.message.id for c in answered])
            reported = self.outcomes.reported
            ctx.report.in_doubt.extend(
                c.message.id for c in answered if c.message.id not in reported
            )
        ctx.report.timed("record", mark)


def deliver_messages(
    session,
    ids: list[int],
    backend: Backend,
    settings: Settings,
    *,
    now: Callable[[], datetime] = utcnow,
    schedule_retry: ScheduleRetry | None = None,
    claim_chunk: int | None = None,
    concurrency: int | None = None,
    pacer: Pacer | None = None,
) -> DeliveryReport:
    """Deliver each message in `ids` that is still `queued`, in this session: claims
    committed before their sends, results recorded as the answers arrive."""
    if claim_chunk or concurrency:
        settings = settings.replace(
            delivery_claim_chunk=claim_chunk or settings.delivery_claim_chunk,
            delivery_concurrency=concurrency or settings.delivery_concurrency,
        )
    control = BatchControl(auth_failure_flag_set(session))
    session.rollback()
    ctx = ChunkContext(session, backend, settings, control, now, schedule_retry, DeliveryReport())
    if ids:
        _Batch(ctx, list(ids), pacer).run()
    return ctx.report


def deliver_concurrently(
    make_session: Callable[[], Any],
    ids: list[int],
    backend: Backend,
    settings: Settings,
    **options: Any,
) -> DeliveryReport:
    """deliver_messages with a session of its own (a delivery job)."""
    session = make_session()
    try:
        return deliver_messages(session, ids, backend, settings, **options)
    finally:
        session.close()
