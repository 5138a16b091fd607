"""What the browser flows share: logging in as the admin, and screenshots at 1280 and
390 px where the page's own content must fit a phone (saved to SCREENSHOT_DIR too when
it is set, to look at)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from playwright.sync_api import Page, expect


def log_in_as_admin(page: Page) -> None:
    page.goto("/login")
    page.get_by_label("Email").fill("admin@example.com")
    page.get_by_label("Password").fill("admin-password")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("button", name="Log out")).to_be_visible()


def screenshots(page: Page, name: str, tmp_path: Path, fits: str = "main") -> None:
    """Both widths; the page's own content (`fits`) must fit a phone."""
    for width in (1280, 390):
        page.set_viewport_size({"width": width, "height": 900 if width > 400 else 844})
        path = tmp_path / f"{name}-{width}.png"
        page.screenshot(path=path, full_page=True)
        if os.environ.get("SCREENSHOT_DIR"):
            shutil.copy(path, Path(os.environ["SCREENSHOT_DIR"]) / path.name)
        if width == 390:
            right = page.evaluate(
                "s => Math.max(...[...document.querySelectorAll(s)].map("
                "e => e.getBoundingClientRect().right))",
                fits,
            )
            assert right <= 390, name
    page.set_viewport_size({"width": 1280, "height": 900})
