"""The main navigation: which pages it links to, for whom, and which link is the page
shown. Its addresses are built once per application root (url_for costs about 15 us a
link, fourteen links on every page) rather than on every request."""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app, request, url_for
from flask_login import current_user


@dataclass(frozen=True)
class NavItem:
    endpoint: str
    label: str
    blueprint: str | None = None  # any page of it counts as this link's page
    admin_only: bool = False
    arguments: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class NavLink:
    href: str
    label: str
    current: bool


MAIN_NAV = (
    NavItem("main.home", "Dashboard"),
    NavItem("contacts.index", "Contacts", "contacts"),
    NavItem("imports.index", "Imports", "imports"),
    NavItem("campaigns.index", "Campaigns", "campaigns"),
    NavItem("analytics.index", "Analytics", "analytics"),
    NavItem("blocks.index", "Content blocks", "blocks", admin_only=True),
    NavItem("suppressions.index", "Suppression list", "suppressions", admin_only=True),
    NavItem(
        "admin.messages", "Failed messages", admin_only=True, arguments=(("status", "failed"),)
    ),
    NavItem("admin.outbox", "Outbox", admin_only=True),
    NavItem("integrations.index", "Integrations", "integrations", admin_only=True),
    NavItem("rq_dashboard.queues_overview", "Queues", admin_only=True),
    NavItem("users.index", "Users", "users", admin_only=True),
    NavItem("workspace.settings", "Settings", admin_only=True),
    NavItem("workspace.audit", "Audit log", admin_only=True),
)

_HREFS_KEY = "drip_nav_hrefs"


def _hrefs() -> dict[str, str]:
    """Each item's address under this request's application root (SCRIPT_NAME)."""
    cache = current_app.extensions.setdefault(_HREFS_KEY, {})
    hrefs = cache.get(request.script_root)
    if hrefs is None:
        hrefs = {item.endpoint: url_for(item.endpoint, **dict(item.arguments)) for item in MAIN_NAV}
        cache[request.script_root] = hrefs
    return hrefs


def main_nav() -> list[NavLink]:
    """The links the logged-in user sees, the current page's marked (a template global)."""
    hrefs = _hrefs()
    endpoint, blueprint = request.endpoint, request.blueprint
    return [
        NavLink(
            hrefs[item.endpoint],
            item.label,
            endpoint == item.endpoint
            or (item.blueprint is not None and blueprint == item.blueprint),
        )
        for item in MAIN_NAV
        if current_user.is_admin or not item.admin_only
    ]
