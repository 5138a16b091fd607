"""One CSV row -> the contact fields it gives, or why it cannot be imported.

The rules are the contact form's: the same field lengths (contacts.TEXT_FIELDS), the
same email check (contacts.normalized_email), the same types and time zones.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from typing import Any

from crm_app.drip.audience.contacts import (
    TEXT_FIELDS,
    custom_fields_error,
    line_break_error,
    normalized_email,
)
from crm_app.drip.audience.import_files import CUSTOM_PREFIX, FIELD_TARGETS
from crm_app.drip.common.csv_safe import csv_unsafe
from crm_app.drip.common.timezones import TIMEZONES
from crm_app.models import CONTACT_TYPES


@dataclass(frozen=True)
class RowRules:
    """How the rows of one import are read."""

    mapping: tuple[str, ...]  # a target per column (import_files.FIELD_TARGETS)
    owners: dict[str, int]  # a user's lower-case email or name -> id

    @property
    def email_column(self) -> int:
        return self.mapping.index("email")


@dataclass
class CleanRow:
    """A valid row: the address as stored, and the fields its non-empty cells give
    (contact columns; the import fills defaults for a new contact)."""

    line: int
    email: str
    fields: dict[str, Any]
    custom_fields: dict[str, str] = field(default_factory=dict)


@cache
def _timezones_by_lower_name() -> dict[str, str]:
    return {name.lower(): name for name in TIMEZONES}


def email_key(rules: RowRules, cells: list[str]) -> str:
    """The row's address as the duplicate check compares it (cheap: no validation)."""
    column = rules.email_column
    return cells[column].strip().lower() if column < len(cells) else ""


def clean_row(rules: RowRules, line: int, cells: list[str]) -> CleanRow | str:
    """The row's contact, or every reason it cannot be saved, joined by "; "."""
    problems: list[str] = []
    width = len(rules.mapping)
    if any(cell.strip() for cell in cells[width:]):
        problems.append(
            f"The row has {len(cells)} cells but the header names {width} columns "
            "(is a value with the delimiter in it missing its quotes?)"
        )
    fields: dict[str, Any] = {}
    custom: dict[str, str] = {}
    email = ""
    for column, target in enumerate(rules.mapping):
        value = csv_unsafe(cells[column].strip()) if column < len(cells) else ""
        if not target or (not value and target != "email"):
            continue
        if target == "email":
            try:
                email = normalized_email(value)
            except ValueError as invalid:
                problems.append(str(invalid))
        elif target.startswith(CUSTOM_PREFIX):
            custom[target.removeprefix(CUSTOM_PREFIX)] = value
        else:
            problem = _read_field(rules, target, value, fields)
            if problem:
                problems.append(problem)
    if custom_problem := custom_fields_error(custom):
        problems.append(custom_problem)
    if problems:
        return "; ".join(problems)
    return CleanRow(line=line, email=email, fields=fields, custom_fields=custom)


def _read_field(rules: RowRules, target: str, value: str, fields: dict[str, Any]) -> str | None:
    """Put the cell's value into `fields`, or return what is wrong with it."""
    if target == "contact_type":
        if value.lower() not in CONTACT_TYPES:
            return f"Unknown type {value!r}: use one of {', '.join(CONTACT_TYPES)}."
        fields["contact_type"] = value.lower()
    elif target == "timezone":
        zone = _timezones_by_lower_name().get(value.lower())
        if zone is None:
            return f"Unknown time zone {value!r}: use an IANA name such as Europe/Paris."
        fields["timezone"] = zone
    elif target == "owner":
        owner_id = rules.owners.get(value.lower())
        if owner_id is None:
            return f"Unknown owner {value!r}: use a user's email address or name."
        fields["owner_id"] = owner_id
    elif target == "full_name":
        *first, last = value.split()
        split = {"first_name": " ".join(first) or last, "last_name": last if first else ""}
        for name, part in split.items():
            if problem := _too_long(name, part):
                return problem
            # Columns of their own win over the split name, whatever their order.
            fields.setdefault(name, part)
    else:
        if problem := _too_long(target, value):
            return problem
        if problem := line_break_error(target, value):
            return f"{FIELD_TARGETS[target]}: {problem}"
        fields[target] = value
    return None


def _too_long(name: str, value: str) -> str | None:
    limit = TEXT_FIELDS[name]
    if limit and len(value) > limit:
        return f"{FIELD_TARGETS[name]} is longer than {limit} characters ({len(value)})."
    return None
