"""Drip CRM: create_app() builds the web app, the worker's app and the tests' app."""

from __future__ import annotations

from typing import Any

from flask import Flask

from crm_app.config import (
    INSTANCE_PATH,
    PROJECT_ROOT,
    Settings,
    VersionedConfig,
    engine_options,
    load_settings,
    rate_limit_storage_uri,
    settings_of,
)
from crm_app.db_pool import ping_after_idle
from crm_app.extensions import csrf, db, htmx, limiter, login_manager, migrate
from crm_app.instance_files import protect_instance


class DripFlask(Flask):
    config_class = VersionedConfig


def create_app(config: dict[str, Any] | None = None) -> Flask:
    app = DripFlask(
        __name__,
        instance_path=str(INSTANCE_PATH),
        template_folder=str(PROJECT_ROOT / "templates"),
        static_folder=str(PROJECT_ROOT / "static"),
    )
    app.config.update(load_settings().flask_config())
    if config:
        app.config.update(config)
    app.config.setdefault(
        "SQLALCHEMY_ENGINE_OPTIONS", engine_options(Settings.from_config(app.config))
    )
    protect_instance(INSTANCE_PATH, app.config["SQLALCHEMY_DATABASE_URI"])

    from crm_app.web.body_limits import init_body_limits
    from crm_app.web.nul_guard import init_nul_guard
    from crm_app.web.read_only_requests import init_read_only_requests
    from crm_app.web.security_headers import init_security_headers
    from crm_app.web.session_cookie import init_session_cookie

    db.init_app(app)
    with app.app_context():
        if db.engine.dialect.name == "postgresql":
            ping_after_idle(db.engine, settings_of(app).db_ping_after_idle_seconds)
    migrate.init_app(app, db, directory=str(PROJECT_ROOT / "migrations"))
    login_manager.init_app(app)
    init_session_cookie(app)
    # Body limits first: the limiter and CSRFProtect read the form in their own hooks.
    init_body_limits(app)
    init_nul_guard(app)
    init_security_headers(app)
    app.config.setdefault(
        "RATELIMIT_STORAGE_URI", rate_limit_storage_uri(settings_of(app).redis_url)
    )
    limiter.init_app(app)
    csrf.init_app(app)
    htmx.init_app(app)

    from crm_app import models  # noqa: F401  (registers the tables)
    from crm_app.cli import register_cli
    from crm_app.outbound_dispatch import install_dispatch
    from crm_app.web import register_web

    with app.app_context():
        install_dispatch(app, db.engine)
    register_web(app)
    register_cli(app)
    init_read_only_requests(app)
    return app
