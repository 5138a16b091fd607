"""The main navigation (web/navigation.py): who sees which links, and which one is the
page shown."""

from __future__ import annotations

import re


def _nav(page: str) -> list[tuple[str, bool, str]]:
    nav = page.split('<nav aria-label="Main">', 1)[1].split("</nav>", 1)[0]
    return [
        (href, bool(current), label)
        for href, current, label in re.findall(
            r'<a href="([^"]+)"( aria-current="page")?>([^<]+)</a>', nav
        )
    ]


def test_staff_see_the_five_pages_of_their_work(staff):
    labels = [label for _, _, label in _nav(staff.get("/").get_data(as_text=True))]
    assert labels == ["Dashboard", "Contacts", "Imports", "Campaigns", "Analytics"]


def test_the_link_of_the_page_shown_is_marked_current(admin, make_contact):
    contact = make_contact("lead")
    links = _nav(admin.get(f"/contacts/{contact.id}").get_data(as_text=True))
    assert [label for _, current, label in links if current] == ["Contacts"]
    links = _nav(admin.get("/admin/messages?status=failed").get_data(as_text=True))
    assert [(href, label) for href, current, label in links if current] == [
        ("/admin/messages?status=failed", "Failed messages")
    ]


def test_the_links_follow_the_application_root(app, admin):
    # Behind a proxy that mounts the app under /crm, every address starts with it.
    page = admin.client.get("/", base_url="http://localhost/crm").get_data(as_text=True)
    hrefs = [href for href, _, _ in _nav(page)]
    assert hrefs and all(href.startswith("/crm/") for href in hrefs), hrefs
    hrefs = [href for href, _, _ in _nav(admin.get("/").get_data(as_text=True))]
    assert not any(href.startswith("/crm/") for href in hrefs)
