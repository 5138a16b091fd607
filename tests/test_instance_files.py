"""instance/ and the SQLite database are readable by their owner only."""

from __future__ import annotations

import sqlite3
import stat

import sqlalchemy as sa

from crm_app import create_app
from crm_app.instance_files import protect_instance


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_sqlite_database_and_its_wal_are_0600(tmp_path, _migrated_app):
    database = tmp_path / "instance" / "drip.db"
    config = {k: v for k, v in _migrated_app.config.items() if k.isupper()}
    app = create_app({**config, "SQLALCHEMY_DATABASE_URI": f"sqlite:///{database}"})
    from crm_app.extensions import db

    with app.app_context():
        with db.engine.begin() as connection:  # WAL mode: -wal and -shm appear
            connection.execute(sa.text("CREATE TABLE probe (id INTEGER)"))
        assert mode(database) == 0o600
        for extra in database.parent.glob("drip.db-*"):
            assert mode(extra) == 0o600, extra.name
        db.engine.dispose()


def test_existing_world_readable_instance_files_are_made_private(tmp_path):
    instance = tmp_path / "instance"
    instance.mkdir(mode=0o755)
    database = instance / "drip.db"
    sqlite3.connect(database).close()
    database.chmod(0o644)
    log = instance / "redis.log"
    log.write_text("started")
    log.chmod(0o644)

    protect_instance(instance, f"sqlite:///{database}")

    assert mode(instance) == 0o700
    assert mode(database) == 0o600
    assert mode(log) == 0o600


def test_other_databases_only_protect_the_directory(tmp_path):
    instance = tmp_path / "instance"
    protect_instance(instance, "postgresql+psycopg://user@host/db")
    assert mode(instance) == 0o700
    assert list(instance.iterdir()) == []
