"""Campaign results: the overview, one campaign's page with charts, and its CSV."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, render_template, request
from flask_login import login_required
from werkzeug.http import dump_options_header

from crm_app.config import settings_of
from crm_app.drip.common.headers import header_safe
from crm_app.drip.experiments.summary import campaign_tests
from crm_app.drip.reporting.analytics import campaign_report, campaigns_overview
from crm_app.drip.reporting.analytics_export import chart_data, report_csv
from crm_app.drip.reporting.date_range import (
    AnalyticsRangeError,
    DateRange,
    default_range,
    parse_range,
)
from crm_app.extensions import db
from crm_app.models import Campaign, utcnow

bp = Blueprint("analytics", __name__, url_prefix="/analytics")


def _period() -> tuple[DateRange, str]:
    """The range asked for, or the default one with a message saying why."""
    today = utcnow().date()
    try:
        return parse_range(request.args.get("start"), request.args.get("end"), today=today), ""
    except AnalyticsRangeError as bad:
        return default_range(today), f"{bad} Showing the last 30 days instead."


@bp.get("/")
@login_required
def index():
    period, range_error = _period()
    overview = campaigns_overview(db.session, period)
    return render_template(
        "analytics/index.html", overview=overview, period=period, range_error=range_error
    )


@bp.get("/campaigns/<int:campaign_id>")
@login_required
def campaign(campaign_id: int):
    campaign = db.get_or_404(Campaign, campaign_id)
    period, range_error = _period()
    report = campaign_report(db.session, campaign, period)
    return render_template(
        "analytics/campaign.html",
        campaign=campaign,
        report=report,
        period=period,
        range_error=range_error,
        charts=chart_data(report),
        ab_tests=campaign_tests(
            db.session,
            campaign,
            min_sends=settings_of(current_app).ab_min_sends_per_variant,
        ),
    )


@bp.get("/campaigns/<int:campaign_id>.csv")
@login_required
def campaign_csv(campaign_id: int):
    campaign = db.get_or_404(Campaign, campaign_id)
    try:
        period = parse_range(
            request.args.get("start"), request.args.get("end"), today=utcnow().date()
        )
    except AnalyticsRangeError as bad:
        # A file with other dates than asked for would mislead: say what is wrong instead.
        return Response(f"{bad}\n", status=400, mimetype="text/plain")
    report = campaign_report(db.session, campaign, period)
    filename = f"{campaign.slug}-{period.first.isoformat()}-{period.last.isoformat()}.csv"
    return Response(
        report_csv(report),
        mimetype="text/csv",
        # Quoted and on one line whatever the slug holds.
        headers={
            "Content-Disposition": dump_options_header(
                "attachment", {"filename": header_safe(filename)}
            )
        },
    )
