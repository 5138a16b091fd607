"""Helpers of the outbound webhook tests (the fixtures: tests/conftest_integrations.py)."""

from __future__ import annotations

import sys

import sqlalchemy as sa

from crm_app.models import WebhookDelivery
from crm_app.queue import get_queue, get_redis
from tests.delivery_helpers import ROOT


def work_queue() -> None:
    """Run every job on the app's queue in this process (the worker.py class, burst)."""
    sys.path.insert(0, str(ROOT))
    from worker import AppWorker

    AppWorker([get_queue()], connection=get_redis()).work(burst=True, with_scheduler=False)


def deliveries(session, **where) -> list[WebhookDelivery]:
    session.expire_all()
    return list(
        session.scalars(sa.select(WebhookDelivery).filter_by(**where).order_by(WebhookDelivery.id))
    )
