"""Outbound webhooks (PostgreSQL + Redis): what the events cost the paths that record
timeline rows, and how fast one worker delivers them.

(a) The delivery worker records each chunk's results with one `record_activities`
    call (10 `email_sent` rows) and one commit. Timed per chunk: the bare INSERT it was
    before webhooks, then record_activities with no endpoint, with an endpoint that
    wants other events, and with one that wants email.sent (its deliveries written and
    put on Redis after each commit).
(b) One worker sending N deliveries (signed, kept connections) to a local receiver
    that answers in --latency-ms, with 1 and with 8 threads (WEBHOOK_THREADS).

    python bench/outbound_bench.py                  # 2,000 chunks, 1,000 deliveries
    python bench/outbound_bench.py --chunks 500 --deliveries 200 --latency-ms 0
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import threading
import time
import uuid
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import sqlalchemy as sa  # noqa: E402

from bench.scratch import DEFAULT_URL, migrated_app, scratch_database  # noqa: E402

CHUNK = 10  # DELIVERY_CLAIM_CHUNK's default: rows per record_activities call


def seed(session, contacts: int) -> tuple[list[int], int]:
    from crm_app.drip.campaigns.seed import seed_default_campaigns
    from crm_app.models import Campaign, Contact

    seed_default_campaigns(session)
    session.execute(
        sa.insert(Contact),
        [{"email": f"c{i}@example.com", "contact_type": "lead", "first_name": f"C{i}",
          "custom_fields": {}} for i in range(contacts)],
    )  # fmt: skip
    session.commit()
    lead = session.scalar(sa.select(Campaign.id).where(Campaign.contact_type == "lead"))
    return list(session.scalars(sa.select(Contact.id))), lead


def time_chunks(session, recorders: dict, contact_ids, campaign_id, chunks: int) -> dict:
    """Seconds per chunk for each recorder, `record(session, rows)` then COMMIT as the
    worker does, taking turns chunk by chunk (a busy machine slows all of them alike)."""
    from crm_app.drip.common.activity import activity_row
    from crm_app.models import utcnow

    times: dict[str, list[float]] = {name: [] for name in recorders}
    for n in range(chunks):
        for name, record in recorders.items():
            rows = [
                activity_row(
                    contact_ids[(n * CHUNK + i) % len(contact_ids)], "email_sent",
                    "Email #1 sent", actor="system:worker", campaign_id=campaign_id,
                    enrollment_id=None, created_at=utcnow(),
                )
                for i in range(CHUNK)
            ]  # fmt: skip
            started = time.perf_counter()
            record(session, rows)
            session.commit()
            times[name].append(time.perf_counter() - started)
    return times


def report(label: str, times: list[float], base: float) -> None:
    median = statistics.median(times) * 1e6
    print(f"  {label:<52} median {median:6,.0f} us per chunk of {CHUNK}, "
          f"{median - base:+,.0f} us against the bare INSERT ({base:,.0f} us)")  # fmt: skip


class _Sink(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    latency = 0.0  # seconds before each answer, as a real receiver takes

    def log_message(self, *args) -> None:
        pass

    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        time.sleep(self.latency)
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()


def part_a(db, contact_ids, campaign_id, chunks: int) -> None:
    from crm_app.drip.common.activity import record_activities
    from crm_app.drip.common.sql import insert_rows
    from crm_app.drip.outbound.endpoints import create_endpoint
    from crm_app.models import Activity, WebhookDelivery

    def bare(session, rows):  # record_activities before outbound webhooks
        insert_rows(session, Activity.__table__, rows)

    recorders = {"bare INSERT (before)": bare, "record_activities": record_activities}

    def timed(count: int = chunks) -> dict:
        return time_chunks(db.session, recorders, contact_ids, campaign_id, count)

    def endpoint_wanting(event_type: str) -> None:
        create_endpoint(db.session, f"http://127.0.0.1:9/{event_type}", [event_type],
                        actor="bench", allow_private=True)  # fmt: skip
        db.session.commit()

    print(f"(a) timeline chunks ({chunks:,} x {CHUNK} email_sent rows, one commit each)")
    timed(50)  # warm up: connections, statement caches
    for label, setup in (
        ("no endpoint", None),
        ("an endpoint wanting other events", "contact.created"),
        ("an endpoint wanting email.sent", "email.sent"),
    ):
        if setup:
            endpoint_wanting(setup)
        times = timed()
        base = statistics.median(times["bare INSERT (before)"]) * 1e6
        report(f"{label}: record_activities", times["record_activities"], base)
    written = db.session.scalar(sa.select(sa.func.count(WebhookDelivery.id)))
    print(f"  deliveries written: {written:,} (one per email_sent row)")


def _pending(db, endpoint_id: int, count: int) -> list[int]:
    from crm_app.models import WebhookDelivery

    db.session.execute(sa.delete(WebhookDelivery))
    db.session.execute(
        sa.insert(WebhookDelivery),
        [{"endpoint_id": endpoint_id, "event_id": f"evt_{uuid.uuid4().hex}", "event_type":
          "email.sent", "body": '{"type": "email.sent", "data": {}}', "status": "pending",
          "attempts": 0, "error": ""} for _ in range(count)],
    )  # fmt: skip
    now = sa.func.now()
    db.session.execute(sa.update(WebhookDelivery).values(next_attempt_at=now, created_at=now))
    db.session.commit()
    return list(db.session.scalars(sa.select(WebhookDelivery.id).order_by(WebhookDelivery.id)))


def part_b(db, deliveries: int, latency_ms: float, thread_counts: list[int]) -> None:
    import httpx
    from sqlalchemy.orm import Session

    from crm_app.drip.outbound.addresses import CheckedTransport
    from crm_app.drip.outbound.endpoints import create_endpoint
    from crm_app.drip.outbound.sending import SendOptions, deliver_many
    from crm_app.models import WebhookEndpoint

    _Sink.latency = latency_ms / 1000
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    db.session.execute(sa.update(WebhookEndpoint).values(enabled=False))
    endpoint, _ = create_endpoint(db.session, f"http://127.0.0.1:{server.server_port}/hook",
                                  ["email.sent"], actor="bench", allow_private=True)  # fmt: skip
    db.session.commit()
    client = httpx.Client(transport=CheckedTransport(allow_private=True), trust_env=False)
    options = SendOptions(timeout=5, lease=timedelta(seconds=120), disable_after=timedelta(days=5))
    engine = db.engine  # the threads have no app context
    print(f"(b) one worker, receiver answering in {latency_ms:g} ms")
    for threads in thread_counts:
        ids = _pending(db, endpoint.id, deliveries)
        started = time.perf_counter()
        outcomes = deliver_many(
            lambda: Session(engine), ids, client=client, options=options, threads=threads
        )
        elapsed = time.perf_counter() - started
        print(f"  {threads} thread{'s' if threads > 1 else ''}: {deliveries:,} deliveries in "
              f"{elapsed:.2f} s, {deliveries / elapsed:,.0f}/s ({outcomes['delivered']:,} "
              "delivered)")  # fmt: skip
    server.shutdown()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL", DEFAULT_URL))
    parser.add_argument(
        "--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379")
    )
    parser.add_argument("--chunks", type=int, default=2000)
    parser.add_argument("--deliveries", type=int, default=1000)
    parser.add_argument("--latency-ms", type=float, default=100, help="the receiver's")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 8])
    args = parser.parse_args()
    logging.getLogger("crm_app").setLevel(logging.ERROR)
    queue = f"bench_outbound_{uuid.uuid4().hex[:8]}"
    with scratch_database(args.database_url) as url:
        migrated_app(url, REDIS_URL=args.redis_url, RQ_QUEUE=queue)
        from crm_app.extensions import db
        from crm_app.queue import get_queue

        contact_ids, campaign_id = seed(db.session, 1000)
        try:
            part_a(db, contact_ids, campaign_id, args.chunks)
            part_b(db, args.deliveries, args.latency_ms, args.threads)
        finally:
            get_queue().empty()
            get_queue().delete()
            db.session.remove()
            db.engine.dispose()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
