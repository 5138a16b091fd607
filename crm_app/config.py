"""Settings from the environment (and an optional .env), with embedded defaults."""

from __future__ import annotations

import os
import secrets
from datetime import timedelta
from pathlib import Path

from dotenv import load_dotenv

PROJECT_ROOT = Path(__file__).resolve().parent.parent
INSTANCE_PATH = Path(os.environ.get("DRIP_INSTANCE_PATH", PROJECT_ROOT / "instance"))


def _persistent_secret_key() -> str:
    """A generated key kept under instance/, so sessions survive restarts."""
    key_file = INSTANCE_PATH / "secret_key"
    if key_file.exists():
        return key_file.read_text().strip()
    INSTANCE_PATH.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    key_file.write_text(key)
    key_file.chmod(0o600)
    return key


def _bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def engine_options(database_url: str) -> dict:
    """Pool and driver settings for the database URL the app ends up with."""
    if database_url.startswith("sqlite"):
        # Worker threads queue for SQLite's single write lock: wait, don't fail.
        return {"connect_args": {"timeout": 30}}
    # Each delivery thread holds a connection from its reads to its commit.
    return {
        "pool_pre_ping": True,
        "pool_size": int(os.environ.get("DB_POOL_SIZE", "10")),
        "max_overflow": int(os.environ.get("DB_MAX_OVERFLOW", "20")),
    }


def load_config() -> dict:
    """Read the environment once, at app creation (never at import)."""
    load_dotenv(PROJECT_ROOT / ".env")
    database_url = os.environ.get("DATABASE_URL") or f"sqlite:///{INSTANCE_PATH / 'drip.db'}"
    # Heroku-style URLs name the old driver; we use psycopg 3.
    if database_url.startswith(("postgres://", "postgresql://")):
        database_url = "postgresql+psycopg://" + database_url.split("://", 1)[1]
    return {
        "SECRET_KEY": os.environ.get("SECRET_KEY") or _persistent_secret_key(),
        "SQLALCHEMY_DATABASE_URI": database_url,
        # None means: use the embedded Redis started by the run command.
        "REDIS_URL": os.environ.get("REDIS_URL") or None,
        "RQ_QUEUE": os.environ.get("RQ_QUEUE", "drip"),
        "PUBLIC_BASE_URL": os.environ.get("PUBLIC_BASE_URL", "http://127.0.0.1:5000"),
        "SENDGRID_API_KEY": os.environ.get("SENDGRID_API_KEY") or None,
        "SENDGRID_API_HOST": os.environ.get("SENDGRID_API_HOST", "https://api.sendgrid.com"),
        "SENDGRID_WEBHOOK_PUBLIC_KEY": os.environ.get("SENDGRID_WEBHOOK_PUBLIC_KEY") or None,
        "MAIL_FROM_EMAIL": os.environ.get("MAIL_FROM_EMAIL", "hello@example.com"),
        "MAIL_FROM_NAME": os.environ.get("MAIL_FROM_NAME", "Drip CRM"),
        "MAIL_REPLY_TO": os.environ.get("MAIL_REPLY_TO") or None,
        "MAIL_UNSUBSCRIBE_MAILTO": os.environ.get(
            "MAIL_UNSUBSCRIBE_MAILTO", "unsubscribe@example.com"
        ),
        "SENDER_COMPANY": os.environ.get("SENDER_COMPANY", "Drip CRM"),
        "SENDER_WEBSITE": os.environ.get("SENDER_WEBSITE", "https://example.com"),
        "PERMANENT_SESSION_LIFETIME": timedelta(hours=int(os.environ.get("SESSION_HOURS", "12"))),
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "SESSION_COOKIE_SECURE": _bool("SESSION_COOKIE_SECURE", False),
        "WTF_CSRF_TIME_LIMIT": None,  # the token lives as long as the session
        "CONTACTS_PER_PAGE": 25,
        # Delivery (see crm_app/drip/DELIVERY.md for what each one guards).
        "DELIVERY_LEASE_SECONDS": int(os.environ.get("DELIVERY_LEASE_SECONDS", "600")),
        "DELIVERY_MAX_ATTEMPTS": int(os.environ.get("DELIVERY_MAX_ATTEMPTS", "5")),
        "DELIVERY_BATCH_SIZE": int(os.environ.get("DELIVERY_BATCH_SIZE", "200")),
        "DELIVERY_THREADS": int(os.environ.get("DELIVERY_THREADS", "8")),
        "DELIVERY_CLAIM_CHUNK": int(os.environ.get("DELIVERY_CLAIM_CHUNK", "10")),
        "DELIVERY_TICK_CHUNK": int(os.environ.get("DELIVERY_TICK_CHUNK", "5000")),
        "DELIVERY_RETRY_BASE_SECONDS": float(os.environ.get("DELIVERY_RETRY_BASE_SECONDS", "30")),
        "DELIVERY_RETRY_MAX_SECONDS": float(os.environ.get("DELIVERY_RETRY_MAX_SECONDS", "3600")),
        "SENDGRID_TIMEOUT": float(os.environ.get("SENDGRID_TIMEOUT", "10")),
        # Event Webhook: accepted clock skew, and when an in-doubt email counts as lost.
        "SENDGRID_WEBHOOK_TOLERANCE_SECONDS": int(
            os.environ.get("SENDGRID_WEBHOOK_TOLERANCE_SECONDS", "600")
        ),
        "IN_DOUBT_NO_TRACE_HOURS": float(os.environ.get("IN_DOUBT_NO_TRACE_HOURS", "2")),
        "TESTING": False,
    }
