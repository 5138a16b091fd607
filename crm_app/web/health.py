"""GET /health: JSON for load balancers and monitors; 200 when able to send, else 503."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify

from crm_app.config import settings_of
from crm_app.drip.audience.address_hash import erasure_key, key_id
from crm_app.drip.reporting.health import check_health
from crm_app.extensions import db

bp = Blueprint("health", __name__)


def current_health():
    settings = settings_of(current_app)
    return check_health(
        db.session,
        db.metadata,
        redis_url=settings.redis_url,
        queue_name=settings.rq_queue,
        erasure_key_id=key_id(erasure_key(settings)),
    )


@bp.get("/health")
def health():
    report = current_health()
    return jsonify(report.as_dict()), (200 if report.ok else 503)
