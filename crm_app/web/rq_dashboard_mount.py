"""rq-dashboard mounted at /admin/rq, for admins only, on the app's Redis."""

from __future__ import annotations

from urllib.parse import urlsplit

import rq_dashboard
from flask import Flask, abort, request
from flask_login import current_user

from crm_app.extensions import csrf, login_manager


def _same_origin(url: str | None) -> bool:
    return bool(url) and urlsplit(url).netloc == request.host


def _admin_guard():
    if not current_user.is_authenticated:
        return login_manager.unauthorized()
    if not current_user.is_admin:
        abort(403)
    # Its own POSTs (requeue, delete, empty) carry no CSRF token: we exempt the
    # blueprint from CSRFProtect and instead refuse cross-site POSTs by Origin.
    if request.method not in ("GET", "HEAD", "OPTIONS"):
        origin = request.headers.get("Origin") or request.headers.get("Referer")
        if not _same_origin(origin):
            abort(403, "cross-site request refused")
    return None


# Flask 3 refuses hooks on a blueprint once registered: attach once, at import.
rq_dashboard.blueprint.before_request(_admin_guard)


def mount_rq_dashboard(app: Flask) -> None:
    app.config.setdefault("RQ_DASHBOARD_REDIS_URL", app.config["REDIS_URL"])
    csrf.exempt(rq_dashboard.blueprint)
    app.register_blueprint(rq_dashboard.blueprint, url_prefix="/admin/rq")
    if app.config["RQ_DASHBOARD_REDIS_URL"]:
        rq_dashboard.web.setup_rq_connection(app)
