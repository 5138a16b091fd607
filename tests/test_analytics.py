"""Campaign analytics: hand-counted figures equal the core's, the page's and the CSV's."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import date
from html.parser import HTMLParser

import pytest
from test_analytics_data import (
    EXPECTED_A_DAILY,
    EXPECTED_A_STEPS,
    EXPECTED_A_TOTALS,
    EXPECTED_B_TOTALS,
    FIRST_DAY,
    LAST_DAY,
    build_analytics_fixture,
)

from crm_app.drip.reporting.analytics import Counts, campaign_report, campaigns_overview
from crm_app.drip.reporting.date_range import (
    AnalyticsRangeError,
    DateRange,
    default_range,
    parse_range,
)

PERIOD = DateRange(FIRST_DAY, LAST_DAY)
RANGE_QS = f"start={FIRST_DAY.isoformat()}&end={LAST_DAY.isoformat()}"


@pytest.fixture
def data(session, campaigns):
    return build_analytics_fixture(session, campaigns)


def as_tuple(c: Counts) -> tuple[int, ...]:
    return (c.sent, c.delivered, c.opened, c.clicked, c.bounced, c.spam_reports, c.unsubscribed)


def pct_text(part: int, whole: int) -> str:
    return "—" if whole == 0 else f"{100 * part / whole:.1f}%"


def row_texts(counts: tuple[int, ...]) -> list[str]:
    """How the page renders the seven count cells: the number, then its rate."""
    sent, delivered, opened, clicked, bounced, spam, unsub = counts
    return [
        str(sent),
        f"{delivered} {pct_text(delivered, sent)}",
        f"{opened} {pct_text(opened, delivered)}",
        f"{clicked} {pct_text(clicked, delivered)}",
        f"{bounced} {pct_text(bounced, sent)}",
        f"{spam} {pct_text(spam, delivered)}",
        f"{unsub} {pct_text(unsub, sent)}",
    ]


class TableRows(HTMLParser):
    """Text of each cell of the <tr>s of one table, by the row's data-* key."""

    def __init__(self, table_id: str, key: str):
        super().__init__()
        self.table_id, self.key = table_id, key
        self.inside = False
        self.rows: dict[str, list[str]] = {}
        self.row_key = None
        self.cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table":
            self.inside = attrs.get("id") == self.table_id
        elif self.inside and tag == "tr" and self.key in attrs:
            self.row_key = attrs[self.key]
            self.rows[self.row_key] = []
        elif self.inside and self.row_key and tag in ("td", "th"):
            self.cell = []

    def handle_endtag(self, tag):
        if tag == "table":
            self.inside = False
        elif tag in ("td", "th") and self.cell is not None:
            self.rows[self.row_key].append(" ".join("".join(self.cell).split()))
            self.cell = None
        elif tag == "tr":
            self.row_key = None

    def handle_data(self, data):
        if self.cell is not None:
            self.cell.append(data)


def table_rows(html: str, table_id: str, key: str) -> dict[str, list[str]]:
    parser = TableRows(table_id, key)
    parser.feed(html)
    return parser.rows


# --- the core ---


def test_campaign_report_per_step_and_totals_match_hand_counts(session, data):
    report = campaign_report(session, data["A"], PERIOD)
    assert {row.position: as_tuple(row.counts) for row in report.steps} == EXPECTED_A_STEPS
    assert as_tuple(report.summary.counts) == EXPECTED_A_TOTALS
    counts = report.summary.counts
    assert counts.delivery_rate == 83.3  # 5 of 6 sent
    assert counts.open_rate == 80.0  # 4 of 5 delivered
    assert counts.click_rate == 40.0
    assert counts.bounce_rate == 16.7  # 1 of 6 sent
    assert counts.spam_rate == 20.0
    assert counts.unsubscribe_rate == 16.7  # 1 of 6 sent
    assert report.funnel == [(1, 3), (2, 2), (3, 1), (4, 0), (5, 0), (6, 0)]


def test_unsubscribes_without_delivered_events_are_a_share_of_what_was_sent():
    """Our own unsubscribe link needs no SendGrid event: with one delivery reported and
    two unsubscribes, the rate read 200 %."""
    counts = Counts(sent=4, delivered=1, unsubscribed=2)
    assert counts.unsubscribe_rate == 50.0


def test_completion_counts_enrollments_ended_in_range(session, data):
    outcomes = campaign_report(session, data["A"], PERIOD).summary.outcomes
    # eA1 completed, eA2 stopped, eA0 (enrolled in January) completed.
    assert (outcomes.ended, outcomes.completed, outcomes.completion_rate) == (3, 2, 66.7)
    outcomes_b = campaign_report(session, data["B"], PERIOD).summary.outcomes
    assert (outcomes_b.ended, outcomes_b.completed, outcomes_b.completion_rate) == (1, 1, 100.0)


def test_conversion_counts_exactly_the_enrolments_an_exit_goal_ended(session, data):
    outcomes = campaign_report(session, data["A"], PERIOD).summary.outcomes
    # Only eA2 ended as converted; goal rows that ended no enrolment do not count.
    assert (outcomes.started, outcomes.converted, outcomes.conversion_rate) == (3, 1, 33.3)
    outcomes_b = campaign_report(session, data["B"], PERIOD).summary.outcomes
    assert (outcomes_b.started, outcomes_b.converted, outcomes_b.conversion_rate) == (2, 0, 0.0)


def test_overview_has_one_row_per_campaign_with_the_same_figures(session, data):
    overview = campaigns_overview(session, PERIOD)
    rows = {row.campaign_id: row for row in overview.rows}
    assert as_tuple(rows[data["A"].id].counts) == EXPECTED_A_TOTALS
    assert as_tuple(rows[data["B"].id].counts) == EXPECTED_B_TOTALS
    assert len(rows) == 4  # the two seeded campaigns without mail show zeros
    assert as_tuple(overview.totals) == tuple(
        a + b for a, b in zip(EXPECTED_A_TOTALS, EXPECTED_B_TOTALS, strict=True)
    )


def test_daily_series_counts_each_event_on_its_own_day(session, data):
    series = campaign_report(session, data["A"], PERIOD).series
    assert [point.day for point in series] == PERIOD.days  # every day, zeros included
    got = {p.day: (p.sent, p.opened, p.clicked) for p in series if p.sent or p.opened or p.clicked}
    assert got == EXPECTED_A_DAILY


def test_date_range_filters_on_sent_at(session, data):
    one_day = DateRange(date(2026, 3, 3), date(2026, 3, 3))
    report = campaign_report(session, data["A"], one_day)
    # m2 and m4 only: both delivered and opened, m4 reported as spam.
    assert as_tuple(report.summary.counts) == (2, 2, 2, 0, 0, 1, 0)
    assert [(p.day, p.sent, p.opened) for p in report.series] == [(date(2026, 3, 3), 2, 2)]
    # eA3 started that day and has not converted; nothing ended that day.
    outcomes = report.summary.outcomes
    assert (outcomes.started, outcomes.converted, outcomes.ended) == (1, 0, 0)
    assert outcomes.completion_rate is None
    later = campaign_report(session, data["A"], DateRange(date(2026, 3, 11), date(2026, 3, 11)))
    assert later.summary.counts.sent == 1  # m9, sent at 00:00 on the 11th


def test_parse_range_defaults_and_refusals():
    today = date(2026, 3, 31)
    assert parse_range(None, None, today=today) == default_range(today)
    assert default_range(today) == DateRange(date(2026, 3, 2), today)
    assert parse_range("2026-01-01", "", today=today) == DateRange(date(2026, 1, 1), today)
    for start, end in (("yesterday", ""), ("2026-02-30", ""), ("2026-03-05", "2026-03-01")):
        with pytest.raises(AnalyticsRangeError):
            parse_range(start, end, today=today)
    with pytest.raises(AnalyticsRangeError):
        parse_range("2000-01-01", "2026-01-01", today=today)


# --- the pages and the CSV show the same numbers ---


def test_campaign_page_shows_the_hand_counted_figures(staff, data):
    response = staff.get(f"/analytics/campaigns/{data['A'].id}?{RANGE_QS}")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    rows = table_rows(html, "step-table", "data-step")
    for position, counts in EXPECTED_A_STEPS.items():
        assert rows[str(position)][2:9] == row_texts(counts), position
    assert rows["total"][1:8] == row_texts(EXPECTED_A_TOTALS)
    assert 'data-figure="completion">66.7%' in html
    assert 'data-figure="conversion">33.3%' in html


def test_campaign_page_charts_read_their_data_from_a_json_block(staff, data):
    html = staff.get(f"/analytics/campaigns/{data['A'].id}?{RANGE_QS}").get_data(as_text=True)
    block = re.search(r'<script type="application/json" id="chart-data">(.*?)</script>', html, re.S)
    charts = json.loads(block.group(1))
    assert charts["days"][0] == "2026-03-01" and len(charts["days"]) == 10
    assert sum(charts["sent"]) == 6 and charts["sent"][2] == 2  # 03-03
    assert sum(charts["opened"]) == 4 and sum(charts["clicked"]) == 2
    assert charts["funnel"]["sent"] == [3, 2, 1, 0, 0, 0]
    assert "vendor/chart.umd.min.js" in html


def test_csv_has_a_header_the_step_rows_and_the_totals(staff, session, data):
    response = staff.get(f"/analytics/campaigns/{data['A'].id}.csv?{RANGE_QS}")
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    assert "attachment" in response.headers["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(response.get_data(as_text=True))))
    assert rows[0][:3] == ["step", "subject", "sent"]
    header = rows[0]
    by_step = {row[0]: dict(zip(header, row, strict=True)) for row in rows[1:]}
    assert list(by_step) == ["1", "2", "3", "4", "5", "6", "total"]
    columns = (
        "sent",
        "delivered",
        "unique_opens",
        "unique_clicks",
        "bounces",
        "spam_reports",
        "unsubscribes",
    )
    for position, counts in EXPECTED_A_STEPS.items():
        assert tuple(int(by_step[str(position)][c]) for c in columns) == counts
    total = by_step["total"]
    assert tuple(int(total[c]) for c in columns) == EXPECTED_A_TOTALS
    assert (total["delivered_pct"], total["open_pct"], total["bounce_pct"]) == (
        "83.3",
        "80.0",
        "16.7",
    )
    # The page's human opens and clicks are in the file too.
    report = campaign_report(session, data["A"], PERIOD).summary.counts
    assert (int(total["human_opens"]), int(total["human_clicks"])) == (
        report.human_opened,
        report.human_clicked,
    )
    assert total["human_open_pct"] == (
        "" if report.human_open_rate is None else f"{report.human_open_rate:.1f}"
    )
    assert by_step["4"]["open_pct"] == ""  # nothing delivered: no rate, not 0 and not a crash


def test_overview_page_lists_each_campaign_with_its_figures(staff, data):
    html = staff.get(f"/analytics/?{RANGE_QS}").get_data(as_text=True)
    rows = table_rows(html, "campaign-summary", "data-campaign-id")
    a_row = rows[str(data["A"].id)]
    assert a_row[1:8] == row_texts(EXPECTED_A_TOTALS)
    assert a_row[10:] == ["66.7% 2/3", "33.3% 1/3"]
    assert rows[str(data["B"].id)][1:8] == row_texts(EXPECTED_B_TOTALS)


def test_bad_dates_show_a_message_and_the_default_range(staff, data):
    response = staff.get("/analytics/?start=not-a-date&end=2026-13-01")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert "Dates must look like 2026-01-31." in html
    assert "Showing the last 30 days instead." in html
    response = staff.get(f"/analytics/campaigns/{data['A'].id}?start=2026-03-10&end=2026-03-01")
    assert response.status_code == 200
    assert "The start date is after the end date." in response.get_data(as_text=True)
    response = staff.get(f"/analytics/campaigns/{data['A'].id}.csv?start=nope")
    assert response.status_code == 400
    assert "Dates must look like" in response.get_data(as_text=True)


@pytest.mark.parametrize(
    "query", ["end=0001-01-01", "start=0001-01-01&end=0001-01-02", "end=9999-12-31"]
)
def test_dates_at_the_calendars_ends_are_refused_with_a_message(staff, data, query):
    # Were a 500: the default start 30 days before year 1, or the day after 9999-12-31.
    says = "Choose dates between 1970-01-01 and 9999-12-30."
    for url in ("/analytics/", f"/analytics/campaigns/{data['A'].id}"):
        response = staff.get(f"{url}?{query}")
        assert response.status_code == 200 and says in response.get_data(as_text=True)
    assert staff.get(f"/analytics/campaigns/{data['A'].id}.csv?{query}").status_code == 400


def test_analytics_needs_a_login_and_a_real_campaign(web, staff_user, data):
    assert web.get("/analytics/").status_code == 302
    assert web.get(f"/analytics/campaigns/{data['A'].id}.csv").status_code == 302
    web.login("staff@example.com", "staff-password")
    assert web.get("/analytics/campaigns/999999").status_code == 404
    assert web.get("/analytics/campaigns/999999.csv").status_code == 404


def test_csv_neutralises_spreadsheet_formulas_in_subjects(session, staff, data):
    step = data["A"].steps[0]
    step.subject = '=HYPERLINK("http://evil")'
    session.commit()
    text = staff.get(f"/analytics/campaigns/{data['A'].id}.csv?{RANGE_QS}").get_data(as_text=True)
    assert list(csv.reader(io.StringIO(text)))[1][1].startswith("'=")


def test_conversion_never_credits_an_enrolment_stopped_before_the_goal(session, campaigns):
    """A contact stopped by hand and converted a week later converted without the
    campaign; one whose type change reached the campaign's goal type converted through
    it; a goal the campaign does not name ends nothing."""
    from datetime import UTC, datetime, timedelta

    from crm_app.drip.audience.contacts import ContactInput, create_contact
    from crm_app.drip.audience.ending import stop
    from crm_app.drip.audience.enrollment import change_contact_type, record_goal
    from crm_app.drip.reporting.analytics import enrollment_outcomes

    start = datetime(2026, 3, 2, 9, tzinfo=UTC)

    def lead(name: str):
        data = ContactInput(email=f"{name}@example.com", contact_type="lead", first_name=name)
        return create_contact(session, data, actor="test")

    stopped_then_goal = lead("stopped")
    switched = lead("switched")
    completed_then_goal = lead("completed")
    for contact in (stopped_then_goal, switched, completed_then_goal):
        contact.enrollments[0].enrolled_at = start
    stop(session, stopped_then_goal.enrollments[0], reason="by hand", actor="test",
         now=start + timedelta(days=2))  # fmt: skip
    record_goal(session, stopped_then_goal, "demo booked", actor="test",
                now=start + timedelta(days=9))  # fmt: skip
    # lead -> prospect is Lead's goal; the switch stops Lead at that very moment.
    change_contact_type(session, switched, "prospect", actor="test", now=start + timedelta(days=3))
    completed = completed_then_goal.enrollments[0]
    completed.status, completed.ended_at = "completed", start + timedelta(days=20)
    record_goal(session, completed_then_goal, "demo booked", actor="test",
                now=start + timedelta(days=25))  # fmt: skip
    session.commit()

    lead_id = campaigns["lead"].id
    outcomes = enrollment_outcomes(session, DateRange(date(2026, 3, 1), date(2026, 3, 31)))
    assert (outcomes[lead_id].started, outcomes[lead_id].converted) == (3, 1)
    assert switched.enrollments[0].converted_at is not None
