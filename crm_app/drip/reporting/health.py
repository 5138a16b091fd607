"""Is the system able to send? Database, schema, Redis, worker, scheduler, queues."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import sqlalchemy as sa
from alembic.config import Config as AlembicConfig
from alembic.script import ScriptDirectory

from crm_app.config import PROJECT_ROOT
from crm_app.drip.delivery.heartbeat import last_tick_at
from crm_app.drip.delivery.provider_health import backend_auth_failure
from crm_app.models import HashedSuppression, Message, utcnow
from crm_app.models.types import tables_on


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


@dataclass
class HealthReport:
    checks: list[Check] = field(default_factory=list)
    figures: dict[str, int | str | None] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    def as_dict(self) -> dict:
        return {
            "status": "ok" if self.ok else "failing",
            "checks": {c.name: {"ok": c.ok, "detail": c.detail} for c in self.checks},
            "figures": self.figures,
        }


def migration_head(migrations_dir: Path = PROJECT_ROOT / "migrations") -> str | None:
    config = AlembicConfig()
    config.set_main_option("script_location", str(migrations_dir))
    return ScriptDirectory.from_config(config).get_current_head()


def _check_database(session, metadata: sa.MetaData, report: HealthReport) -> bool:
    """True when the schema is the one the code expects: the other database checks read
    its tables, which a database never migrated, or not yet after an upgrade, lacks."""
    try:
        session.execute(sa.text("SELECT 1"))
    except Exception as error:  # any driver error means: unreachable
        session.rollback()
        report.checks.append(Check("database", False, f"unreachable: {error.__class__.__name__}"))
        return False
    report.checks.append(Check("database", True, session.get_bind().dialect.name))
    head = migration_head()
    try:
        current = session.scalar(sa.text("SELECT version_num FROM alembic_version"))
    except Exception:
        session.rollback()
        current = None
    report.checks.append(
        Check(
            "migrations",
            current == head,
            f"at {current}"
            if current == head
            else f"at {current}, latest is {head}: run flask db upgrade",
        )
    )
    existing = set(sa.inspect(session.get_bind()).get_table_names())
    wanted = {table.name for table in tables_on(metadata, session.get_bind().dialect.name)}
    missing = sorted(wanted - existing)
    report.checks.append(
        Check(
            "tables",
            not missing,
            "all present" if not missing else f"missing: {', '.join(missing)}",
        )
    )
    return current == head and not missing


def _check_redis_and_workers(redis_url: str | None, queue_name: str, report: HealthReport) -> None:
    if not redis_url:
        report.checks.append(Check("redis", False, "REDIS_URL is not set"))
        return
    import redis
    from rq import Queue

    from crm_app.drip.common.heartbeats import live_workers
    from crm_app.drip.common.redis_outages import check_writable

    try:
        connection = redis.Redis.from_url(redis_url, socket_connect_timeout=2, socket_timeout=2)
        check_writable(connection)
    except redis.exceptions.ReadOnlyError:
        # A replica answers but no job can be enqueued or taken: a failover under way.
        report.checks.append(Check("redis", False, "takes no writes (a replica: a failover?)"))
        return
    except redis.exceptions.RedisError as error:
        report.checks.append(Check("redis", False, f"unreachable: {error}"))
        return
    report.checks.append(Check("redis", True, "reachable"))
    try:
        report.figures["queue_depth"] = Queue(queue_name, connection=connection).count
        # From each worker's own heartbeat key, not RQ's registry (written only at start,
        # so empty after a FLUSHALL while every worker runs).
        workers = live_workers(connection, queue_name)
    except redis.exceptions.RedisError as error:  # gone between the two reads
        report.checks.append(Check("worker", False, f"unknown: {error}"))
        return
    report.checks.append(
        Check("worker", bool(workers), f"{len(workers)} live" if workers else "no live worker")
    )


def _check_scheduler(session, now: datetime, report: HealthReport, max_age: timedelta) -> None:
    last = last_tick_at(session)
    report.figures["last_tick_at"] = last.isoformat() if last else None
    if last is None:
        report.checks.append(Check("scheduler", False, "no tick has run yet"))
        return
    age = now - last
    report.checks.append(
        Check("scheduler", age <= max_age, f"last tick {int(age.total_seconds())} s ago")
    )


def _message_counts(session, report: HealthReport) -> None:
    counts = dict(
        session.execute(
            sa.select(Message.status, sa.func.count())
            .where(Message.status.in_(("failed", "in_doubt", "queued")))
            .group_by(Message.status)
        ).all()
    )
    report.figures["failed"] = counts.get("failed", 0)
    report.figures["in_doubt"] = counts.get("in_doubt", 0)
    report.figures["queued"] = counts.get("queued", 0)


def check_health(
    session,
    metadata: sa.MetaData,
    *,
    redis_url: str | None,
    queue_name: str,
    now: datetime | None = None,
    max_tick_age: timedelta = timedelta(minutes=2),
    erasure_key_id: str | None = None,
) -> HealthReport:
    now = now or utcnow()
    report = HealthReport()
    if _check_database(session, metadata, report):
        _check_scheduler(session, now, report, max_tick_age)
        _message_counts(session, report)
        _check_sender_auth(session, report)
        if erasure_key_id is not None:
            _check_erasure_key(session, erasure_key_id, report)
    _check_redis_and_workers(redis_url, queue_name, report)
    return report


def _check_sender_auth(session, report: HealthReport) -> None:
    """SendGrid said 401/403: the key is wrong or lacks permission; nothing can be sent."""
    failure = backend_auth_failure(session)
    report.checks.append(
        Check("sendgrid_auth", failure is None, "ok" if failure is None else failure)
    )


def _check_erasure_key(session, current_key_id: str, report: HealthReport) -> None:
    """Erased addresses stay suppressed only under the key that hashed them: a changed
    ERASURE_HASH_KEY (or SECRET_KEY, when it is unset) would let them be mailed again."""
    other = session.scalar(
        sa.select(sa.func.count()).where(HashedSuppression.key_id != current_key_id)
    )
    detail = (
        "ok"
        if not other
        else f"{other} erased address(es) were hashed with another key: restore the "
        "ERASURE_HASH_KEY (or SECRET_KEY) they were made with, or they can be mailed again"
    )
    report.checks.append(Check("erasure_key", not other, detail))
