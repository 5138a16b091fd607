"""GET /health: JSON for load balancers and monitors; 200 when able to send, else 503."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify

from crm_app.drip.reporting.health import check_health
from crm_app.extensions import db

bp = Blueprint("health", __name__)


def current_health():
    return check_health(
        db.session,
        db.metadata,
        redis_url=current_app.config.get("REDIS_URL"),
        queue_name=current_app.config["RQ_QUEUE"],
    )


@bp.get("/health")
def health():
    report = current_health()
    return jsonify(report.as_dict()), (200 if report.ok else 503)
