"""Every setting of the app, in one typed object with its one default.

`Settings` is read from the environment (and an optional .env) once, at app
creation; tests override fields through `create_app({"NAME": value})`. The
Flask config carries the values under the upper-case names (Flask and its
extensions read them there, tests override them there); the core, the queue and
the jobs read them typed: `settings_of(app)`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import timedelta
from pathlib import Path
from typing import Any

from dotenv import load_dotenv
from flask import Config as FlaskConfig

from crm_app.embedded_redis import read_url_file

PROJECT_ROOT = Path(__file__).resolve().parent.parent
INSTANCE_PATH = Path(os.environ.get("DRIP_INSTANCE_PATH", PROJECT_ROOT / "instance"))


class ConfigError(SystemExit):
    """A setting the app cannot use. A SystemExit: every entry point (flask, gunicorn, the
    worker, the scheduler, make run) stops with this one line, not a traceback."""


@dataclass(frozen=True)
class Settings:
    """Each field is read from the environment variable of its upper-case name (an
    empty variable means unset); a field whose default is None is optional."""

    secret_key: str = field(default="", repr=False)  # empty: generated into instance/
    database_url: str = ""  # empty: SQLite under instance/
    # None: the embedded Redis the run command starts (instance/redis.url while it runs).
    redis_url: str | None = None
    rq_queue: str = "drip"
    public_base_url: str = "http://127.0.0.1:5000"
    # Delivery backend: without an API key, mail goes to the Outbox (the message rows).
    sendgrid_api_key: str | None = field(default=None, repr=False)
    sendgrid_api_host: str = "https://api.sendgrid.com"
    sendgrid_timeout: float = 10.0
    sendgrid_webhook_public_key: str | None = field(default=None, repr=False)
    # Event Webhook: accepted clock skew, and when an in-doubt email counts as lost.
    sendgrid_webhook_tolerance_seconds: int = 600
    in_doubt_no_trace_hours: float = 2.0
    # With the Event Webhook configured and healthy, an in-doubt email with no SendGrid
    # event after this many minutes was never accepted: it is queued again (0: never).
    in_doubt_auto_resolve_minutes: float = 30.0
    # At most this many emails to one contact per rolling window, across all campaigns
    # (0: no cap); a held email waits for the next allowed moment inside its window.
    frequency_cap_count: int = 1
    frequency_cap_window_hours: float = 24.0
    # An email queued in its send window but not sent when the window closed still goes
    # this many minutes after the close; later, it waits for the next opening.
    send_window_grace_minutes: float = 15.0
    # Sender identity.
    mail_from_email: str = "hello@example.com"
    mail_from_name: str = "Drip CRM"
    mail_reply_to: str | None = None
    mail_unsubscribe_mailto: str = "unsubscribe@example.com"
    sender_company: str = "Drip CRM"
    sender_website: str = "https://example.com"
    # Replies (SendGrid Inbound Parse): each email's Reply-To is reply+<token>@this domain
    # (None: no per-message Reply-To, MAIL_REPLY_TO as before); the endpoint is
    # /webhooks/inbound/<secret> (None: the endpoint answers 404).
    inbound_parse_domain: str | None = None
    inbound_parse_secret: str | None = field(default=None, repr=False)
    # SendGrid's own limit is 30 MB per email with its attachments: a genuine post fits.
    inbound_parse_max_bytes: int = 32 * 1024 * 1024
    # GDPR erasure: the key of the hashes that keep erased addresses suppressed (None:
    # derived from SECRET_KEY). Changing it makes those hashes unmatchable.
    erasure_hash_key: str | None = field(default=None, repr=False)
    # Web.
    session_hours: int = 12
    # An unchanged session's cookie is signed and sent again at most this often
    # (web/session_cookie.py): the idle timeout of SESSION_HOURS moves in such steps.
    session_refresh_seconds: int = 60
    session_cookie_secure: bool = False
    password_link_hours: int = 72  # how long a one-time set-password link works
    contacts_per_page: int = 25
    # Security (README "Security"). Request bodies: the largest any route accepts (uploads,
    # the API), every form post, the Event Webhook; bigger ones get a 413 before being read.
    max_content_length: int = 25_000_000
    max_form_bytes: int = 1_000_000
    webhook_max_bytes: int = 5_000_000
    # Failed logins allowed per window, by account and by client address (Flask-Limiter).
    login_limit_per_account: str = "10 per 15 minutes"
    login_limit_per_address: str = "50 per 15 minutes"
    # Behind HTTPS: HSTS max-age (0: no header) and how many reverse proxies' X-Forwarded-*
    # headers to trust (0: none; the client address and scheme are the socket's).
    hsts_seconds: int = 0
    trusted_proxy_count: int = 0
    # GET /health tells only "ok"/"failing" unless the caller is logged in, sends this token
    # (Authorization: Bearer ...) or comes from one of these networks (comma-separated CIDRs).
    health_token: str | None = field(default=None, repr=False)
    health_networks: str = ""
    # Database pool (PostgreSQL): a delivery job holds one connection (its writes); the web
    # threads and outbound webhook threads one each.
    db_pool_size: int = 10
    db_max_overflow: int = 20
    # A pooled connection idle for longer than this is checked before use (crm_app/db_pool.py).
    db_ping_after_idle_seconds: float = 1.0
    # Delivery (see crm_app/drip/delivery/DELIVERY.md for what each one guards).
    delivery_lease_seconds: int = 600
    delivery_max_attempts: int = 5
    delivery_batch_size: int = 1000
    # Requests in flight to SendGrid per delivery job (one event loop, one database
    # connection); claims of up to DELIVERY_CLAIM_CHUNK messages, results recorded every
    # DELIVERY_RECORD_MS milliseconds (or every DELIVERY_CLAIM_CHUNK answers).
    delivery_concurrency: int = 200
    delivery_claim_chunk: int = 100
    delivery_record_ms: int = 50
    # Messages per second across all workers (a Redis token bucket); 0: no limit. A 429
    # halves it for SEND_BACKOFF_SECONDS.
    send_rate_per_second: float = 0.0
    send_backoff_seconds: int = 60
    delivery_tick_chunk: int = 5000
    delivery_retry_base_seconds: float = 30.0
    delivery_retry_max_seconds: float = 3600.0
    # CSV import: the largest file accepted, rows per committed chunk, and how long a
    # queued or running import may go without progress before it counts as stalled.
    import_max_bytes: int = 20 * 1024 * 1024
    import_chunk_size: int = 1000
    import_stall_seconds: int = 120
    # REST API (/api/v1): requests per token (Flask-Limiter syntax) and the largest body.
    api_rate_limit: str = "300 per minute"
    api_max_body_bytes: int = 1_048_576
    # Outbound webhooks. Private targets (loopback, LAN, link-local...) are refused unless
    # allowed here: an admin could otherwise make the server call its own network (SSRF).
    webhook_allow_private_targets: bool = False
    webhook_timeout_seconds: float = 10.0
    # Deliveries a worker sends at once (receivers answer in 100-500 ms).
    webhook_threads: int = 8
    # A delivery claimed or enqueued longer ago than this lost its worker or its job.
    webhook_lease_seconds: int = 120
    # An endpoint whose every delivery failed for this long is disabled.
    webhook_disable_after_days: float = 5.0
    # A/B tests: no verdict until every variant has this many emails sent; automatic
    # promotion of a significant winner once every variant has this many (0: off).
    ab_min_sends_per_variant: int = 100
    ab_auto_promote_after: int = 0

    @property
    def import_upload_max_bytes(self) -> int:
        """The largest import upload request: room for the multipart envelope around a
        file of exactly IMPORT_MAX_BYTES (the file itself is checked by the core)."""
        return self.import_max_bytes + 64 * 1024

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> Settings:
        environ = os.environ if environ is None else environ
        values = {}
        for spec in fields(cls):
            raw = environ.get(spec.name.upper())
            if raw is not None and raw.strip():  # empty means unset: the default
                try:
                    values[spec.name] = _cast(spec, raw)
                except ValueError:
                    kind = "a whole number" if str(spec.type).startswith("int") else "a number"
                    raise ConfigError(
                        f"{spec.name.upper()}={raw!r} is not {kind}: fix or unset it"
                    ) from None
        return cls(**values)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Settings:
        """The typed view of a Flask config (after a test's or a caller's overrides)."""
        values = {}
        for spec in fields(cls):
            key = spec.name.upper()
            if key in config:
                value = config[key]
                values[spec.name] = _cast(spec, value) if isinstance(value, str) else value
        values["database_url"] = config.get("SQLALCHEMY_DATABASE_URI", "")
        return cls(**values)

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)

    def flask_config(self) -> dict[str, Any]:
        """The Flask config: every field under its upper-case name, plus Flask's own keys."""
        config = {spec.name.upper(): getattr(self, spec.name) for spec in fields(self)}
        config.update(
            SQLALCHEMY_DATABASE_URI=self.database_url,
            PERMANENT_SESSION_LIFETIME=timedelta(hours=self.session_hours),
            SESSION_COOKIE_HTTPONLY=True,
            SESSION_COOKIE_SAMESITE="Lax",
            SESSION_COOKIE_SECURE=self.session_cookie_secure,
            WTF_CSRF_TIME_LIMIT=None,  # the token lives as long as the session
            TESTING=False,
        )
        return config


def _cast(spec: dataclasses.Field, raw: str) -> Any:
    kind = str(spec.type)
    if kind.startswith("bool"):
        return raw.strip().lower() in {"1", "true", "yes", "on"}
    if kind.startswith("int"):
        return int(raw)
    if kind.startswith("float"):
        return float(raw)
    return raw.strip()


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


def normalize_database_url(url: str) -> str:
    """Heroku-style URLs name the old driver; we use psycopg 3."""
    if url.startswith(("postgres://", "postgresql://")):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def _check_database_url(url: str) -> None:
    """A mistyped DATABASE_URL fails here with its name, not deep in SQLAlchemy (and
    without echoing it: it may hold a password). The app runs on these two only."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        backend = make_url(url).get_backend_name()
    except ArgumentError:
        backend = None
    if backend not in {"sqlite", "postgresql"}:
        raise ConfigError(
            "DATABASE_URL is not a database URL the app can use: expected "
            "postgresql+psycopg://user:pw@host/db or sqlite:///path"
        )


def _json_text(value: Any) -> str:
    # JSON columns as readable UTF-8 ("Zürich", not "Z\u00fcrich"): the contact list's
    # search reads custom fields through their JSON text.
    return json.dumps(value, ensure_ascii=False)


def engine_options(settings: Settings) -> dict:
    """Pool and driver settings for the database the app ends up with."""
    if settings.database_url.startswith("sqlite"):
        # Worker threads queue for SQLite's single write lock: wait, don't fail.
        return {"connect_args": {"timeout": 30}, "json_serializer": _json_text}
    # No pool_pre_ping: crm_app/db_pool.py checks only connections that sat idle.
    return {
        "json_serializer": _json_text,
        "pool_size": settings.db_pool_size,
        "max_overflow": settings.db_max_overflow,
    }


def rate_limit_storage_uri(redis_url: str | None) -> str:
    """Flask-Limiter's storage: the app's Redis (limits names a unix socket redis+unix);
    in memory only without Redis (a single-process tool, such as a migration)."""
    if not redis_url:
        return "memory://"
    if redis_url.startswith("unix://"):
        return "redis+unix://" + redis_url.removeprefix("unix://")
    return redis_url


def load_settings() -> Settings:
    """Read the environment once, at app creation (never at import)."""
    load_dotenv(PROJECT_ROOT / ".env")
    settings = Settings.from_environment()
    database_url = normalize_database_url(
        settings.database_url or f"sqlite:///{INSTANCE_PATH / 'drip.db'}"
    )
    _check_database_url(database_url)
    if settings.redis_url and not settings.redis_url.startswith(
        ("redis://", "rediss://", "unix://")
    ):
        raise ConfigError(
            "REDIS_URL is not a Redis URL: expected redis://host:6379/0, rediss://... "
            "or unix:///path/to/redis.sock"
        )
    return settings.replace(
        secret_key=settings.secret_key or _persistent_secret_key(),
        database_url=database_url,
        # Unset: the embedded Redis of a running `make run`, if any (its URL file).
        redis_url=settings.redis_url or read_url_file(INSTANCE_PATH),
    )


class VersionedConfig(FlaskConfig):
    """Flask's config, counting its changes: `settings_of` builds the typed settings
    again only after one (44 us a build, three times a request otherwise)."""

    version = 0

    def _changed(self) -> None:
        self.version += 1

    def __setitem__(self, key: str, value: Any) -> None:
        super().__setitem__(key, value)
        self._changed()

    def __delitem__(self, key: str) -> None:
        super().__delitem__(key)
        self._changed()

    def update(self, *args: Any, **kwargs: Any) -> None:
        super().update(*args, **kwargs)
        self._changed()

    def setdefault(self, key: str, default: Any = None) -> Any:
        self._changed()
        return super().setdefault(key, default)

    def pop(self, key: str, *default: Any) -> Any:
        self._changed()
        return super().pop(key, *default)

    def popitem(self) -> tuple[str, Any]:
        self._changed()
        return super().popitem()

    def clear(self) -> None:
        super().clear()
        self._changed()

    def __ior__(self, other: Any) -> VersionedConfig:
        self.update(other)
        return self


def settings_of(app: Any) -> Settings:
    """The app's settings, typed, as its config says now: an override made after
    create_app (a test's monkeypatch) is seen everywhere."""
    config = app.config
    version = getattr(config, "version", None)
    cached = app.extensions.get("drip_settings")
    if version is not None and cached is not None and cached[0] == version:
        return cached[1]
    settings = Settings.from_config(config)
    app.extensions["drip_settings"] = (version, settings)
    return settings
