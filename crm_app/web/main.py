from __future__ import annotations

from flask import Blueprint, current_app, redirect, render_template, url_for
from flask_login import current_user, login_required

from crm_app.config import settings_of
from crm_app.drip.reporting.dashboard import home_dashboard
from crm_app.drip.reporting.message_lists import ADMIN_LISTS
from crm_app.extensions import db
from crm_app.web.filters import viewer_timezone

bp = Blueprint("main", __name__)


def _admin_message_links() -> dict[str, str]:
    """Links to the admin message lists, for admins."""
    if not current_user.is_admin:
        return {}
    return {status: url_for("admin.messages", status=status) for status in ADMIN_LISTS}


@bp.get("/")
@login_required
def home():
    dashboard = home_dashboard(
        db.session,
        tz_name=viewer_timezone(),
        expects_webhook=bool(settings_of(current_app).sendgrid_api_key),
    )
    return render_template(
        "main/home.html",
        dashboard=dashboard,
        outbox_mode=not settings_of(current_app).sendgrid_api_key,
        message_links=_admin_message_links(),
    )


@bp.get("/favicon.ico")
def favicon():
    return redirect(url_for("static", filename="favicon.svg"))
