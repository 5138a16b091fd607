"""The contact calls the API makes that the pages do not: upsert by email, a partial
update, keyset-paginated lists. Every change goes through the audience core
(create_contact, update_contact), so the same rules and timeline rows apply."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import selectinload

from crm_app.drip.audience.contact_search import matching_for_a_page
from crm_app.drip.audience.contacts import (
    CONTACT_FIELDS,
    EMAIL_TAKEN,
    ContactInput,
    ContactValidationError,
    create_contact,
    update_contact,
)
from crm_app.drip.common.ids import MAX_ID
from crm_app.models import Campaign, CampaignStep, Contact, Enrollment

LIST_LIMIT_MAX = 100


def find_by_email(session, email: str) -> Contact | None:
    address = (email or "").strip().lower()
    if not address:
        return None
    return session.scalar(sa.select(Contact).where(sa.func.lower(Contact.email) == address))


def current_input(contact: Contact) -> ContactInput:
    """The contact as the core's input, for a change that gives only some fields."""
    values = {name: getattr(contact, name) for name in CONTACT_FIELDS}
    return ContactInput(**values | {"custom_fields": dict(contact.custom_fields or {})})


def patch_contact(session, contact: Contact, changes: Mapping[str, Any], *, actor: str) -> Contact:
    """Change only the given fields; the rest keep their values (a type change stops the
    old type's campaign and enrols in the new one, as on the edit page)."""
    data = dataclasses.replace(current_input(contact), **changes)
    return update_contact(session, contact, data, actor=actor)


def upsert_contact(session, fields: Mapping[str, Any], *, actor: str) -> tuple[Contact, bool]:
    """Create the contact (enrolled by type), or update the one with this email with the
    given fields; returns (contact, created)."""
    existing = find_by_email(session, fields.get("email", ""))
    if existing is None:
        try:
            # A savepoint: a create refused half way leaves nothing behind for the update.
            with session.begin_nested():
                return create_contact(session, ContactInput(**fields), actor=actor), True
        except ContactValidationError as refused:
            # Two requests for one new address at once: the other created it after our
            # lookup. An upsert then updates it, as it would have a moment later.
            if refused.errors.get("email") != EMAIL_TAKEN:
                raise
            existing = find_by_email(session, fields.get("email", ""))
            if existing is None:
                raise
    return patch_contact(session, existing, fields, actor=actor), False


@dataclass
class ContactSlice:
    items: list[Contact]
    next_cursor: int | None  # the id to continue after; None on the last slice


def list_contacts(
    session,
    *,
    after_id: int | None = None,
    limit: int = 50,
    query: str = "",
    contact_type: str = "",
    email: str = "",
    updated_since: datetime | None = None,
) -> ContactSlice:
    """Contacts by id, after `after_id` (keyset: a page costs the same however deep, and
    rows added meanwhile are neither skipped nor repeated)."""
    limit = max(1, min(limit, LIST_LIMIT_MAX))
    conditions = matching_for_a_page(session, query, contact_type)
    if email:
        conditions.append(sa.func.lower(Contact.email) == email.strip().lower())
    if updated_since is not None:
        conditions.append(_updated_since(updated_since))
    if after_id is not None:
        if after_id >= MAX_ID:  # no id is past it (nor can the database compare one)
            return ContactSlice([], None)
        conditions.append(Contact.id > max(after_id, 0))
    rows = list(
        session.scalars(sa.select(Contact).where(*conditions).order_by(Contact.id).limit(limit + 1))
    )
    more = len(rows) > limit
    rows = rows[:limit]
    return ContactSlice(rows, rows[-1].id if more else None)


def _updated_since(moment: datetime) -> sa.ColumnElement[bool]:
    """Contact.updated_at >= moment; a moment whose UTC time falls off the calendar (year 1
    at +14:00, 9999-12-31 at -14:00) is before, or after, every row."""
    try:
        in_utc = moment.astimezone(UTC)
    except OverflowError:
        return sa.true() if moment.year == 1 else sa.false()
    return Contact.updated_at >= in_utc


def contact_with_enrollments(session, contact_id: int) -> Contact | None:
    """One contact with its enrolments and their campaigns (three queries)."""
    return session.scalar(
        sa.select(Contact)
        .options(selectinload(Contact.enrollments).selectinload(Enrollment.campaign))
        .where(Contact.id == contact_id)
        .execution_options(populate_existing=True)  # enrolments made in this transaction
    )


def list_campaigns(session) -> list[tuple[Campaign, int]]:
    """Every campaign with its number of steps, by name."""
    steps = (
        sa.select(sa.func.count(CampaignStep.id))
        .where(CampaignStep.campaign_id == Campaign.id)
        .scalar_subquery()
    )
    return [
        (campaign, count)
        for campaign, count in session.execute(sa.select(Campaign, steps).order_by(Campaign.name))
    ]
