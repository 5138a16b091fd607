"""instance/ holds the SQLite database, the secret key and the embedded Redis: owner only.

A default umask leaves new files world-readable (0644): any local account could copy
every contact and the key that signs sessions and unsubscribe links.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from sqlalchemy.engine import make_url

PRIVATE_DIRECTORY = 0o700
PRIVATE_FILE = 0o600


def sqlite_database_file(database_url: str) -> Path | None:
    """The file behind a SQLite URL; None for other databases and in-memory SQLite."""
    if not database_url.startswith("sqlite"):
        return None
    database = make_url(database_url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database)


def protect_instance(instance_path: Path, database_url: str) -> None:
    """instance/ 0700 and every file in it 0600; the SQLite file is created 0600 before
    SQLite opens it, and its -wal/-shm files take the database file's mode."""
    instance_path.mkdir(parents=True, exist_ok=True)
    instance_path.chmod(PRIVATE_DIRECTORY)
    database_file = sqlite_database_file(database_url)
    if database_file is not None:
        database_file.parent.mkdir(parents=True, exist_ok=True)
        os.close(os.open(database_file, os.O_CREAT | os.O_WRONLY, PRIVATE_FILE))
        _make_private(database_file)
    for path in instance_path.iterdir():
        _make_private(path)


def _make_private(path: Path) -> None:
    # lstat: a symlink planted in instance/ must not redirect the chmod elsewhere.
    mode = path.lstat().st_mode
    if stat.S_ISREG(mode) and stat.S_IMODE(mode) & 0o077:
        path.chmod(PRIVATE_FILE)
