"""Delivery benchmark (PostgreSQL + Redis): the tick at scale, and end-to-end sending.

(a) One tick over N enrolments with M due: seconds to create and enqueue every
    message; then a tick with nothing due, in ms (median).
(b) Two `worker.py` processes deliver K messages to the local fake SendGrid
    (bench/fake_sendgrid.py, the real sendgrid client talking to it), answering at
    once: messages/s, beside RQ's own floor (no-op jobs through the same worker class)
    as a ratio, then where the time went: per phase (the job's database thread: load,
    render, claim, waiting for answers, record), the CPU each process spent per
    message, and the workers' peak memory (RSS). `--concurrency` and `--claim-chunk`
    set DELIVERY_CONCURRENCY and DELIVERY_CLAIM_CHUNK for the workers.
(c) The same for the next K queued messages with the fake answering in 150 ms, as the
    real SendGrid does (100-300 ms), where the requests in flight matter most.
    `--latency-ms` gives the answer times, one part each (default: 0 150).

A scratch database is created and dropped; Redis gets a queue of its own.

    /work/venv/bin/python bench/delivery_bench.py                       # 1M / 100k / 20k
    /work/venv/bin/python bench/delivery_bench.py --enrollments 100000 --due 10000 \\
        --messages 5000                                                 # a quick run
    /work/venv/bin/python bench/delivery_bench.py --enrollments 100000 --due 40000 \\
        --messages 20000                          # parts (b) and (c) at 20k, part (a) small
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta
from datetime import time as dtime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import sqlalchemy as sa  # noqa: E402

from tests.scratch_db import scratch_database  # noqa: E402

DEFAULT_DB = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
DEFAULT_REDIS = "redis://127.0.0.1:6379/13"
TIMEZONES = ["UTC", "Europe/Paris", "America/New_York", "Asia/Tokyo", "Australia/Sydney"]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL", DEFAULT_DB))
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL", DEFAULT_REDIS))
    parser.add_argument("--enrollments", type=int, default=1_000_000)
    parser.add_argument("--due", type=int, default=100_000)
    parser.add_argument("--messages", type=int, default=20_000, help="delivered in part (b)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--batch", type=int, default=None, help="messages per delivery job (default: app's)"
    )
    parser.add_argument("--noop-jobs", type=int, default=4000)
    parser.add_argument(
        "--concurrency",
        type=int,
        default=None,
        help="DELIVERY_CONCURRENCY: requests in flight per worker (default: app's)",
    )
    parser.add_argument(
        "--claim-chunk",
        type=int,
        default=None,
        help="DELIVERY_CLAIM_CHUNK: messages claimed at once (default: app's)",
    )
    parser.add_argument(
        "--latency-ms",
        type=float,
        nargs="+",
        default=[0.0, 150.0],
        help="the fake SendGrid's answer time: part (b) runs once for each, on the next"
        " queued messages (default: none, then 150 ms as the real SendGrid answers)",
    )
    parser.add_argument("--skip-delivery", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    return parser.parse_args()


def naive(moment: datetime) -> str:
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ")


def load(app, args, now: datetime) -> None:
    """COPY N contacts and N active enrolments in; M are due, the rest later."""
    from crm_app.extensions import db
    from crm_app.models import Campaign

    campaigns = list(db.session.scalars(sa.select(Campaign).order_by(Campaign.id)))
    first_step = {c.id: c.steps[0].id for c in campaigns}  # every enrolment starts at email 1
    rng = random.Random(7)
    raw = db.engine.raw_connection()
    try:
        cur = raw.cursor()
        t0 = time.perf_counter()
        with cur.copy(
            "COPY contacts (first_name, last_name, email, phone, company, title, industry,"
            " contact_type, timezone, notes, custom_fields, email_status, created_at,"
            " updated_at) FROM STDIN"
        ) as copy:
            stamp = naive(now)
            for n in range(1, args.enrollments + 1):
                campaign = campaigns[n % len(campaigns)]
                copy.write_row(
                    (
                        f"First{n}",
                        f"Last{n}",
                        f"bench{n}@example.com",
                        "",
                        "Bench Co",
                        "",
                        "Software",
                        campaign.contact_type,
                        TIMEZONES[n % len(TIMEZONES)],
                        "",
                        "{}",
                        "ok",
                        stamp,
                        stamp,
                    )
                )
        due_ids = set(rng.sample(range(1, args.enrollments + 1), args.due))
        with cur.copy(
            "COPY enrollments (contact_id, campaign_id, status, current_step_id, next_send_at,"
            " source, enrolled_by, enrolled_at, end_reason) FROM STDIN"
        ) as copy:
            for n in range(1, args.enrollments + 1):
                campaign = campaigns[n % len(campaigns)]
                if n in due_ids:
                    when = now - timedelta(minutes=rng.randint(1, 600))
                else:
                    when = now + timedelta(minutes=rng.randint(10, 60 * 24 * 30))
                step = first_step[campaign.id]
                copy.write_row(
                    (n, campaign.id, "active", step, naive(when), "bench", "bench", naive(now), "")
                )
        raw.commit()
        cur.execute("ANALYZE")
        raw.commit()
        seconds = time.perf_counter() - t0
        print(f"  loaded {args.enrollments:,} contacts + enrolments in {seconds:.1f} s")
    finally:
        raw.close()


class TickAccount:
    """Where one tick's time went: the wall time of each kind of statement (its verb and
    table), this process's CPU, its database backend's CPU, and the blocks PostgreSQL
    read from outside its buffers, found in them, and the WAL it wrote meanwhile."""

    # The first of these names the statement's kind: "FROM x" is a SELECT's.
    VERB_AND_TABLE = re.compile(r"\b(INSERT INTO|UPDATE|DELETE FROM|FROM)\s+(\w+)")
    DATABASE = sa.text(
        "SELECT pg_current_wal_lsn() - '0/0'::pg_lsn, blks_read, blks_hit"
        " FROM pg_stat_database WHERE datname = current_database()"
    )

    def __init__(self, engine) -> None:
        self.engine = engine
        self.statements: dict[str, float] = {}
        self.backends: set[int] = set()  # the backends the tick's statements ran on
        self.seconds = 0.0

    def _kind(self, statement: str) -> str:
        found = self.VERB_AND_TABLE.search(statement)
        if found is None:
            return statement.split(None, 1)[0].upper()
        verb, table = found.groups()
        return f"{'SELECT' if verb == 'FROM' else verb.split()[0]} {table}"

    def _before(self, conn, cursor, statement, parameters, context, many) -> None:
        conn.info["tick_account_started"] = time.perf_counter()
        self.backends.add(conn.connection.dbapi_connection.info.backend_pid)

    def _after(self, conn, cursor, statement, parameters, context, many) -> None:
        kind = self._kind(statement)
        spent = time.perf_counter() - conn.info.pop("tick_account_started")
        self.statements[kind] = self.statements.get(kind, 0.0) + spent

    def _database(self) -> tuple[float, int, int]:
        with self.engine.connect() as conn:
            wal, read, hit = conn.execute(self.DATABASE).one()
        return float(wal), int(read), int(hit)

    def __enter__(self) -> TickAccount:
        self.database_before = self._database()
        sa.event.listen(self.engine, "before_cursor_execute", self._before)
        sa.event.listen(self.engine, "after_cursor_execute", self._after)
        self.cpu_before = {pid: cpu_seconds(pid) for pid in connected_backends(self.engine)}
        self.process_cpu = time.process_time()
        self.started = time.perf_counter()
        return self

    def __exit__(self, *exc_info) -> None:
        self.seconds = time.perf_counter() - self.started
        self.process_cpu = time.process_time() - self.process_cpu
        sa.event.remove(self.engine, "before_cursor_execute", self._before)
        sa.event.remove(self.engine, "after_cursor_execute", self._after)
        # A backend the tick opened has spent all it has spent in the tick.
        self.backend_cpu = sum(
            cpu_seconds(pid) - self.cpu_before.get(pid, 0.0) for pid in self.backends
        )
        after = self._database()
        self.wal_mb = (after[0] - self.database_before[0]) / 1e6
        self.blocks_read = after[1] - self.database_before[1]
        self.blocks_hit = after[2] - self.database_before[2]

    def report(self) -> None:
        spent = sorted(self.statements.items(), key=lambda item: -item[1])
        print(
            "    where the tick's time went (s): "
            + ", ".join(f"{kind} {seconds:.2f}" for kind, seconds in spent[:4])
            + f"; this process's CPU {self.process_cpu:.2f}, its database backend's CPU"
            f" {self.backend_cpu:.2f}; PostgreSQL read {self.blocks_read:,} blocks from"
            f" outside its buffers ({self.blocks_hit:,} found in them), wrote"
            f" {self.wal_mb:.0f} MB of WAL"
        )


def bench_tick(app, args, queue) -> None:
    from crm_app.drip.delivery.tick import run_tick
    from crm_app.extensions import db
    from crm_app.models import utcnow
    from crm_app.queue import enqueue_deliveries

    jobs = []

    def enqueue(ids: list[int]) -> None:
        jobs.append(enqueue_deliveries(queue, ids, args.batch))

    now = utcnow()
    with TickAccount(db.engine) as account:
        result = run_tick(db.session, enqueue, now=now)
        db.session.remove()
    print(
        f"(a) tick over {args.enrollments:,} enrolments, {args.due:,} due: "
        f"{result.created:,} messages created and {sum(jobs):,} jobs enqueued in "
        f"{account.seconds:.2f} s (target < 10 s)"
    )
    account.report()
    timings = []
    for _ in range(7):
        t0 = time.perf_counter()
        empty = run_tick(db.session, lambda ids: None, now=utcnow())
        timings.append((time.perf_counter() - t0) * 1000)
        db.session.remove()
        assert empty.created == 0
    print(
        f"    tick with nothing due: {statistics.median(timings):.1f} ms median of 7 "
        f"(min {min(timings):.1f}) (target < 50 ms)"
    )
    with db.engine.connect() as conn:
        plan = conn.execute(
            sa.text(
                "EXPLAIN SELECT id FROM enrollments WHERE status = 'active' "
                "AND next_send_at <= now() at time zone 'utc' ORDER BY next_send_at LIMIT 5000"
            )
        ).scalars()
        print("    due query plan:", " | ".join(line.strip() for line in plan)[:160])


def start_fake_sendgrid(latency_ms: float = 0.0) -> tuple[subprocess.Popen, str]:
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "fake_sendgrid.py"), "0", str(latency_ms / 1000)],
        stdout=subprocess.PIPE,
        cwd=str(ROOT),
    )
    url = process.stdout.readline().decode().strip()
    return process, url


def worker_env(db_url: str, redis_url: str, queue_name: str, sendgrid_url: str, tmp: str):
    env = dict(os.environ)
    env.update(
        {
            "DATABASE_URL": db_url,
            "REDIS_URL": redis_url,
            "RQ_QUEUE": queue_name,
            "SECRET_KEY": "bench-secret",
            "SENDGRID_API_KEY": "SG.bench",
            "SENDGRID_API_HOST": sendgrid_url,
            "DRIP_INSTANCE_PATH": tmp,
            "PYTHONPATH": str(ROOT),
        }
    )
    return env


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a running process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def services_cpu() -> dict[str, float]:
    """CPU seconds so far of the local PostgreSQL and Redis servers, each with the
    children they have reaped (a backend that ended with its worker's connection
    counts in its postmaster's cutime): what delivery costs beside the workers."""
    ticks = {"postgres": 0, "redis-server": 0}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            head, tail = stat.read_text().rsplit(")", 1)
        except OSError:
            continue
        name = head.split("(", 1)[1]
        if name in ticks:
            ticks[name] += sum(int(field) for field in tail.split()[11:15])
    return {name: count / os.sysconf("SC_CLK_TCK") for name, count in ticks.items()}


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


BACKENDS = sa.text("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")


def connected_backends(engine) -> set[int]:
    """The PostgreSQL backends connected to this database now (this process's pool's)."""
    with engine.connect() as conn:
        return set(conn.scalars(BACKENDS))


def database_reads(engine, ours: set[int]) -> tuple[int, float]:
    """Blocks this database read from outside PostgreSQL's buffers so far, and ms spent
    reading them (track_io_timing, turned on for the database by bench_delivery). A
    backend adds its figures as it ends: first wait for every backend but `ours` (this
    process's, connected before the workers started) to end."""
    with engine.connect() as conn:
        deadline = time.monotonic() + 10
        ours = ours | {conn.scalar(sa.text("SELECT pg_backend_pid()"))}
        while set(conn.scalars(BACKENDS)) - ours and time.monotonic() < deadline:
            time.sleep(0.05)
        row = conn.execute(
            sa.text(
                "SELECT blks_read, blk_read_time FROM pg_stat_database"
                " WHERE datname = current_database()"
            )
        ).one()
    return int(row[0]), float(row[1])


def phase_seconds(queue) -> dict[str, float]:
    """The delivery jobs' own account of where their time went (crm_app.drip.delivery.pipeline)."""
    from rq.job import Job

    total: dict[str, float] = {}
    ids = queue.finished_job_registry.get_job_ids()
    for job in Job.fetch_many(ids, connection=queue.connection):
        result = job.return_value() if job is not None else None
        if isinstance(result, dict):
            for phase, seconds in (result.get("seconds") or {}).items():
                total[phase] = total.get(phase, 0.0) + seconds
    return total


def run_workers(env: dict, count: int) -> float:
    """Run `count` burst workers to the end; returns their peak RSS in MB (VmHWM, read
    while they run: getrusage's ru_maxrss counts the moment between fork and exec, when
    a child still maps this process's pages, a million rows' worth of them)."""
    workers = [
        subprocess.Popen(
            [sys.executable, str(ROOT / "worker.py"), "--burst", "--no-scheduler"],
            env=env,
            cwd=str(ROOT),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for _ in range(count)
    ]
    peak_kib = {worker.pid: 0 for worker in workers}
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            for pid in peak_kib:
                try:
                    status = Path(f"/proc/{pid}/status").read_text()
                except OSError:
                    continue
                found = re.search(r"VmHWM:\s+(\d+)", status)
                if found:
                    peak_kib[pid] = max(peak_kib[pid], int(found.group(1)))
            done.wait(0.1)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        for worker in workers:
            _, err = worker.communicate(timeout=3600)
            if worker.returncode != 0:
                print(err.decode()[-2000:])
                raise SystemExit("a worker failed")
    finally:
        done.set()
        watcher.join()
    return max(peak_kib.values()) / 1024


def bench_delivery(app, args, queue, db_url: str, latency_ms: float, part: str) -> None:
    from rq.job import Job

    from crm_app.extensions import db
    from crm_app.models import Message
    from crm_app.queue import enqueue_deliveries

    queue.empty()
    ids = list(
        db.session.scalars(
            sa.select(Message.id).where(Message.status == "queued").order_by(Message.id)
        ).all()[: args.messages]
    )
    db.session.remove()
    if len(ids) < args.messages:
        print(f"    only {len(ids):,} queued messages to deliver")
    fake, fake_url = start_fake_sendgrid(latency_ms)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            env = worker_env(db_url, args.redis_url, queue.name, fake_url, tmp)
            if args.concurrency is not None:
                env["DELIVERY_CONCURRENCY"] = str(args.concurrency)
            if args.claim_chunk is not None:
                env["DELIVERY_CLAIM_CHUNK"] = str(args.claim_chunk)
            args.batch = args.batch or app.config["DELIVERY_BATCH_SIZE"]
            enqueue_deliveries(queue, ids, args.batch)
            with db.engine.connect() as conn:
                # The workers' sessions time their reads (superuser only; new sessions).
                name = conn.scalar(sa.text("SELECT current_database()"))
                conn.execute(sa.text(f'ALTER DATABASE "{name}" SET track_io_timing = on'))
                conn.commit()
            ours = connected_backends(db.engine)
            reads_before = database_reads(db.engine, ours)
            fake_cpu, workers_cpu = cpu_seconds(fake.pid), children_cpu()
            services_before = services_cpu()
            wall = time.perf_counter()
            peak_rss_mb = run_workers(env, args.workers)
            wall = time.perf_counter() - wall
            workers_cpu = children_cpu() - workers_cpu
            services = {name: cpu - services_before[name] for name, cpu in services_cpu().items()}
            blocks, read_ms = database_reads(db.engine, ours)
            blocks, read_ms = blocks - reads_before[0], read_ms - reads_before[1]
            database_cpu, redis_cpu = services["postgres"], services["redis-server"]
            fake_cpu = cpu_seconds(fake.pid) - fake_cpu
            phases = phase_seconds(queue)
            with db.engine.connect() as conn:
                row = conn.execute(
                    sa.select(
                        sa.func.count(Message.id),
                        sa.func.min(Message.claimed_at),
                        sa.func.max(Message.sent_at),
                    ).where(Message.id.in_(ids), Message.status == "sent")
                ).one()
            stats = json.loads(urllib.request.urlopen(fake_url + "/_stats").read())
            sent, first, last = row
            span = (last - first).total_seconds()
            rate = sent / span if span > 0 else float("nan")

            # RQ's own floor: no-op jobs through the same worker class and worker count.
            noop = [
                queue.prepare_data("bench.jobs.noop", result_ttl=3600)
                for _ in range(args.noop_jobs)
            ]
            jobs = []
            for start in range(0, len(noop), 500):
                jobs += queue.enqueue_many(noop[start : start + 500])
            run_workers(env, args.workers)
            fetched = [
                j for j in Job.fetch_many([j.id for j in jobs], connection=queue.connection) if j
            ]
            started = min(j.started_at for j in fetched)
            ended = max(j.ended_at for j in fetched)
            noop_rate = len(fetched) / (ended - started).total_seconds()
    finally:
        fake.terminate()
        fake.wait(10)
    print(
        f"({part}) {sent:,} of {len(ids):,} messages sent by {args.workers} workers "
        f"({args.batch} per job): {rate:,.0f} messages/s over {span:.1f} s "
        f"(wall incl. start-up {wall:.1f} s) "
        f"with the fake SendGrid answering in {latency_ms:g} ms "
        f"(target {'1,000' if latency_ms else '2,000'}/s)"
    )
    print(
        f"    fake SendGrid: {stats['deliveries']:,} deliveries, {stats['duplicates']} duplicates"
    )
    print(
        f"    RQ floor: {noop_rate:,.0f} no-op jobs/s through the same worker class; "
        f"messages/s : no-op jobs/s = {rate / noop_rate:.2f}"
    )
    concurrency = env.get("DELIVERY_CONCURRENCY", "the default")
    chunk = env.get("DELIVERY_CLAIM_CHUNK", "the default")
    per = max(sent, 1)
    print(
        f"    where the time goes, ms per message of each job's database thread "
        f"({concurrency} in flight per worker, claims of {chunk}, fake latency "
        f"{latency_ms:g} ms; send = waiting for answers with nothing to write): "
        + ", ".join(f"{k} {v * 1000 / per:.2f}" for k, v in phases.items())
    )
    print(f"    worker peak memory: {peak_rss_mb:.0f} MB RSS (aim <= 150 MB)")
    print(
        f"    CPU per message: workers {workers_cpu * 1000 / per:.2f} ms (start-up included), "
        f"PostgreSQL {database_cpu * 1000 / per:.2f} ms, Redis {redis_cpu * 1000 / per:.2f} ms, "
        f"fake SendGrid {fake_cpu * 1000 / per:.2f} ms; this machine has {os.cpu_count()} "
        f"cores for them all ({os.cpu_count() * wall * 1000 / per:.2f} ms per message)"
    )
    with db.engine.connect() as conn:
        size = conn.scalar(sa.text("SELECT pg_size_pretty(pg_database_size(current_database()))"))
        buffers = conn.scalar(sa.text("SHOW shared_buffers"))
    # PostgreSQL's CPU per message grows with the tables once they outgrow its buffers
    # (seen: 0.25 ms at 100,000 enrolments, 0.51 ms at 1,000,000 with 128MB of buffers);
    # the reads from outside them show whether waiting for the disk is part of it (seen:
    # 5 blocks and 0.012 ms per message, whether or not the tables were in the OS cache).
    print(f"    PostgreSQL: database {size}, shared_buffers {buffers};"
          f" read {blocks:,} blocks outside its buffers during the run, {read_ms:,.0f} ms"
          f" of it waiting ({read_ms / per:.3f} ms per message)")  # fmt: skip


def main() -> None:
    args = parse_args()
    if args.due > args.enrollments:
        raise SystemExit("--due cannot exceed --enrollments")
    queue_name = f"drip_bench_{uuid.uuid4().hex[:6]}"
    with scratch_database(args.database_url, prefix="drip_bench", keep=args.keep) as db_url:
        print(f"scratch database {sa.make_url(db_url).database}, queue {queue_name}"
              f" on {args.redis_url}")  # fmt: skip
        from flask_migrate import upgrade

        from crm_app import create_app
        from crm_app.drip.campaigns.seed import seed_default_campaigns
        from crm_app.extensions import db
        from crm_app.models import Campaign, utcnow
        from crm_app.queue import get_queue

        with tempfile.TemporaryDirectory() as tmp:
            os.environ.setdefault("DRIP_INSTANCE_PATH", tmp)
            app = create_app(
                {
                    "SQLALCHEMY_DATABASE_URI": db_url,
                    "REDIS_URL": args.redis_url,
                    "RQ_QUEUE": queue_name,
                    "SECRET_KEY": "bench-secret",
                }
            )
            with app.app_context():
                upgrade()
                seed_default_campaigns(db.session)
                for campaign in db.session.scalars(sa.select(Campaign)):
                    # Open all week, so the figures do not depend on the hour of the run.
                    campaign.send_days = "0,1,2,3,4,5,6"
                    campaign.send_start, campaign.send_end = dtime(0, 0), dtime(23, 59, 59)
                db.session.commit()
                load(app, args, utcnow())
                queue = get_queue()
                try:
                    bench_tick(app, args, queue)
                    if not args.skip_delivery:
                        for part, latency_ms in zip("bcdefgh", args.latency_ms, strict=False):
                            bench_delivery(app, args, queue, db_url, latency_ms, part)
                finally:
                    queue.empty()
                    queue.delete(delete_jobs=True)
                    for registry in (queue.finished_job_registry, queue.failed_job_registry):
                        queue.connection.delete(registry.key)
                db.session.remove()
                db.engine.dispose()


if __name__ == "__main__":
    main()
