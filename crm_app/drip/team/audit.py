"""The audit log: who did what, and when, across the workspace (the admins' page).

One writer, `record_audit`, called by the core function that makes each change, in
the caller's transaction (an entry exists exactly when its change was committed).
It records what people and integrations do: a User, or an actor label "user:<email>"
"api:<token name>" or "cli:<command>" as the core functions receive it. The system's own work (the
worker, the tick, SendGrid's events, a contact's unsubscribe) stays on the contact
timelines, so callers pass any actor and need not filter.

Kinds (`target_type`) are listed in AUDIT_KINDS with their label for the filter;
a new kind (imports, API tokens) adds its line there.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import selectinload

from crm_app.drip.common.paging import Page, paginate
from crm_app.drip.common.timezones import zone_or_utc
from crm_app.drip.reporting.date_range import EARLIEST_DAY, LATEST_DAY
from crm_app.models import AuditEntry, User

AUDIT_KINDS: dict[str, str] = {
    "contact": "Contacts",
    "enrollment": "Enrolments",
    "campaign": "Campaigns",
    "email": "Campaign emails",
    "campaign_step": "A/B tests and send conditions",
    "content_block": "Content blocks",
    "suppression": "Suppressions",
    "settings": "Settings",
    "user": "Users",
    "import": "Imports",
    "api_token": "API tokens",
    "webhook_endpoint": "Webhook endpoints",
    "gdpr": "GDPR (exports, erasures)",
}
AUDITED_ACTOR_PREFIXES = ("user:", "api:", "cli:")
ENTRIES_PER_PAGE = 50
SUMMARY_MAX = 1000


def _who(session, actor: User | str) -> tuple[int | None, str] | None:
    """(user id, label) of an audited actor; None for the system's own work."""
    if isinstance(actor, User):
        return actor.id, actor.email
    if not actor.startswith(AUDITED_ACTOR_PREFIXES):
        return None
    if actor.startswith("user:"):
        email = actor.removeprefix("user:")
        # Once per session: a bulk action by one user writes many entries.
        known = session.info.setdefault("audit_user_ids", {})
        if email not in known:
            known[email] = session.scalar(sa.select(User.id).where(User.email == email.lower()))
        return known[email], email
    return None, actor


def record_audit(
    session,
    actor: User | str,
    action: str,
    target_type: str,
    target_id: int | None,
    summary: str,
) -> AuditEntry | None:
    """Add one entry (the caller commits); None when `actor` is the system itself."""
    who = _who(session, actor)
    if who is None:
        return None
    entry = AuditEntry(
        user_id=who[0],
        actor=who[1],
        action=action,
        target_type=target_type,
        target_id=target_id,
        summary=summary[:SUMMARY_MAX],
    )
    session.add(entry)
    return entry


class AuditFilterError(ValueError):
    """A filter the user typed that cannot be used; `field` names the form field."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class AuditFilter:
    """The page's filters; dates are whole days on the viewer's clock, both included."""

    user_id: int | None = None
    kind: str = ""
    first: date | None = None
    last: date | None = None


def parse_audit_filter(values, *, user_ids: set[int]) -> AuditFilter:
    """The filter from the query string; raises AuditFilterError for a bad date."""
    raw_user = (values.get("user") or "").strip()
    user_id = int(raw_user) if raw_user.isdecimal() and int(raw_user) in user_ids else None
    kind = (values.get("kind") or "").strip()
    days: dict[str, date | None] = {}
    for name in ("from", "to"):
        text = (values.get(name) or "").strip()
        try:
            days[name] = date.fromisoformat(text) if text else None
        except ValueError:
            raise AuditFilterError(name, "Dates look like 2026-01-31.") from None
        day = days[name]
        if day is not None and not EARLIEST_DAY <= day <= LATEST_DAY:
            # The day's bounds on the viewer's clock would fall off Python's calendar.
            raise AuditFilterError(name, f"Choose dates between {EARLIEST_DAY} and {LATEST_DAY}.")
    if days["from"] and days["to"] and days["from"] > days["to"]:
        raise AuditFilterError("to", "The end date is before the start date.")
    return AuditFilter(user_id, kind if kind in AUDIT_KINDS else "", days["from"], days["to"])


def _day_start(day: date, tz_name: str) -> datetime:
    return datetime.combine(day, time(0), tzinfo=zone_or_utc(tz_name))


def search_audit(
    session, audit_filter: AuditFilter, *, tz_name: str, page: int = 1
) -> Page[AuditEntry]:
    """One page of entries, newest first (two indexed queries: count and page)."""
    conditions = []
    if audit_filter.user_id is not None:
        conditions.append(AuditEntry.user_id == audit_filter.user_id)
    if audit_filter.kind:
        conditions.append(AuditEntry.target_type == audit_filter.kind)
    if audit_filter.first:
        conditions.append(AuditEntry.created_at >= _day_start(audit_filter.first, tz_name))
    if audit_filter.last:
        end = _day_start(audit_filter.last + timedelta(days=1), tz_name)
        conditions.append(AuditEntry.created_at < end)
    statement = (
        sa.select(AuditEntry)
        .where(*conditions)
        .options(selectinload(AuditEntry.user))
        .order_by(AuditEntry.created_at.desc(), AuditEntry.id.desc())
    )
    return paginate(session, statement, page=page, per_page=ENTRIES_PER_PAGE)


def audit_users(session) -> list[User]:
    """Everyone who can appear in the log, for the "by user" filter."""
    return list(session.scalars(sa.select(User).order_by(User.name, User.email)))
