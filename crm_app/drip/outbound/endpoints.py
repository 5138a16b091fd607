"""Webhook endpoints: registered by admins, with a Standard Webhooks secret shown once."""

from __future__ import annotations

import base64
import secrets
from collections.abc import Iterable
from datetime import datetime

import sqlalchemy as sa

from crm_app.drip.common.errors import FieldErrors
from crm_app.drip.outbound.addresses import Resolver, system_resolver, url_problem
from crm_app.drip.outbound.events import EVENT_TYPES, invalidate_subscriptions
from crm_app.drip.team.audit import record_audit
from crm_app.models import WebhookEndpoint, utcnow

URL_MAX = 2000
DESCRIPTION_MAX = 200
SECRET_PREFIX = "whsec_"


class EndpointError(FieldErrors):
    """An endpoint form that cannot be saved as it is."""


def new_secret() -> str:
    """A Standard Webhooks secret: whsec_ + base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def _checked(
    url: str,
    event_types: Iterable[str],
    description: str,
    *,
    allow_private: bool,
    resolve: Resolver,
) -> tuple[str, list[str], str]:
    url, description = (url or "").strip(), " ".join((description or "").split())
    chosen = [t for t in EVENT_TYPES if t in set(event_types)]  # known ones, in our order
    errors = {}
    if not url:
        errors["url"] = "Enter the URL to send events to."
    elif len(url) > URL_MAX:
        errors["url"] = f"At most {URL_MAX} characters."
    elif problem := url_problem(url, allow_private=allow_private, resolve=resolve):
        errors["url"] = problem
    unknown = set(event_types) - set(EVENT_TYPES)
    if unknown:
        errors["event_types"] = f"Unknown event type: {', '.join(sorted(unknown))}."
    elif not chosen:
        errors["event_types"] = "Choose at least one event."
    if len(description) > DESCRIPTION_MAX:
        errors["description"] = f"At most {DESCRIPTION_MAX} characters."
    if errors:
        raise EndpointError(errors)
    return url, chosen, description


def create_endpoint(
    session,
    url: str,
    event_types: Iterable[str],
    *,
    description: str = "",
    actor: str,
    allow_private: bool,
    resolve: Resolver = system_resolver,
) -> tuple[WebhookEndpoint, str]:
    """A new, enabled endpoint and its secret (shown once; kept to sign with)."""
    url, chosen, description = _checked(
        url, list(event_types), description, allow_private=allow_private, resolve=resolve
    )
    secret = new_secret()
    endpoint = WebhookEndpoint(
        url=url,
        event_types=chosen,
        description=description,
        secret=secret,
        enabled=True,
        created_by=actor,
    )
    session.add(endpoint)
    session.flush()
    invalidate_subscriptions()
    summary = f"Added the webhook endpoint {url} ({', '.join(chosen)})"
    record_audit(session, actor, "created", "webhook_endpoint", endpoint.id, summary)
    return endpoint, secret


def update_endpoint(
    session,
    endpoint: WebhookEndpoint,
    url: str,
    event_types: Iterable[str],
    *,
    description: str = "",
    enabled: bool,
    actor: str,
    allow_private: bool,
    resolve: Resolver = system_resolver,
) -> WebhookEndpoint:
    """Save an admin's edit. Enabling a disabled endpoint clears its failure notice; its
    pending deliveries are picked up again by the sweep."""
    url, chosen, description = _checked(
        url, list(event_types), description, allow_private=allow_private, resolve=resolve
    )
    endpoint.url, endpoint.event_types, endpoint.description = url, chosen, description
    if enabled and not endpoint.enabled:
        endpoint.failing_since = None
        endpoint.disabled_reason = ""
    endpoint.enabled = enabled
    session.flush()
    invalidate_subscriptions()
    state = "enabled" if enabled else "disabled"
    summary = f"Saved the webhook endpoint {url} ({state}; {', '.join(chosen)})"
    record_audit(session, actor, "edited", "webhook_endpoint", endpoint.id, summary)
    return endpoint


def rotate_secret(session, endpoint: WebhookEndpoint, *, actor: str) -> str:
    """A new secret; every later attempt (retries included) is signed with it."""
    endpoint.secret = new_secret()
    summary = f"New signing secret for {endpoint.url}"
    record_audit(session, actor, "secret rotated", "webhook_endpoint", endpoint.id, summary)
    return endpoint.secret


def delete_endpoint(
    session, endpoint: WebhookEndpoint, *, actor: str, now: datetime | None = None
) -> None:
    """Stop sending to it for good. The row and its delivery log stay (the log may be
    needed to answer "did you send it?"); the secret does not."""
    endpoint.deleted_at = now or utcnow()
    endpoint.enabled = False
    endpoint.secret = new_secret()  # the old one leaves the database
    session.flush()
    invalidate_subscriptions()
    summary = f"Deleted the webhook endpoint {endpoint.url}"
    record_audit(session, actor, "deleted", "webhook_endpoint", endpoint.id, summary)


def list_endpoints(session) -> list[WebhookEndpoint]:
    return list(
        session.scalars(
            sa.select(WebhookEndpoint)
            .where(WebhookEndpoint.deleted_at.is_(None))
            .order_by(WebhookEndpoint.created_at, WebhookEndpoint.id)
        )
    )
