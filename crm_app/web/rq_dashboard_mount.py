"""rq-dashboard mounted at /admin/rq, for admins only, on the app's Redis.

rq-dashboard 0.9.0 has two holes we close here (reported upstream; see README "Security"):
its jobs script writes the queue name from the URL into JavaScript unescaped (our copy of
templates/rq_dashboard/scripts/jobs.js writes it as JSON, and a queue name that is not a
real queue is a 404 before any template runs), and `GET /requeue/<queue>` changes state
(every route that accepts POST is refused on GET here).
"""

from __future__ import annotations

from urllib.parse import urlsplit

import rq_dashboard
from flask import Flask, abort, current_app, redirect, request, url_for
from flask_login import current_user
from rq import Queue
from rq.job import Job
from werkzeug.exceptions import MethodNotAllowed

from crm_app.config import settings_of
from crm_app.extensions import csrf, login_manager


def _same_origin(url: str | None) -> bool:
    return bool(url) and urlsplit(url).netloc == request.host


def _known_queue_names() -> set[str]:
    queues = Queue.all(connection=current_app.redis_conn)
    return {queue.name for queue in queues} | {settings_of(current_app).rq_queue}


def _refuse_bad_addresses(view_args: dict) -> None:
    """404 for a Redis instance, a queue or a job that does not exist: the dashboard
    would otherwise render a made-up queue name into its pages, or raise a 500 (a job
    page or a requeue of a job RQ has since expired). Its delete answers one itself."""
    instance = view_args.get("instance_number")
    instances = current_app.config.get("RQ_DASHBOARD_REDIS_URL") or ()
    if instance is not None and instance >= len(instances):
        abort(404)
    queue_name = view_args.get("queue_name")
    if queue_name is not None and queue_name not in _known_queue_names():
        abort(404)
    job_id = view_args.get("job_id")
    if job_id is not None and request.endpoint != "rq_dashboard.delete_job_view":
        if not Job.exists(job_id, connection=current_app.redis_conn):
            abort(404)


def _admin_guard():
    if not current_user.is_authenticated:
        return login_manager.unauthorized()
    if not current_user.is_admin:
        abort(403)
    rule = request.url_rule
    if rule is not None and "POST" in (rule.methods or ()) and request.method != "POST":
        # A state change answers to POST only (upstream also requeues on GET).
        raise MethodNotAllowed(valid_methods=["POST"])
    # Its own POSTs (requeue, delete, empty) carry no CSRF token: we exempt the
    # blueprint from CSRFProtect and instead refuse cross-site POSTs by Origin.
    if request.method not in ("GET", "HEAD", "OPTIONS"):
        origin = request.headers.get("Origin") or request.headers.get("Referer")
        if not _same_origin(origin):
            abort(403, "cross-site request refused")
    _refuse_bad_addresses(request.view_args or {})
    return _jobs_of_our_queue(request.view_args or {})


def _jobs_of_our_queue(view_args: dict):
    """The Jobs tab with no queue chosen shows RQ's "default" queue, which this app
    never uses (its page then asked for a queue that is not there and stayed on
    "Loading..."): it opens on the app's own queue instead."""
    if request.endpoint != "rq_dashboard.jobs_overview" or view_args.get("queue_name"):
        return None
    return redirect(
        url_for(
            "rq_dashboard.jobs_overview",
            instance_number=view_args.get("instance_number", 0),
            queue_name=settings_of(current_app).rq_queue,
            registry_name="queued",
            per_page=8,
            order="asc",
            page=1,
        )
    )


# Flask 3 refuses hooks on a blueprint once registered: attach once, at import. First in
# line, before rq-dashboard's own hook, which opens Redis connections for any visitor.
rq_dashboard.blueprint.before_request_funcs.setdefault(None, []).insert(0, _admin_guard)


def mount_rq_dashboard(app: Flask) -> None:
    app.config.setdefault("RQ_DASHBOARD_REDIS_URL", app.config["REDIS_URL"])
    csrf.exempt(rq_dashboard.blueprint)
    app.register_blueprint(rq_dashboard.blueprint, url_prefix="/admin/rq")
    if app.config["RQ_DASHBOARD_REDIS_URL"]:
        rq_dashboard.web.setup_rq_connection(app)
