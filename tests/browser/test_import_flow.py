"""A staff member imports a CSV in a real browser: upload, check the mapping, start,
watch the bar move while a real worker runs, download the failed rows."""

from __future__ import annotations

import csv
import io

import pytest
from playwright.sync_api import expect

from tests.delivery_helpers import kill_worker, start_worker, worker_env

pytestmark = pytest.mark.browser

ROWS = 3000
BAD_LINES = {101: "not-an-email", 1002: "dup", 2503: "boss"}  # line in the file -> what is wrong

# Records the bar's value each time htmx swaps the progress panel in (test-side script).
WATCH_THE_BAR = """() => {
  window.__seen = [];
  document.body.addEventListener("htmx:afterSwap", () => {
    const bar = document.getElementById("import-bar");
    if (bar) { window.__seen.push(Number(bar.value)); }
  });
}"""


def _csv_file(tmp_path):
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["Email", "First Name", "Last Name", "Company", "Type"])
    for line in range(2, ROWS + 2):
        email, kind = f"person{line}@example.com", "lead"
        if BAD_LINES.get(line) == "not-an-email":
            email = "not-an-email"
        elif BAD_LINES.get(line) == "dup":
            email = "person2@example.com"
        elif BAD_LINES.get(line) == "boss":
            kind = "boss"
        writer.writerow([email, f"First{line}", "Imported", "Acme", kind])
    path = tmp_path / "team-contacts.csv"
    path.write_text(out.getvalue(), encoding="utf-8")
    return path


def _log_in(page):
    page.goto("/login")
    page.get_by_label("Email").fill("staff@example.com")
    page.get_by_label("Password").fill("staff-password")
    page.get_by_role("button", name="Log in").click()


def _shoot(page, tmp_path, name: str) -> None:
    """The page at desktop and at phone width (a person looks at these)."""
    for width in (1280, 390):
        page.set_viewport_size({"width": width, "height": 900})
        page.screenshot(path=tmp_path / f"{name}-{width}.png", full_page=True)
        # The page's own content (the shared top bar is another matter) fits the screen.
        scroll = page.evaluate("document.querySelector('main').scrollWidth")
        assert scroll <= width, f"{name} is {scroll} px wide at {width} px"
    page.set_viewport_size({"width": 1280, "height": 900})


def test_upload_map_start_watch_progress_and_download_failed_rows(
    page, app, staff_user, campaigns, fake_sendgrid, database_url, redis_url, tmp_path
):
    _log_in(page)
    page.get_by_role("link", name="Imports", exact=True).click()
    expect(page.get_by_role("heading", name="Imports")).to_be_visible()
    _shoot(page, tmp_path, "imports")

    page.get_by_label("CSV file").set_input_files(_csv_file(tmp_path))
    page.get_by_role("button", name="Upload and preview").click()
    expect(page.get_by_role("heading", name="Import team-contacts.csv")).to_be_visible()
    expect(page.locator(".preview-rows")).to_contain_text("person2@example.com")
    expect(page.locator("#field-column-0")).to_have_value("email")
    expect(page.locator("#field-column-4")).to_have_value("contact_type")
    _shoot(page, tmp_path, "import-mapping")

    page.get_by_role("button", name="Start the import").click()
    progress = page.locator("#import-progress")
    expect(progress).to_have_attribute("data-state", "queued")  # no worker yet
    page.evaluate(WATCH_THE_BAR)
    page.evaluate("window.__marker = 1")

    env = worker_env(app, database_url, redis_url, fake_sendgrid, tmp_path)
    env["IMPORT_CHUNK_SIZE"] = "5"  # many small chunks: the bar moves while we watch (1 s polls)
    worker = start_worker(env)
    try:
        expect(progress).to_have_attribute("data-state", "done", timeout=120_000)
    finally:
        kill_worker(worker)

    assert page.evaluate("window.__marker") == 1, "the page reloaded instead of polling"
    seen = page.evaluate("window.__seen")
    assert any(0 < value < ROWS for value in seen), f"the bar never showed a middle: {seen}"
    expect(progress.locator("progress")).to_have_attribute("value", str(ROWS))
    expect(progress.locator('[data-count="created"]')).to_have_text(f"{ROWS - 3:,}")
    expect(progress.locator('[data-count="failed"]')).to_have_text("3")
    expect(progress.locator("#import-failures")).to_contain_text("Unknown type 'boss'")
    _shoot(page, tmp_path, "import-done")

    with page.expect_download() as download:
        page.get_by_role("link", name="Download the 3 failed rows (CSV)").click()
    rows = list(csv.reader(download.value.path().open(encoding="utf-8")))
    assert [row[0] for row in rows] == ["import_line", *map(str, sorted(BAD_LINES))]
    assert "is already on line 2" in rows[2][1]

    # Survives a reload: the import has its own page, listed under Imports.
    page.reload()
    expect(progress).to_have_attribute("data-state", "done")
    page.get_by_role("link", name="Imports", exact=True).click()
    expect(page.locator("#import-list")).to_contain_text("team-contacts.csv")
    _shoot(page, tmp_path, "imports-listed")
