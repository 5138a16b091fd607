"""A campaign report as CSV (safe in a spreadsheet) and as the charts' JSON."""

from __future__ import annotations

import csv
import io

from crm_app.drip.common.csv_safe import csv_safe
from crm_app.drip.reporting.analytics import CampaignReport, Counts

CSV_HEADER = (
    "step",
    "subject",
    "sent",
    "delivered",
    "delivered_pct",
    "unique_opens",
    "open_pct",
    "unique_clicks",
    "click_pct",
    "bounces",
    "bounce_pct",
    "spam_reports",
    "spam_pct",
    "unsubscribes",
    "unsubscribe_pct",
    # The page's human columns (Apple's privacy proxy and link scanners left out), last so
    # that a sheet reading the columns above by position still reads them.
    "human_opens",
    "human_open_pct",
    "human_clicks",
    "human_click_pct",
)


def _csv_row(step: str, subject: str, c: Counts) -> list:
    def rate(value: float | None) -> str:
        return "" if value is None else f"{value:.1f}"

    return [
        step,
        csv_safe(subject),
        c.sent,
        c.delivered,
        rate(c.delivery_rate),
        c.opened,
        rate(c.open_rate),
        c.clicked,
        rate(c.click_rate),
        c.bounced,
        rate(c.bounce_rate),
        c.spam_reports,
        rate(c.spam_rate),
        c.unsubscribed,
        rate(c.unsubscribe_rate),
        c.human_opened,
        rate(c.human_open_rate),
        c.human_clicked,
        rate(c.human_click_rate),
    ]


def report_csv(report: CampaignReport) -> str:
    """The per-step table as CSV: a header row, one row per step, then the totals row."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_HEADER)
    for row in report.steps:
        writer.writerow(_csv_row(str(row.position or "removed"), row.subject, row.counts))
    writer.writerow(_csv_row("total", "", report.summary.counts))
    return out.getvalue()


def chart_data(report: CampaignReport) -> dict:
    """What the page's charts draw, as plain JSON."""
    return {
        "days": [point.day.isoformat() for point in report.series],
        "sent": [point.sent for point in report.series],
        "opened": [point.opened for point in report.series],
        "clicked": [point.clicked for point in report.series],
        "funnel": {
            "labels": [f"Email {position}" for position, _ in report.funnel],
            "sent": [sent for _, sent in report.funnel],
        },
    }
