"""The campaign analytics page draws its charts in a real chromium."""

from __future__ import annotations

import shutil
import sys
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
