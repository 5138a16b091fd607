"""In a real chromium, at 1280 and 390 px: each weekday of the send window reads with
its own checkbox (the box right before its day, far from the day before), a day never
parted from its box, in columns that line up inside the form."""

from __future__ import annotations

import pytest

from tests.browser.pages import log_in_as_admin, screenshots

pytestmark = pytest.mark.browser

DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def _boxes(page) -> list[dict]:
    """Per weekday: its checkbox's and its words' boxes (the text node's own rectangle)."""
    return page.evaluate(
        """() => [...document.querySelectorAll('input[name=weekdays]')].map(box => {
            const label = box.closest('label');
            const range = document.createRange();
            const text = [...label.childNodes].find(n => n.nodeType === 3 && n.textContent.trim());
            range.selectNodeContents(text);
            const words = range.getBoundingClientRect();
            const b = box.getBoundingClientRect();
            return {day: text.textContent.trim(), box: {left: b.left, right: b.right, top: b.top},
                    words: {left: words.left, right: words.right, top: words.top}};
        })"""
    )


def _each_day_reads_with_its_own_box(days: list[dict]) -> None:
    assert [d["day"] for d in days] == list(DAYS)
    for day in days:  # the box right before its words, on their line
        assert 0 <= day["words"]["left"] - day["box"]["right"] <= 14, day
        assert abs(day["words"]["top"] - day["box"]["top"]) < 12, day
    for before, after in zip(days, days[1:], strict=False):
        if abs(after["box"]["top"] - before["box"]["top"]) < 12:  # on one row
            gap = after["box"]["left"] - before["words"]["right"]
            own = after["words"]["left"] - after["box"]["right"]
            assert gap >= 2 * own + 8, (before["day"], after["day"], gap, own)


def test_each_weekday_sits_with_its_own_checkbox_at_1280_and_390_px(
    page, admin_user, campaigns, tmp_path
):
    lead = campaigns["lead"]
    log_in_as_admin(page)
    page.goto(f"/campaigns/{lead.id}")
    for width in (1280, 390):
        page.set_viewport_size({"width": width, "height": 900})
        days = _boxes(page)
        _each_day_reads_with_its_own_box(days)
        rows = sorted({round(d["box"]["top"]) for d in days})
        assert len(rows) <= 2, (width, rows)  # the week in at most two rows
        columns = [round(d["box"]["left"]) for d in days if round(d["box"]["top"]) == rows[0]]
        second = [round(d["box"]["left"]) for d in days if round(d["box"]["top"]) != rows[0]]
        assert second == columns[: len(second)], (width, columns, second)  # they line up
    screenshots(page, "send-window-days", tmp_path)
