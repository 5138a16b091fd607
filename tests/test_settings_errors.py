"""A setting with a value the app cannot use stops every entry point with one line that
names it, not a traceback from deep in SQLAlchemy, limits or int()."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from crm_app import launcher
from crm_app.config import ConfigError, Settings, load_settings
from tests.conftest import ROOT


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("DELIVERY_BATCH_SIZE", "abc", "DELIVERY_BATCH_SIZE='abc' is not a whole number"),
        ("SEND_RATE_PER_SECOND", "fast", "SEND_RATE_PER_SECOND='fast' is not a number"),
    ],
)
def test_a_non_numeric_number_names_the_setting(name, value, expected):
    with pytest.raises(ConfigError) as refused:
        Settings.from_environment({name: value})
    assert expected in str(refused.value)


@pytest.mark.parametrize("url", ["bogus://x", "mysql://u:secret@db/x", "not a url"])
def test_a_bad_database_url_is_refused_without_echoing_it(monkeypatch, url):
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("SECRET_KEY", "settings-test")
    with pytest.raises(ConfigError) as refused:
        load_settings()
    assert "DATABASE_URL" in str(refused.value)
    assert "secret" not in str(refused.value)


def test_a_postgres_url_is_still_accepted(monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "postgres://u:pw@127.0.0.1:1/x")
    monkeypatch.setenv("SECRET_KEY", "settings-test")
    assert load_settings().database_url == "postgresql+psycopg://u:pw@127.0.0.1:1/x"


def test_a_bad_redis_url_is_refused(monkeypatch):
    monkeypatch.setenv("REDIS_URL", "localhost:6379")
    monkeypatch.setenv("SECRET_KEY", "settings-test")
    with pytest.raises(ConfigError, match="REDIS_URL is not a Redis URL"):
        load_settings()


@pytest.mark.parametrize("value", ["abc", "0", "70000"])
def test_make_run_refuses_a_bad_port_clearly(value):
    with pytest.raises(SystemExit, match=f"PORT='{value}' is not a port number"):
        launcher._port(value)
    assert launcher._port("") == 5000 and launcher._port("8000") == 8000


def test_flask_health_with_a_bad_number_says_which_without_a_traceback(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("TEST_")}
    env.update(
        DELIVERY_BATCH_SIZE="lots",
        DRIP_INSTANCE_PATH=str(tmp_path / "instance"),
        SECRET_KEY="settings-test",
        FLASK_APP="crm_app:create_app",
    )
    result = subprocess.run(
        [sys.executable, "-m", "flask", "health"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "DELIVERY_BATCH_SIZE='lots' is not a whole number" in result.stderr
    assert "Traceback" not in result.stderr
