"""Fixtures of the API and outbound webhook tests (loaded by tests/conftest.py): API
clients with tokens, a local webhook receiver and endpoints pointing at it."""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from crm_app.drip.outbound.endpoints import create_endpoint
from crm_app.drip.outbound.events import EVENT_TYPES
from tests.api_helpers import ApiClient, make_token
from tests.webhook_receiver import WebhookReceiver


@pytest.fixture
def api(app):
    """A client with a read and write token named "crm-sync"."""
    return ApiClient(app.test_client(), make_token())


@pytest.fixture
def read_api(app):
    """A client with a read-only token named "reporting"."""
    return ApiClient(app.test_client(), make_token("read", name="reporting"))


@pytest.fixture(scope="session")
def _receiver_server():
    server = WebhookReceiver().start()
    yield server
    server.stop()


@pytest.fixture
def receiver(_receiver_server, app, monkeypatch):
    """A fresh receiver on 127.0.0.1, which the app may call (tests allow private targets)."""
    monkeypatch.setitem(app.config, "WEBHOOK_ALLOW_PRIVATE_TARGETS", True)
    _receiver_server.reset()
    return _receiver_server


@pytest.fixture
def make_endpoint(session, receiver):
    """An endpoint at the receiver, subscribed to `event_types` (all by default)."""

    def make(event_types: Iterable[str] = EVENT_TYPES, url: str | None = None):
        endpoint, secret = create_endpoint(
            session, url or receiver.url, event_types, actor="test", allow_private=True
        )
        session.commit()
        receiver.secret = secret
        return endpoint

    return make
