"""The pages work under our Content-Security-Policy in a real chromium: no violation is
reported, HTMX actions swap, the analytics charts draw, confirmations still ask, and the
RQ dashboard's own script runs (by nonce)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import redis
import sqlalchemy as sa
from playwright.sync_api import expect
from rq import Queue

from crm_app.drip.audience.unsubscribe import make_unsubscribe_token

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the shared data fixture
from test_analytics_chart import DRAWN_PIXELS  # noqa: E402
from test_analytics_data import FIRST_DAY, LAST_DAY, build_analytics_fixture  # noqa: E402

pytestmark = pytest.mark.browser

# Reports every violation, from every frame, to the test (a console message may not say
# which directive; the event does).
REPORT_VIOLATIONS = """
document.addEventListener("securitypolicyviolation", (event) => {
  window.reportCspViolation(
    `${event.violatedDirective} blocked ${event.blockedURI || "inline"} `
    + `in ${event.documentURI} (${event.sourceFile}:${event.lineNumber})`
  );
});
"""


@pytest.fixture
def watched(page):
    """The page, with every CSP violation and console error or warning collected."""
    problems: list[str] = []
    page.expose_function("reportCspViolation", lambda text: problems.append(text))
    page.add_init_script(REPORT_VIOLATIONS)
    page.on(
        "console",
        lambda message: (
            problems.append(f"console {message.type}: {message.text} ({message.location['url']})")
            if message.type in ("error", "warning")
            else None
        ),
    )
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    return page, problems


def log_in(page, email="admin@example.com", password="admin-password"):
    page.goto("/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()


def visit(page, url: str) -> None:
    response = page.goto(url)
    assert response is not None and response.status == 200, url
    assert "script-src 'self'" in response.headers["content-security-policy"], url


def test_every_main_page_runs_under_the_csp_without_a_violation(
    watched, app, session, admin_user, campaigns, make_contact
):
    page, problems = watched
    contact = make_contact("lead", first_name="Csp", last_name="Tester")
    lead = campaigns["lead"]

    visit(page, f"/unsubscribe/{make_unsubscribe_token(contact.id, contact.email)}")
    log_in(page)
    for url in (
        "/",
        "/contacts/",
        "/contacts/new",
        f"/contacts/{contact.id}",
        f"/contacts/{contact.id}/edit",
        "/campaigns/",
        f"/campaigns/{lead.id}",  # each step's preview: an iframe srcdoc, styled inline
        f"/campaigns/{lead.id}/steps/{lead.steps[0].id}/preview",
        f"/campaigns/{lead.id}/steps/{lead.steps[0].id}/edit",
        "/analytics/",
        "/suppressions/",
        "/admin/messages?status=failed",
        "/admin/messages?status=in_doubt",
        "/admin/outbox",
    ):
        visit(page, url)
    page.wait_for_timeout(300)  # let late reports arrive
    assert problems == []


def test_htmx_actions_swap_under_the_csp(watched, admin_user, campaigns, make_contact):
    page, problems = watched
    make_contact("lead", first_name="Alma", last_name="Search")
    contact = make_contact("lead", first_name="Bo", last_name="Panel")
    log_in(page)

    # Live search: the list swaps as you type, the page stays.
    visit(page, "/contacts/")
    page.evaluate("window.__marker = 1")
    page.get_by_role("searchbox", name="Search").fill("Alma")
    expect(page.locator("#contact-list")).not_to_contain_text("Bo Panel")
    expect(page.locator("#contact-list")).to_contain_text("Alma Search")

    # The campaign panel: Stop, then Stop all behind hx-confirm, both swapped in place.
    visit(page, f"/contacts/{contact.id}")
    page.evaluate("window.__marker = 1")
    panel = page.locator("#campaign-panel")
    panel.get_by_role("button", name="Stop Lead").click()
    expect(panel).to_contain_text("Stopped Lead.")
    panel.get_by_label("Campaign").select_option(label="Lead")
    panel.get_by_role("button", name="Enrol", exact=True).click()
    expect(panel).to_contain_text("Enrolled in Lead")
    page.once("dialog", lambda dialog: dialog.accept())
    panel.get_by_role("button", name="Stop all").click()
    expect(panel).to_contain_text("Stopped 1 enrolment.")
    assert page.evaluate("window.__marker") == 1, "the page reloaded instead of swapping"

    # A campaign's settings form (hx-post, swapped with an out-of-band badge).
    lead = campaigns["lead"]
    visit(page, f"/campaigns/{lead.id}")
    page.get_by_role("button", name="Pause").click()
    expect(page.locator("#campaign-settings")).to_contain_text("Resume")
    assert problems == []


def test_a_data_confirm_form_asks_first_and_stays_put_when_refused(
    watched, session, admin_user, make_contact
):
    """Resending an email in doubt may send it twice: the page asks first (static/js)."""
    from crm_app.drip.delivery.tick import run_tick
    from crm_app.models import Message, utcnow
    from tests.delivery_helpers import open_all_week

    page, problems = watched
    contact = make_contact("lead")
    open_all_week(contact.enrollments[0].campaign)
    contact.enrollments[0].next_send_at = utcnow()
    session.commit()
    run_tick(session, lambda ids: None, now=utcnow())
    message = session.scalars(sa.select(Message)).one()
    message.status, message.attempts, message.claimed_at = "in_doubt", 1, utcnow()
    session.commit()
    log_in(page)
    visit(page, "/admin/messages?status=in_doubt")
    row = page.locator(f"#message-{message.id}")

    asked: list[str] = []

    def refuse(dialog):
        asked.append(dialog.message)
        dialog.dismiss()

    page.once("dialog", refuse)
    row.get_by_role("button", name="Resend").click()
    assert asked == ["SendGrid may already have this email. Send it again?"]
    expect(row).to_be_visible()
    session.expire_all()
    assert session.get(Message, message.id).status == "in_doubt"

    page.once("dialog", lambda dialog: dialog.accept())
    row.get_by_role("button", name="Resend").click()
    expect(page.locator(f"#message-{message.id}")).to_have_count(0)
    session.expire_all()
    assert session.get(Message, message.id).status == "queued"
    assert problems == []


def test_the_analytics_charts_draw_under_the_csp(watched, session, admin_user, campaigns):
    page, problems = watched
    data = build_analytics_fixture(session, campaigns)
    log_in(page)
    visit(
        page,
        f"/analytics/campaigns/{data['A'].id}?start={FIRST_DAY.isoformat()}"
        f"&end={LAST_DAY.isoformat()}",
    )
    page.wait_for_function("() => window.Chart && Chart.getChart('funnel-chart')")
    assert page.evaluate(DRAWN_PIXELS, "daily-chart") > 0
    assert page.evaluate(DRAWN_PIXELS, "funnel-chart") > 0
    assert problems == []


def test_the_rq_dashboard_runs_its_script_by_nonce(watched, app, admin_user):
    page, problems = watched
    connection = redis.Redis.from_url(app.config["REDIS_URL"])
    Queue(app.config["RQ_QUEUE"], connection=connection).enqueue("builtins.print", "hi")
    log_in(page)
    visit(page, "/admin/rq/")
    # The queue table is filled by its inline script from queues.json.
    expect(page.locator("table")).to_contain_text(app.config["RQ_QUEUE"])
    assert problems == []


def test_an_injected_inline_script_would_be_blocked_and_reported(watched, admin_user):
    """The listener works: a script the policy refuses is reported (so [] above means none)."""
    page, problems = watched
    log_in(page)
    page.evaluate(
        """() => { const s = document.createElement("script");
                   s.textContent = "window.__ran = true"; document.body.append(s); }"""
    )
    page.wait_for_timeout(200)
    assert page.evaluate("window.__ran") is None
    assert any("script-src" in problem for problem in problems), problems
