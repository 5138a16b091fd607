"""The campaign analytics page draws its charts in a real chromium."""

from __future__ import annotations

import shutil
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest
from playwright.sync_api import expect

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the shared data fixture
from test_analytics_data import FIRST_DAY, LAST_DAY, build_analytics_fixture  # noqa: E402

pytestmark = pytest.mark.browser

NOTES_SCREENSHOT = Path("/work/notes/analytics.png")

# Non-transparent pixels of a canvas: > 0 only once Chart.js has drawn on it.
DRAWN_PIXELS = """(id) => {
  const canvas = document.getElementById(id);
  const pixels = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
  let drawn = 0;
  for (let i = 3; i < pixels.length; i += 4) { if (pixels[i] !== 0) { drawn++; } }
  return drawn;
}"""


def test_campaign_analytics_page_draws_daily_and_funnel_charts(
    page, session, staff_user, campaigns, tmp_path
):
    data = build_analytics_fixture(session, campaigns)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))

    page.goto("/login")
    page.get_by_label("Email").fill("staff@example.com")
    page.get_by_label("Password").fill("staff-password")
    page.get_by_role("button", name="Log in").click()
    page.get_by_role("link", name="Analytics", exact=True).first.click()
    expect(page.get_by_role("heading", name="Analytics")).to_be_visible()

    page.goto(
        f"/analytics/campaigns/{data['A'].id}?start={FIRST_DAY.isoformat()}"
        f"&end={LAST_DAY.isoformat()}"
    )
    expect(page.get_by_role("heading", name="Lead: results")).to_be_visible()
    page.wait_for_function("() => window.Chart && Chart.getChart('daily-chart')")

    daily = page.evaluate(
        "() => Chart.getChart('daily-chart').data.datasets.map(d => [d.label, d.data])"
    )
    assert daily[0] == ["Sent", [1, 1, 2, 0, 1, 0, 0, 0, 0, 1]]
    assert daily[1] == ["Opened", [0, 1, 2, 0, 1, 0, 0, 0, 0, 0]]
    funnel = page.evaluate("() => Chart.getChart('funnel-chart').data.datasets[0].data")
    assert funnel == [3, 2, 1, 0, 0, 0]
    assert page.evaluate(DRAWN_PIXELS, "daily-chart") > 0
    assert page.evaluate(DRAWN_PIXELS, "funnel-chart") > 0
    expect(page.locator('#step-table tr[data-step="total"]')).to_contain_text("6")
    assert errors == []

    shot = tmp_path / "analytics.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 0
    if NOTES_SCREENSHOT.parent.is_dir():
        shutil.copyfile(shot, NOTES_SCREENSHOT)


def _table_and_content_widths(page) -> tuple[float, float]:
    table = page.locator("#step-table").locator("xpath=..").bounding_box()  # its scroll box
    content = page.locator("main").evaluate("main => main.firstElementChild.clientWidth")
    return table["width"], content


@contextmanager
def _campaign_results_as_staff(browser, live_server, campaign, width: int):
    """The campaign's analytics page, logged in as staff, in a window `width` px wide."""
    context = browser.new_context(base_url=live_server, viewport={"width": width, "height": 900})
    page = context.new_page()
    try:
        page.goto("/login")
        page.get_by_label("Email").fill("staff@example.com")
        page.get_by_label("Password").fill("staff-password")
        page.get_by_role("button", name="Log in").click()
        page.wait_for_url("**/")
        page.goto(f"/analytics/campaigns/{campaign.id}")
        yield page
    finally:
        context.close()


@pytest.mark.parametrize("width", [390, 1280])
def test_the_per_step_table_takes_the_whole_width_under_its_download_button(
    browser, live_server, staff_user, campaigns, width
):
    """The Download CSV button floated in the heading once narrowed the table's scroll
    box beside it: 187 of 366 px at 390 px (a third of the phone blank), and the 1,280 px
    table scrolled with room to spare."""
    with _campaign_results_as_staff(browser, live_server, campaigns["lead"], width) as page:
        expect(page.get_by_role("link", name="Download CSV")).to_be_visible()
        table_width, content_width = _table_and_content_widths(page)
        assert table_width >= content_width - 1


def test_the_charts_shrink_when_the_window_narrows_to_a_phone(
    browser, live_server, staff_user, campaigns
):
    """A chart drawn at 1,280 px kept its grid column that wide once the window
    narrowed (a turned tablet, a resized window): the page ran off a 390 px screen."""
    with _campaign_results_as_staff(browser, live_server, campaigns["lead"], 1280) as page:
        page.wait_for_function("() => window.Chart && Chart.getChart('daily-chart')")
        page.set_viewport_size({"width": 390, "height": 844})
        page.wait_for_timeout(300)  # Chart.js resizes on the next animation frames
        assert page.evaluate("document.documentElement.scrollWidth") <= 390


def test_every_column_of_the_overview_is_in_sight_at_1280(
    browser, live_server, session, staff_user, campaigns, tmp_path
):
    """Completion and conversion, the overview's last columns, sat past its table's
    sideways scroll at 1,280 px (the header read "Co..."): each rate now reads under its
    count, and the whole table fits."""
    build_analytics_fixture(session, campaigns)
    with _campaign_results_as_staff(browser, live_server, campaigns["lead"], 1280) as page:
        page.goto(f"/analytics/?start={FIRST_DAY.isoformat()}&end={LAST_DAY.isoformat()}")
        expect(page.locator("#campaign-summary")).to_contain_text("Lead")
        box = page.locator("#campaign-summary").locator("xpath=..")
        assert box.evaluate("b => b.scrollWidth <= b.clientWidth + 1"), box.evaluate(
            "b => [b.scrollWidth, b.clientWidth]"
        )
        page.screenshot(path=str(tmp_path / "overview-1280.png"), full_page=True)
