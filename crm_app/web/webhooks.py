"""Inbound webhooks. CSRF does not apply here; SendGrid's signature does."""

from __future__ import annotations

import json

from flask import Blueprint, current_app, jsonify, request

from crm_app.config import settings_of
from crm_app.drip.tracking.events import MalformedBatch, ingest_events
from crm_app.drip.tracking.signature import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WebhookSignatureError,
    verify_event_webhook,
)
from crm_app.extensions import csrf, db
from crm_app.web.body_limits import body_limit

bp = Blueprint("webhooks", __name__, url_prefix="/webhooks")


@bp.post("/sendgrid")
@body_limit("webhook_max_bytes")
@csrf.exempt
def sendgrid_events():
    # Read only up to WEBHOOK_MAX_BYTES (else 413), before the signature can be checked.
    raw_body = request.get_data(cache=False)
    settings = settings_of(current_app)
    try:
        verify_event_webhook(
            settings.sendgrid_webhook_public_key,
            raw_body,
            request.headers.get(SIGNATURE_HEADER),
            request.headers.get(TIMESTAMP_HEADER),
            tolerance_seconds=settings.sendgrid_webhook_tolerance_seconds,
        )
    except WebhookSignatureError as refused:
        current_app.logger.warning(
            "SendGrid webhook refused from %s: %s", request.remote_addr, refused
        )
        return jsonify(error=f"signature verification failed: {refused}"), 403
    try:
        payload = json.loads(raw_body)
        result = ingest_events(db.session, payload)
    except (ValueError, MalformedBatch) as malformed:
        db.session.rollback()
        current_app.logger.warning("SendGrid webhook body unreadable: %s", malformed)
        return jsonify(error=f"malformed body: {malformed}"), 400
    db.session.commit()
    if result.rejected:
        current_app.logger.warning(
            "SendGrid webhook: %d event(s) rejected: %s", result.rejected, result.rejections[:5]
        )
    return jsonify(
        received=result.received,
        applied=result.applied,
        duplicates=result.duplicates,
        rejected=result.rejected,
    )
