"""Shared fixtures: a migrated database, a Redis and an RQ queue of the run's own.

By default: SQLite in a temp dir and an embedded redis-server. With
TEST_DATABASE_URL (PostgreSQL) a fresh database is created for the run and
dropped after; with TEST_REDIS_URL the run claims a free database of that Redis
for as long as it lives (tests/redis_db_claim.py) and flushes it before each test.
Either way the queue is named for the run, so two runs started at once on one
machine never see each other's jobs or workers.
"""

from __future__ import annotations

import os
import re
import uuid
from pathlib import Path

import pytest
import redis as redis_lib
import sqlalchemy as sa

os.environ.setdefault("SECRET_KEY", "test-secret-key")

import crm_app.models.user  # noqa: E402
from crm_app import create_app  # noqa: E402
from crm_app.embedded_redis import start_embedded_redis, stop_embedded_redis  # noqa: E402
from crm_app.extensions import db  # noqa: E402
from crm_app.models import Contact, User  # noqa: E402
from crm_app.models.types import tables_on  # noqa: E402
from tests.redis_db_claim import claimed_redis_database  # noqa: E402
from tests.scratch_db import scratch_database  # noqa: E402

# Hashing at production cost would dominate the suite's time; the code path is the same.
crm_app.models.user.PASSWORD_HASH_METHOD = "pbkdf2:sha256:1000"

# The delivery fixtures (fake SendGrid server, backend, settings) and the API and
# webhook ones (API clients, a webhook receiver) for every module.
pytest_plugins = ["tests.conftest_delivery", "tests.conftest_integrations"]

CSRF_HEADER = re.compile(r'"X-CSRFToken": "([^"]+)"')


@pytest.fixture(scope="session")
def database_url(tmp_path_factory):
    base = os.environ.get("TEST_DATABASE_URL")
    if not base:
        yield f"sqlite:///{tmp_path_factory.mktemp('db') / 'test.db'}"
        return
    with scratch_database(base, prefix="drip_test") as url:
        yield url


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory):
    external = os.environ.get("TEST_REDIS_URL")
    if external:
        with claimed_redis_database(external) as url:
            yield url
        return
    process, url = start_embedded_redis(tmp_path_factory.mktemp("redis"))
    yield url
    stop_embedded_redis(process)


@pytest.fixture(scope="session")
def rq_queue():
    """The run's queue name: for the app (RQ_QUEUE in its config) and, through the
    environment, for every worker or scheduler process a test starts."""
    name = f"drip_test_{uuid.uuid4().hex[:10]}"
    previous = os.environ.get("RQ_QUEUE")
    os.environ["RQ_QUEUE"] = name
    yield name
    if previous is None:
        os.environ.pop("RQ_QUEUE", None)
    else:
        os.environ["RQ_QUEUE"] = previous


@pytest.fixture(scope="session")
def _migrated_app(database_url, redis_url, rq_queue, tmp_path_factory):
    app = create_app(
        {
            "TESTING": True,
            "SQLALCHEMY_DATABASE_URI": database_url,
            "REDIS_URL": redis_url,
            "RQ_QUEUE": rq_queue,
            "SECRET_KEY": "test-secret-key",
            "SERVER_NAME": None,
            "PUBLIC_BASE_URL": "http://localhost",
            # The frequency cap (1 email a day by default) is off for the suite, whose
            # tests walk one contact through several emails at once; its own tests
            # (test_frequency_cap.py, the itinerary's, "why"'s) turn it on.
            "FREQUENCY_CAP_COUNT": 0,
        }
    )
    from flask_migrate import upgrade

    with app.app_context():
        upgrade()  # the suite runs on the migrated schema, not on create_all()
    return app


def _clean_database() -> None:
    with db.engine.begin() as conn:
        tables = list(reversed(tables_on(db.metadata, conn.dialect.name)))
        if conn.dialect.name == "postgresql":
            names = ", ".join(f'"{t.name}"' for t in tables)
            conn.execute(sa.text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
        else:
            for table in tables:
                conn.execute(table.delete())


@pytest.fixture
def app(_migrated_app):
    with _migrated_app.app_context():
        _clean_database()
        redis_lib.Redis.from_url(_migrated_app.config["REDIS_URL"]).flushdb()
        yield _migrated_app
        db.session.remove()


@pytest.fixture
def session(app):
    return db.session


@pytest.fixture(autouse=True)
def _whole_search_patterns(monkeypatch):
    """Searches give the trigram index their whole pattern unless a test samples the
    contacts' common trigrams (test_search_trigrams.py): a sample is a statement of its
    own, taken when the last is ten minutes old, and tests count statements."""
    from crm_app.drip.audience import contact_search

    monkeypatch.setattr(contact_search, "common_trigrams", lambda session: frozenset())


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


class WebClient:
    """The Flask test client plus the CSRF token a real page would carry."""

    def __init__(self, client):
        self.client = client

    def _fresh_context(self):
        # Each request gets its own app context (own `g`, own db session), as in
        # production, instead of sharing the test's: no state leaks between requests.
        return self.client.application.app_context()

    def get(self, url, htmx=False, **kw):
        headers = kw.pop("headers", {})
        if htmx:
            headers["HX-Request"] = "true"
        with self._fresh_context():
            return self.client.get(url, headers=headers, **kw)

    def csrf_token(self) -> str:
        # A fresh context too: Flask-WTF keeps the token on `g`, and login starts a new
        # session (a new token), so a token cached on the test's `g` would be stale.
        with self._fresh_context():
            page = self.client.get("/login", follow_redirects=True).get_data(as_text=True)
        match = CSRF_HEADER.search(page)
        assert match, "no CSRF token on the page"
        return match.group(1)

    def post(self, url, data=None, htmx=False, csrf=True, **kw):
        headers = kw.pop("headers", {})
        data = dict(data or {})
        if csrf:
            token = self.csrf_token()
            if htmx:
                headers["X-CSRFToken"] = token
            else:
                data.setdefault("csrf_token", token)
        if htmx:
            headers["HX-Request"] = "true"
        with self._fresh_context():
            return self.client.post(url, data=data, headers=headers, **kw)

    def login(self, email="admin@example.com", password="admin-password"):
        response = self.post("/login", {"email": email, "password": password})
        assert response.status_code == 302, response.get_data(as_text=True)
        return response

    def logout(self):
        return self.post("/logout")


def make_user(email: str, role: str, password: str) -> User:
    user = User(email=email, role=role, name=email.split("@")[0].title())
    user.set_password(password)
    db.session.add(user)
    db.session.commit()
    return user


@pytest.fixture
def admin_user(app):
    return make_user("admin@example.com", "admin", "admin-password")


@pytest.fixture
def staff_user(app):
    return make_user("staff@example.com", "staff", "staff-password")


@pytest.fixture
def web(app):
    return WebClient(app.test_client())


@pytest.fixture
def admin(web, admin_user):
    web.login("admin@example.com", "admin-password")
    return web


@pytest.fixture
def staff(web, staff_user):
    web.login("staff@example.com", "staff-password")
    return web


@pytest.fixture
def campaigns(app):
    """The four default campaigns, loaded as `flask seed` does."""
    from crm_app.drip.campaigns.seed import seed_default_campaigns
    from crm_app.models import Campaign

    seed_default_campaigns(db.session)
    db.session.commit()
    return {c.contact_type: c for c in db.session.scalars(sa.select(Campaign))}


@pytest.fixture
def make_contact(app, campaigns):
    """Create a contact through the core (auto-enrolled by type)."""
    from crm_app.drip.audience.contacts import ContactInput, create_contact

    counter = iter(range(1, 10_000))

    def _make(contact_type="lead", timezone="UTC", **fields) -> Contact:
        n = next(counter)
        data = ContactInput(
            email=fields.pop("email", f"person{n}@example.com"),
            contact_type=contact_type,
            timezone=timezone,
            first_name=fields.pop("first_name", f"Person{n}"),
            last_name=fields.pop("last_name", "Example"),
            **fields,
        )
        contact = create_contact(db.session, data, actor="test")
        db.session.commit()
        return contact

    return _make


def pytest_report_header(config):
    db_kind = "PostgreSQL" if os.environ.get("TEST_DATABASE_URL") else "SQLite"
    redis_kind = "external Redis" if os.environ.get("TEST_REDIS_URL") else "embedded Redis"
    return f"drip-crm: {db_kind} + {redis_kind}"


ROOT = Path(__file__).resolve().parent.parent
