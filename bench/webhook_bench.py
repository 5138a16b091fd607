"""Event Webhook ingest (PostgreSQL): events per second through the real endpoint.

Builds a scratch database with N sent messages, then POSTs B signed batches of
E events each (SendGrid's mix: processed, delivered, open, click, a few
bounces, spam reports and unsubscribes): the signature check, JSON parsing,
storage and consequences are all measured. Twice:

- as SendGrid sends them, several requests at once (--senders, 4 by default),
  to gunicorn with 2 workers x 4 threads as `make run` serves it: the figure
  compared with the aim (short of it, the CPU the pass took, by process);
- one at a time through the Flask test client, in-process: the database time
  per kind of statement, when it falls short.

Each pass ends with a replay of every batch, which must change nothing.

    python bench/webhook_bench.py                     # 100 batches x 1,000 events
    python bench/webhook_bench.py --batches 10 --events 500 --senders 2
"""

from __future__ import annotations

import argparse
import http.client
import json
import logging
import os
import queue
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import sqlalchemy as sa  # noqa: E402

from bench.scratch import DEFAULT_URL, migrated_app, scratch_database  # noqa: E402

TARGET_EVENTS_PER_SECOND = 20_000
GUNICORN_WORKERS = 2  # x 4 threads, as `make run` serves it
WARMUP_MESSAGES = 2_000
MIX = [("processed", 20), ("delivered", 30), ("open", 30), ("click", 12), ("deferred", 4),
       ("bounce", 2), ("spamreport", 1), ("unsubscribe", 1)]  # fmt: skip


def seed_messages(session, count: int) -> list[tuple[int, int, int, str]]:
    """`count` sent messages for `count` contacts enrolled in Lead; returns their keys."""
    from crm_app.drip.campaigns.seed import seed_default_campaigns
    from crm_app.models import Campaign, Contact, Enrollment, Message, utcnow

    seed_default_campaigns(session)
    session.commit()
    lead = session.scalar(sa.select(Campaign).where(Campaign.contact_type == "lead"))
    now = utcnow()
    session.execute(
        sa.insert(Contact),
        [{"email": f"reader{i}@example.com", "contact_type": "lead", "first_name": f"R{i}",
          "custom_fields": {}} for i in range(count)],
    )  # fmt: skip
    contact_ids = list(session.scalars(sa.select(Contact.id).order_by(Contact.id)))
    session.execute(
        sa.insert(Enrollment),
        [{"contact_id": c, "campaign_id": lead.id, "status": "active",
          "current_step_id": lead.steps[1].id,
          "enrolled_at": now} for c in contact_ids],
    )  # fmt: skip
    enrollment_ids = list(session.scalars(sa.select(Enrollment.id).order_by(Enrollment.id)))
    step_id = lead.steps[0].id
    session.execute(
        sa.insert(Message),
        [{"enrollment_id": e, "step_id": step_id, "contact_id": c, "campaign_id": lead.id,
          "status": "sent", "to_email": f"reader{i}@example.com",
          "provider_message_id": f"prov{i}", "sent_at": now}
         for i, (e, c) in enumerate(zip(enrollment_ids, contact_ids, strict=True))],
    )  # fmt: skip
    session.commit()
    # Fresh statistics, as autovacuum keeps them in production: without them the planner
    # takes these tables for nearly empty and scans them whole for a handful of rows.
    session.execute(sa.text("ANALYZE"))
    session.commit()
    return [
        (m.id, m.contact_id, m.campaign_id, m.to_email)
        for m in session.execute(sa.select(Message).order_by(Message.id)).scalars()
    ]


def make_batches(
    messages, batches: int, per_batch: int, seed: int, prefix: str = "ev"
) -> list[bytes]:
    rng = random.Random(seed)
    kinds = [k for k, weight in MIX for _ in range(weight)]
    base = int(time.time()) - 3600
    out = []
    for b in range(batches):
        events = []
        for e in range(per_batch):
            message_id, contact_id, campaign_id, email = rng.choice(messages)
            kind = rng.choice(kinds)
            event = {
                "event": kind, "email": email, "timestamp": base + rng.randint(0, 3000),
                "sg_event_id": f"{prefix}-{b}-{e}", "sg_message_id": f"prov{message_id}.filter0001",
                "message_id": str(message_id), "contact_id": str(contact_id),
                "campaign_id": str(campaign_id), "category": ["lead"],
            }  # fmt: skip
            if kind == "click":
                event["url"] = "https://example.com/pricing"
            elif kind == "bounce":
                event.update(type="bounce", reason="550 5.1.1 user unknown")
            elif kind == "deferred":
                event["reason"] = "451 try again later"
            events.append(event)
        out.append(json.dumps(events).encode())
    return out


class StatementTimes:
    """Where the time goes: database time per kind of statement (the first 100 characters)."""

    def __init__(self) -> None:
        self.by_statement: dict[str, list] = {}

    def install(self) -> None:
        from sqlalchemy import event

        @event.listens_for(sa.engine.Engine, "before_cursor_execute")
        def before(conn, cursor, statement, params, context, executemany):
            conn.info["bench_t0"] = time.perf_counter()

        @event.listens_for(sa.engine.Engine, "after_cursor_execute")
        def after(conn, cursor, statement, params, context, executemany):
            key = " ".join(statement.split())[:100]
            entry = self.by_statement.setdefault(key, [0, 0.0])
            entry[0] += 1
            entry[1] += time.perf_counter() - conn.info.pop("bench_t0", time.perf_counter())

    def print(self, elapsed: float, top: int = 12) -> None:
        total = sum(t for _, t in self.by_statement.values())
        print(f"where the time goes: {total:.2f} s of {elapsed:.2f} s waiting for the database "
              f"({len(self.by_statement)} kinds of statement); the rest is Python (parse, "
              f"signature, build rows). Top statements:")  # fmt: skip
        ranked = sorted(self.by_statement.items(), key=lambda kv: -kv[1][1])[:top]
        for statement, (count, spent) in ranked:
            print(f"  {spent * 1000:8.1f} ms {count:5d}x  {statement}")


class ProcessesCPU:
    """The CPU this process and its database backends spend from now until `stop()`:
    CPU time, which the host's other work skews less than the wall clock does."""

    def __init__(self, engine) -> None:
        from bench.delivery_bench import connected_backends

        self.backends = connected_backends(engine)
        self.app_seconds, self.database_ms = time.process_time(), self._database_ms()

    def _database_ms(self) -> float:
        from bench.pages_bench import backend_cpu_ms

        return sum(backend_cpu_ms(pid) for pid in self.backends)

    def stop(self) -> None:
        self.app_seconds = time.process_time() - self.app_seconds
        self.database_ms = self._database_ms() - self.database_ms

    def per_event(self, events: int) -> str:
        app_us = self.app_seconds * 1e6 / events
        database_us = self.database_ms * 1000 / events
        budget = (os.cpu_count() or 1) * 1e6 / TARGET_EVENTS_PER_SECOND
        return (
            f"CPU per event: this process {app_us:.1f} us (signature, parsing, rows, SQLAlchemy),"
            f" PostgreSQL {database_us:.1f} us; {TARGET_EVENTS_PER_SECOND:,} events/s on"
            f" {os.cpu_count()} cores leaves {budget:.0f} us for both"
        )


def post_all(client, signer, bodies) -> tuple[float, list[float], dict]:
    totals = {"received": 0, "applied": 0, "duplicates": 0, "rejected": 0}
    latencies = []
    started = time.perf_counter()
    for body in bodies:
        t0 = time.perf_counter()
        response = client.post("/webhooks/sendgrid", data=body, headers=signer.headers(body))
        latencies.append(time.perf_counter() - t0)
        if response.status_code != 200:
            raise SystemExit(f"webhook answered {response.status_code}: {response.data[:300]}")
        for key, value in response.get_json().items():
            totals[key] += value
    return time.perf_counter() - started, latencies, totals


def post_once(connection: http.client.HTTPConnection, signer, body: bytes):
    """POST one batch; (response, its body). gunicorn closes a connection idle for 2 s
    (its keep-alive), as one opened while the other worker booted can be: then it is
    opened again and the batch sent again, as SendGrid would. A connection closed while
    idle read nothing, so nothing is sent twice."""

    def post():
        connection.request("POST", "/webhooks/sendgrid", body=body, headers=signer.headers(body))
        response = connection.getresponse()
        return response, response.read()

    try:
        return post()
    except (BrokenPipeError, ConnectionResetError, http.client.RemoteDisconnected):
        connection.close()  # the next request opens it again
        return post()


def post_concurrently(port: int, signer, bodies, senders: int) -> tuple[float, list[float], dict]:
    """POST every body through `senders` kept-alive connections at once (SendGrid opens
    several), spread over gunicorn's workers; returns (seconds, latencies, summed answers)."""
    from bench.pages_bench import spread_connections

    connections = spread_connections(port, senders, GUNICORN_WORKERS)
    todo: queue.SimpleQueue[bytes] = queue.SimpleQueue()
    for body in bodies:
        todo.put(body)
    totals = {"received": 0, "applied": 0, "duplicates": 0, "rejected": 0}
    latencies: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()

    def sender(connection: http.client.HTTPConnection) -> None:
        while not failures:
            try:
                body = todo.get_nowait()
            except queue.Empty:
                return
            t0 = time.perf_counter()
            try:
                response, answer = post_once(connection, signer, body)
            except (OSError, http.client.HTTPException) as error:
                with lock:
                    failures.append(f"a batch could not be posted: {error!r}")
                return
            elapsed = time.perf_counter() - t0
            with lock:
                if response.status != 200:
                    failures.append(f"webhook answered {response.status}: {answer[:300]!r}")
                    return
                latencies.append(elapsed)
                for key, value in json.loads(answer).items():
                    totals[key] += value

    threads = [threading.Thread(target=sender, args=(c,)) for c in connections]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise SystemExit(failures[0])
    return time.perf_counter() - started, latencies, totals


def _print_cpu_split(before: dict, after: dict, server_pid: int, elapsed: float) -> None:
    """Where a CPU-bound pass spent the machine's cores: CPU seconds by process between
    two `all_process_cpu()` readings."""

    def spent(process) -> float:
        earlier = before.get(process.pid)
        return process.seconds - (earlier.seconds if earlier is not None else 0.0)

    processes = list(after.values())
    workers = sum(spent(p) for p in processes if server_pid in (p.pid, p.parent))
    database = sum(spent(p) for p in processes if p.name == "postgres")
    client = sum(spent(p) for p in processes if p.pid == os.getpid())
    cores = os.cpu_count() or 1
    idle = cores * elapsed - workers - database - client
    print(f"        CPU during the pass ({cores} cores x {elapsed:.2f} s): gunicorn workers "
          f"{workers:.1f} s, PostgreSQL {database:.1f} s, this client {client:.1f} s, "
          f"left {max(idle, 0.0):.1f} s (waiting on locks, disk, or other processes)")  # fmt: skip


def through_gunicorn(url: str, signer, warmup, bodies, args) -> tuple[float, dict]:
    """The concurrent pass and its replay against gunicorn, after two warm-up batches per
    sender (a worker's first requests build its statements and connections: seen at 1.5
    s a batch against 0.3 s after); (events/s, replay answers)."""
    from bench.pages_bench import all_process_cpu, free_port, start_gunicorn

    os.environ["SENDGRID_WEBHOOK_PUBLIC_KEY"] = signer.public_key_b64
    port = free_port()
    server_args = argparse.Namespace(workers=GUNICORN_WORKERS, threads=4)
    with tempfile.TemporaryDirectory() as tmp:
        log_path = Path(tmp) / "gunicorn.log"
        server = start_gunicorn(url, server_args, port, log_path)
        try:
            post_concurrently(port, signer, warmup, args.senders)
            cpu_before = all_process_cpu()
            elapsed, latencies, totals = post_concurrently(port, signer, bodies, args.senders)
            cpu_after = all_process_cpu()
            _, _, replay = post_concurrently(port, signer, bodies, args.senders)
        except SystemExit:
            print(log_path.read_text()[-3000:])
            raise
        finally:
            server.terminate()
            server.wait(timeout=30)
    events = args.batches * args.events
    rate = events / elapsed
    print(f"ingest, {args.senders} senders at once, gunicorn 2 workers x 4 threads: "
          f"{events:,} events in {elapsed:.2f} s, {rate:,.0f} events/s "
          f"(target >= {TARGET_EVENTS_PER_SECOND:,}); batch median "
          f"{statistics.median(latencies) * 1000:.0f} ms, "
          f"max {max(latencies) * 1000:.0f} ms")  # fmt: skip
    print(f"        {totals}")
    if rate < TARGET_EVENTS_PER_SECOND:
        _print_cpu_split(cpu_before, cpu_after, server.pid, elapsed)
    verdict = "nothing applied twice" if replay["applied"] == 0 else "APPLIED TWICE"
    print(f"replay: {replay} ({verdict})")
    return rate, replay


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL", DEFAULT_URL))
    parser.add_argument("--batches", type=int, default=100)
    parser.add_argument("--events", type=int, default=1000, help="events per batch")
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--senders", type=int, default=4, help="requests at once (gunicorn pass)")
    args = parser.parse_args()
    logging.getLogger("crm_app").setLevel(logging.ERROR)

    from tests.webhook_signing import WebhookSigner

    signer = WebhookSigner()
    with scratch_database(args.database_url) as url:
        app = migrated_app(url, SENDGRID_WEBHOOK_PUBLIC_KEY=signer.public_key_b64)
        app.logger.setLevel(logging.ERROR)
        from crm_app.extensions import db

        t0 = time.perf_counter()
        # Two sets of messages, one per pass: each pass finds its messages never seen.
        # And a few for the warm-up, so that neither pass touches messages it saw.
        messages = seed_messages(db.session, 2 * args.messages + WARMUP_MESSAGES)
        db.session.remove()
        print(f"setup: {len(messages):,} sent messages in {time.perf_counter() - t0:.1f} s")
        bodies = make_batches(messages[: args.messages], args.batches, args.events, args.seed)
        warmup = make_batches(
            messages[2 * args.messages :], 2 * args.senders, args.events, args.seed, "warmup"
        )
        rate, replay = through_gunicorn(url, signer, warmup, bodies, args)

        # The other messages, one request at a time, in-process.
        serial_bodies = make_batches(
            messages[args.messages : 2 * args.messages],
            args.batches,
            args.events,
            args.seed,
            prefix="serial",
        )
        from crm_app.gc_tuning import freeze_startup_objects

        freeze_startup_objects()  # as wsgi.py does
        client = app.test_client()
        total_events = args.batches * args.events
        times = StatementTimes()
        times.install()
        cpu = ProcessesCPU(db.engine)
        elapsed, latencies, totals = post_all(client, signer, serial_bodies)
        cpu.stop()
        print(f"ingest, one request at a time (test client): {total_events:,} events in "
              f"{elapsed:.2f} s, {total_events / elapsed:,.0f} events/s; batch median "
              f"{statistics.median(latencies) * 1000:.0f} ms, "
              f"max {max(latencies) * 1000:.0f} ms")  # fmt: skip
        print(f"        {totals}")
        if rate < TARGET_EVENTS_PER_SECOND:
            print(cpu.per_event(total_events))
            times.print(elapsed)
        db.session.remove()
        db.engine.dispose()
    # Like the other benchmarks, a figure short of its aim is printed, not a failure of
    # `make bench`; an event applied twice is.
    return 0 if replay["applied"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
