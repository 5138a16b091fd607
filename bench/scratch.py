"""A throwaway PostgreSQL database, migrated, for the benchmarks."""

from __future__ import annotations

from tests.scratch_db import scratch_database as _scratch_database

DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def scratch_database(base_url: str, *, keep: bool = False):
    """A `bench_<random>` database on `base_url`'s server, dropped afterwards."""
    return _scratch_database(base_url, prefix="bench", keep=keep)


def migrated_app(database_url: str, **config):
    """create_app() on that database, migrated to head, with its context pushed."""
    from flask_migrate import upgrade

    from crm_app import create_app

    app = create_app({"SQLALCHEMY_DATABASE_URI": database_url, "SECRET_KEY": "bench", **config})
    app.app_context().push()
    upgrade()
    return app
