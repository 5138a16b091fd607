"""The workspace's Settings page (the sender for contacts with no owner) and the
audit log (admins)."""

from __future__ import annotations

from flask import Blueprint, current_app, render_template, request, url_for

from crm_app.config import settings_of
from crm_app.drip.team.audit import (
    AUDIT_KINDS,
    AuditFilter,
    AuditFilterError,
    audit_users,
    parse_audit_filter,
    search_audit,
)
from crm_app.drip.team.workspace import (
    WorkspaceSettingsError,
    save_sender_settings,
    saved_sender_settings,
    sender_preview,
    workspace_sender,
)
from crm_app.extensions import db
from crm_app.web.auth import admin_required
from crm_app.web.filters import viewer_timezone
from crm_app.web.htmx import action_response, render_fragment_or_page
from crm_app.web.users import me

bp = Blueprint("workspace", __name__)


def _render_settings(status: int = 200, **extra):
    settings = settings_of(current_app)
    from_line, signature = sender_preview(db.session, None, settings)
    context = {
        "values": extra.pop("values", None) or saved_sender_settings(db.session),
        "errors": extra.pop("errors", {}),
        "default_name": settings.mail_from_name,
        "from_line": from_line,
        "signature": signature,
        "workspace": workspace_sender(db.session, settings),
    }
    return render_template("workspace/settings.html", **context), status


@bp.route("/settings", methods=["GET", "POST"])
@admin_required
def settings():
    if request.method != "POST":
        return _render_settings()
    try:
        changed = save_sender_settings(db.session, request.form, actor=me())
    except WorkspaceSettingsError as refused:
        db.session.rollback()
        return _render_settings(422, values=request.form, errors=refused.errors)
    db.session.commit()
    message = "Settings saved." if changed else "Nothing changed."
    return action_response(url_for("workspace.settings"), message)


@bp.get("/audit")
@admin_required
def audit():
    users = audit_users(db.session)
    errors = {}
    try:
        audit_filter = parse_audit_filter(request.args, user_ids={u.id for u in users})
    except AuditFilterError as refused:
        audit_filter, errors = AuditFilter(), {refused.field: str(refused)}
    result = search_audit(
        db.session,
        audit_filter,
        tz_name=viewer_timezone(),
        page=request.args.get("page", 1, type=int),
    )
    page = render_fragment_or_page(
        "workspace/_audit_list.html",
        "workspace/audit.html",
        target="audit-list",
        result=result,
        users=users,
        kinds=AUDIT_KINDS,
        form=request.args,
        errors=errors,
    )
    return page, (422 if errors else 200)
