"""SendGrid Event Webhook signature check (ECDSA P-256 over timestamp + raw body)."""

from __future__ import annotations

import binascii
import time

from sendgrid.helpers.eventwebhook import EventWebhook

SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"


class WebhookSignatureError(Exception):
    """The request is not provably from SendGrid; the message says why (for the log)."""


def verify_event_webhook(
    public_key_b64: str | None,
    raw_body: bytes,
    signature: str | None,
    timestamp: str | None,
    *,
    tolerance_seconds: int = 600,
    now: float | None = None,
) -> None:
    """Raise WebhookSignatureError unless the body is signed by SendGrid's key, recently."""
    if not public_key_b64:
        raise WebhookSignatureError("no SENDGRID_WEBHOOK_PUBLIC_KEY is configured")
    if not signature or not timestamp:
        raise WebhookSignatureError("signature or timestamp header missing")
    try:
        signed_at = int(timestamp)
    except ValueError:
        raise WebhookSignatureError("timestamp header is not an integer") from None
    # A stale timestamp means a replayed capture, even with a valid signature.
    current = time.time() if now is None else now
    if abs(current - signed_at) > tolerance_seconds:
        raise WebhookSignatureError(f"timestamp is {int(current - signed_at)} s away from now")
    try:
        body = raw_body.decode("utf-8")
    except UnicodeDecodeError:
        raise WebhookSignatureError("body is not UTF-8") from None
    try:
        verifier = EventWebhook(public_key_b64)
    except ValueError as bad_key:
        raise WebhookSignatureError(f"the configured public key is unreadable: {bad_key}") from None
    try:
        valid = verifier.verify_signature(body, signature, timestamp)
    except (binascii.Error, ValueError):
        valid = False
    if not valid:
        raise WebhookSignatureError("signature does not match")
