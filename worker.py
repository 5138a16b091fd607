"""Start an RQ worker for Drip CRM: `python worker.py [--burst]`.

The app is created once per process and its context stays pushed, so jobs
reuse its database pool, Redis connection and SendGrid client. The worker
runs jobs in-process (no fork per job: a fork costs more than a job) and
clears the database session after every job so a broken one never leaks
into the next. It also runs RQ's scheduler, which moves delayed retries
(`enqueue_at`) onto the queue when they are due. A delivery job sends its
batch with DELIVERY_THREADS threads (default 8; see crm_app/drip/DELIVERY.md).
"""

from __future__ import annotations

import argparse
import logging

from rq.worker import SimpleWorker

from crm_app import create_app
from crm_app.extensions import db
from crm_app.queue import get_queue, get_redis


class AppWorker(SimpleWorker):
    """SimpleWorker that hands every job a clean database session."""

    def perform_job(self, job, queue, execution):  # type: ignore[override]
        try:
            return super().perform_job(job, queue, execution)
        finally:
            db.session.remove()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--burst", action="store_true", help="stop when the queue is empty")
    parser.add_argument("--name", default=None, help="worker name (default: RQ's)")
    parser.add_argument("--no-scheduler", action="store_true", help="do not run RQ's scheduler")
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    app = create_app()
    app.app_context().push()
    worker = AppWorker([get_queue(app)], connection=get_redis(app), name=args.name)
    worker.work(burst=args.burst, with_scheduler=not args.no_scheduler, logging_level="WARNING")


if __name__ == "__main__":
    main()
