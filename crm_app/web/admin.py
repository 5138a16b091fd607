"""Admin pages for delivery: failed and in-doubt messages with their actions, the Outbox."""

from __future__ import annotations

from datetime import timedelta

from flask import Blueprint, abort, current_app, render_template, request, url_for

from crm_app.config import settings_of
from crm_app.drip.campaigns.harness import recent_test_sends
from crm_app.drip.delivery.admin_actions import (
    ADMIN_ACTIONS,
    DeliveryActionError,
    actions_for,
    perform_admin_action,
)
from crm_app.drip.delivery.backends import sends_to_outbox
from crm_app.drip.reporting.message_lists import ADMIN_LISTS, admin_message_list, outbox_page
from crm_app.drip.tracking.reply_tokens import reply_address
from crm_app.extensions import db
from crm_app.models import Message
from crm_app.queue import enqueue_messages
from crm_app.web.auth import actor_name, admin_required
from crm_app.web.htmx import action_response

bp = Blueprint("admin", __name__, url_prefix="/admin")

LIST_TITLES = {"failed": "Failed messages", "in_doubt": "Messages in doubt"}


@bp.get("/messages")
@admin_required
def messages():
    status = request.args.get("status", "failed")
    if status not in ADMIN_LISTS:
        abort(404)
    settings = settings_of(current_app)
    hours = settings.in_doubt_no_trace_hours
    listing = admin_message_list(
        db.session,
        status,
        page=request.args.get("page", 1, type=int),
        no_trace_after=timedelta(hours=hours),
    )
    return render_template(
        "admin/messages.html",
        status=status,
        title=LIST_TITLES[status],
        listing=listing,
        no_trace_hours=hours,
        auto_resolve_minutes=f"{settings.in_doubt_auto_resolve_minutes:g}",
        actions=actions_for(status),
    )


@bp.post("/messages/<int:message_id>/<action>")
@admin_required
def message_action(message_id: int, action: str):
    if action not in ADMIN_ACTIONS:
        abort(404)
    message = db.get_or_404(Message, message_id)
    back = url_for("admin.messages", status=message.status)
    try:
        done = perform_admin_action(
            db.session, message, action, actor=actor_name(), enqueue=enqueue_messages
        )
    except DeliveryActionError as refused:
        return action_response(back, str(refused), "error")
    return action_response(back, f"Email #{message.id} to {message.to_email}: {done}.")


@bp.get("/outbox")
@admin_required
def outbox():
    return render_template(
        "admin/outbox.html",
        listing=outbox_page(db.session, page=request.args.get("page", 1, type=int)),
        tests=recent_test_sends(db.session),
        from_address=settings_of(current_app).mail_from_email,
        kept_here_now=sends_to_outbox(settings_of(current_app)),
    )


@bp.get("/outbox/<int:message_id>")
@admin_required
def outbox_message(message_id: int):
    message = db.get_or_404(Message, message_id)
    settings = settings_of(current_app)
    reply_to = reply_address(message.id, settings) or settings.mail_reply_to
    return render_template(
        "admin/outbox_message.html",
        message=message,
        reply_to=reply_to,
        from_address=settings.mail_from_email,
    )
