"""Admin pages for other systems: API tokens, and outbound webhook endpoints with their
delivery logs. A new token or endpoint secret is shown once, in the answer to the POST
that made it: a secret must not travel in a redirect (the session cookie is signed, not
encrypted; a URL stays in the history), and only its hash (a token) or the endpoint row
keeps it."""

from __future__ import annotations

from datetime import timedelta

from flask import Blueprint, abort, current_app, flash, render_template, request, url_for

from crm_app.config import settings_of
from crm_app.drip.api.tokens import (
    SCOPE_LABELS,
    TokenError,
    create_token,
    list_tokens,
    revoke_token,
)
from crm_app.drip.outbound.deliveries import RedeliveryError, delivery_log, redeliver
from crm_app.drip.outbound.endpoints import (
    EndpointError,
    create_endpoint,
    delete_endpoint,
    list_endpoints,
    rotate_secret,
    update_endpoint,
)
from crm_app.drip.outbound.events import EVENT_TYPES
from crm_app.extensions import db
from crm_app.models import ApiToken, WebhookDelivery, WebhookEndpoint
from crm_app.web.auth import actor_name, admin_required
from crm_app.web.htmx import action_response, render_fragment_or_page

bp = Blueprint("integrations", __name__, url_prefix="/admin/integrations")


def _allow_private() -> bool:
    return settings_of(current_app).webhook_allow_private_targets


def _index(status: int = 200, **extra):
    context = dict(
        tokens=list_tokens(db.session),
        endpoints=list_endpoints(db.session),
        scope_labels=SCOPE_LABELS,
        event_types=EVENT_TYPES,
        token_form={"name": "", "scope": "read_write"},
        token_errors={},
        endpoint_form={"url": "", "description": "", "event_types": list(EVENT_TYPES)},
        endpoint_errors={},
        new_token=None,  # {"name", "secret"}: only in the answer to the POST that made it
    )
    context.update(extra)
    # The token form and the revoke buttons swap only the tokens' section.
    page = render_fragment_or_page(
        "integrations/_tokens.html", "integrations/index.html", target="api-tokens", **context
    )
    return page, status


@bp.get("/")
@admin_required
def index():
    return _index()


@bp.post("/tokens")
@admin_required
def new_token():
    form = {"name": request.form.get("name", ""), "scope": request.form.get("scope", "")}
    try:
        token, secret = create_token(db.session, form["name"], form["scope"], actor=actor_name())
    except TokenError as refused:
        db.session.rollback()
        return _index(422, token_form=form, token_errors=refused.errors)
    db.session.commit()
    # Shown at once (the tokens' section for htmx, else the page), never redirected.
    return _index(201, new_token={"name": token.name, "secret": secret})


@bp.post("/tokens/<int:token_id>/revoke")
@admin_required
def revoke(token_id: int):
    token = db.get_or_404(ApiToken, token_id)
    revoked = revoke_token(db.session, token, actor=actor_name())
    db.session.commit()
    message = (
        f"Revoked the token {token.name}." if revoked else f"{token.name} was revoked already."
    )
    return action_response(url_for("integrations.index"), message, fragment=_index)


def _endpoint_form() -> dict:
    return {
        "url": request.form.get("url", ""),
        "description": request.form.get("description", ""),
        "event_types": request.form.getlist("event_types"),
        "enabled": request.form.get("enabled") == "on",
    }


@bp.post("/webhooks")
@admin_required
def new_endpoint():
    form = _endpoint_form()
    try:
        endpoint, secret = create_endpoint(
            db.session,
            form["url"],
            form["event_types"],
            description=form["description"],
            actor=actor_name(),
            allow_private=_allow_private(),
        )
    except EndpointError as refused:
        db.session.rollback()
        return _index(422, endpoint_form=form, endpoint_errors=refused.errors)
    db.session.commit()
    flash(f"Added the endpoint {endpoint.url}. Copy its signing secret now.", "success")
    return _endpoint_page(endpoint, 201, new_secret=secret)  # shown at once, never redirected


def _endpoint_page(endpoint: WebhookEndpoint, status: int = 200, **extra):
    context = dict(
        endpoint=endpoint,
        event_types=EVENT_TYPES,
        form={
            "url": endpoint.url,
            "description": endpoint.description,
            "event_types": endpoint.event_types,
            "enabled": endpoint.enabled,
        },
        errors={},
        log=delivery_log(db.session, endpoint, page=request.args.get("page", 1, type=int)),
        new_secret=None,  # only in the answer to the POST that made it
    )
    context.update(extra)
    return render_template("integrations/endpoint.html", **context), status


def _live_endpoint(endpoint_id: int) -> WebhookEndpoint:
    endpoint = db.get_or_404(WebhookEndpoint, endpoint_id)
    if endpoint.deleted_at is not None:
        abort(404)
    return endpoint


@bp.get("/webhooks/<int:endpoint_id>")
@admin_required
def endpoint(endpoint_id: int):
    return _endpoint_page(_live_endpoint(endpoint_id))


@bp.post("/webhooks/<int:endpoint_id>")
@admin_required
def edit_endpoint(endpoint_id: int):
    endpoint = _live_endpoint(endpoint_id)
    form = _endpoint_form()
    try:
        update_endpoint(
            db.session,
            endpoint,
            form["url"],
            form["event_types"],
            description=form["description"],
            enabled=form["enabled"],
            actor=actor_name(),
            allow_private=_allow_private(),
        )
    except EndpointError as refused:
        db.session.rollback()
        return _endpoint_page(_live_endpoint(endpoint_id), 422, form=form, errors=refused.errors)
    db.session.commit()
    back = url_for("integrations.endpoint", endpoint_id=endpoint.id)
    return action_response(back, f"Saved the endpoint {endpoint.url}.")


@bp.post("/webhooks/<int:endpoint_id>/secret")
@admin_required
def new_secret(endpoint_id: int):
    endpoint = _live_endpoint(endpoint_id)
    secret = rotate_secret(db.session, endpoint, actor=actor_name())
    db.session.commit()
    flash("A new signing secret: copy it now, then update the receiver.", "success")
    return _endpoint_page(endpoint, new_secret=secret)  # shown at once, never redirected


@bp.post("/webhooks/<int:endpoint_id>/delete")
@admin_required
def remove_endpoint(endpoint_id: int):
    endpoint = _live_endpoint(endpoint_id)
    delete_endpoint(db.session, endpoint, actor=actor_name())
    db.session.commit()
    return action_response(url_for("integrations.index"), f"Deleted the endpoint {endpoint.url}.")


@bp.post("/webhooks/<int:endpoint_id>/deliveries/<int:delivery_id>/redeliver")
@admin_required
def redeliver_event(endpoint_id: int, delivery_id: int):
    delivery = db.get_or_404(WebhookDelivery, delivery_id)
    if delivery.endpoint_id != endpoint_id:
        abort(404)
    back = url_for("integrations.endpoint", endpoint_id=endpoint_id)
    lease = timedelta(seconds=settings_of(current_app).webhook_lease_seconds)
    try:
        redeliver(db.session, delivery, lease=lease)
        db.session.commit()  # then the dispatch puts it on Redis
        message, category = f"{delivery.event_type} {delivery.event_id}: sent again.", "success"
    except RedeliveryError as refused:
        db.session.rollback()
        message, category = str(refused), "error"

    def log_fragment():  # htmx: the log alone, with the message in it
        endpoint = db.session.get(WebhookEndpoint, endpoint_id)
        return render_template(
            "integrations/_deliveries.html",
            endpoint=endpoint,
            log=delivery_log(db.session, endpoint, page=request.args.get("page", 1, type=int)),
            log_message=(category, message),
        )

    return action_response(back, message, category, fragment=log_fragment)
