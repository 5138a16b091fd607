"""Extensions created here, bound to the app in create_app()."""

from flask_limiter import HeaderNames, Limiter
from flask_limiter.util import get_remote_address
from flask_login import LoginManager
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from flask_wtf.csrf import CSRFProtect
from htmx_flask import Htmx
from sqlalchemy import MetaData, event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase

# Explicit constraint names so migrations are identical on SQLite and PostgreSQL.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


db = SQLAlchemy(model_class=Base)
migrate = Migrate()
login_manager = LoginManager()
csrf = CSRFProtect()
htmx = Htmx()
# Rate limits live in Redis (RATELIMIT_STORAGE_URI, set in create_app), shared by every web
# process; if Redis is unreachable each process keeps counting in memory instead.
# Every limited response carries X-RateLimit-Limit/-Remaining/-Reset; Flask-Limiter would
# add Retry-After too, which tells a client to wait before its next request even when it
# is not limited: the seconds left in the window go in X-RateLimit-Reset-After instead,
# and each 429 sets its own Retry-After (web/api/problems.py, web/login_throttle.py).
limiter = Limiter(
    key_func=get_remote_address,
    strategy="fixed-window",
    headers_enabled=True,
    header_name_mapping={HeaderNames.RETRY_AFTER: "X-RateLimit-Reset-After"},
    in_memory_fallback_enabled=True,
)


def unicode_lower(value: object) -> str | None:
    """SQL lower() as Python's str.lower: what the app compares SQL's lower() with."""
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return str(value).lower()


@event.listens_for(Engine, "connect")
def _sqlite_connection(dbapi_connection, connection_record) -> None:
    """SQLite ignores ON DELETE CASCADE unless asked, per connection: a deleted contact
    would keep its enrolments, and the scheduler could still mail it."""
    if type(dbapi_connection).__module__.startswith("sqlite3"):
        # SQLite's own lower() lower-cases A-Z only, while the app lower-cases in Python:
        # "élodie" found no "Élodie", "Émile@" and "émile@" were two addresses, and a
        # suppression of "ÉMILE@" missed its contact. Deterministic, so the indexes on
        # lower(...) use it (migration 0022 rebuilt them). A connection without it (the
        # sqlite3 shell) must not write contacts: it would file them under the old lower.
        dbapi_connection.create_function("lower", 1, unicode_lower, deterministic=True)
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        # WAL: readers (web pages) never wait for the worker's writes, and vice versa.
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.close()
