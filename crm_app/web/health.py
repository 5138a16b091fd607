"""GET /health: JSON for load balancers and monitors; 200 when able to send, else 503.

Anyone may ask whether the app is healthy; only a logged-in user, a monitor sending
HEALTH_TOKEN, or a caller from HEALTH_NETWORKS sees the checks and figures (the schema
revision, queue depth and failure counts tell an attacker more than they tell a user).
"""

from __future__ import annotations

import hmac
import ipaddress
from functools import lru_cache

from flask import Blueprint, current_app, jsonify, request
from flask_login import current_user

from crm_app.config import settings_of
from crm_app.drip.audience.address_hash import erasure_key, key_id
from crm_app.drip.reporting.health import check_health
from crm_app.extensions import db

bp = Blueprint("health", __name__)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def current_health():
    settings = settings_of(current_app)
    return check_health(
        db.session,
        db.metadata,
        redis_url=settings.redis_url,
        queue_name=settings.rq_queue,
        erasure_key_id=key_id(erasure_key(settings)),
    )


@lru_cache(maxsize=8)
def _networks(setting: str) -> tuple[Network, ...]:
    networks = []
    for part in filter(None, (p.strip() for p in setting.split(","))):
        try:
            networks.append(ipaddress.ip_network(part, strict=False))
        except ValueError:
            # Fail closed: a typo grants nothing (and says so).
            current_app.logger.warning("HEALTH_NETWORKS: %r is not a network; ignored", part)
    return tuple(networks)


def _may_see_details() -> bool:
    if current_user.is_authenticated:
        return True
    settings = settings_of(current_app)
    scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
    if settings.health_token and scheme.lower() == "bearer":
        if hmac.compare_digest(presented.encode(), settings.health_token.encode()):
            return True
    try:
        address = ipaddress.ip_address(request.remote_addr or "")
    except ValueError:
        return False
    return any(address in network for network in _networks(settings.health_networks))


@bp.get("/health")
def health():
    report = current_health()
    body = report.as_dict() if _may_see_details() else {"status": report.as_dict()["status"]}
    return jsonify(body), (200 if report.ok else 503)
