"""Fixtures of the delivery tests: the fake SendGrid server, a SendGridBackend that
talks to it, delivery settings. Test modules load it with
`pytest_plugins = ["tests.conftest_delivery"]`; tests/conftest.py stays the shared one."""

from __future__ import annotations

import pytest

from crm_app.config import settings_of
from crm_app.drip.delivery.backends import SendGridBackend
from tests.sendgrid_server import FakeSendGrid


@pytest.fixture(scope="session")
def _fake_sendgrid_server():
    server = FakeSendGrid().start()
    yield server
    server.stop()


@pytest.fixture
def fake_sendgrid(_fake_sendgrid_server):
    _fake_sendgrid_server.reset()
    yield _fake_sendgrid_server
    _fake_sendgrid_server.reset()


@pytest.fixture
def backend(fake_sendgrid):
    """The real sendgrid client, pointed at the local fake."""
    return SendGridBackend(
        api_key="SG.test-key",
        host=fake_sendgrid.url,
        from_email="team@example.com",
        from_name="Drip Team",
        reply_to="replies@example.com",
        timeout=1.0,
    )


@pytest.fixture
def settings(app):
    return settings_of(app).replace(
        public_base_url="https://crm.example.com",
        mail_unsubscribe_mailto="unsubscribe@example.com",
        mail_from_email="team@example.com",
        mail_from_name="Drip Team",
        sender_company="Acme Consulting",
        sender_website="https://acme.example.com",
        delivery_max_attempts=3,
        delivery_retry_base_seconds=1,
        delivery_retry_max_seconds=60,
    )
