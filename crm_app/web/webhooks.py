"""Inbound webhooks. CSRF does not apply here: SendGrid's signature does (Event
Webhook), or the secret in the URL (Inbound Parse)."""

from __future__ import annotations

import hmac

from flask import Blueprint, abort, current_app, jsonify, request
from werkzeug.exceptions import RequestEntityTooLarge

from crm_app.config import settings_of
from crm_app.drip.audience.address_hash import erasure_key
from crm_app.drip.common.nul import load_json_without_nul
from crm_app.drip.tracking.events import MalformedBatch, ingest_events
from crm_app.drip.tracking.inbound_parse import (
    MAX_PARTS,
    InboundParseError,
    read_inbound_post,
)
from crm_app.drip.tracking.replies import record_reply
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
        # A NUL in SendGrid's data is kept as U+FFFD: PostgreSQL refuses one in text.
        payload = load_json_without_nul(raw_body)
        result = ingest_events(db.session, payload, hash_key=erasure_key(settings))
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


READ_SIZE = 64 * 1024


@bp.post("/inbound/<secret>")
@csrf.exempt
def inbound_parse(secret: str):
    """SendGrid's Inbound Parse: a reply to one of our emails. Any 2xx tells SendGrid
    it arrived (a reply to nothing of ours is ignored with a 200: retrying cannot help);
    a 5xx makes it retry for three days."""
    settings = settings_of(current_app)
    expected = settings.inbound_parse_secret
    if not expected or not hmac.compare_digest(secret.encode(), expected.encode()):
        abort(404)  # off, or a wrong secret: nothing here to find
    limit = settings.inbound_parse_max_bytes
    if request.content_length is not None and request.content_length > limit:
        return jsonify(error=f"the post is over {limit} bytes"), 413
    request.max_content_length = limit  # a post without Content-Length stops there too
    try:
        chunks = iter(lambda: request.stream.read(READ_SIZE), b"")
        inbound = read_inbound_post(request.content_type or "", chunks)
    except InboundParseError as broken:
        return jsonify(error=str(broken)), 400
    except RequestEntityTooLarge:
        return jsonify(error=f"the post is over {limit} bytes or {MAX_PARTS} parts"), 413
    outcome = record_reply(db.session, inbound, settings)
    db.session.commit()
    current_app.logger.info("Inbound Parse: %s (%s)", outcome.status, outcome.detail)
    return jsonify(status=outcome.status, detail=outcome.detail, stopped=bool(outcome.stopped))
