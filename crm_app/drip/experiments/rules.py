"""Rules on a contact's fields, shared by content blocks and step conditions:
`industry is "Manufacturing"`, `custom.company_size greater than 50`.

A rule is a dict {"field", "op", "value"}; `field` is a contact field or
"custom.<key>". Comparisons ignore case and surrounding spaces; "greater than" and
"less than" compare numbers (a value that is not a number never matches)."""

from __future__ import annotations

import re
from typing import Any

import sqlalchemy as sa

from crm_app.models import Contact

CONTACT_FIELDS = (
    "industry",
    "company",
    "title",
    "contact_type",
    "first_name",
    "last_name",
    "email",
)
OPS = {
    "is": "is",
    "is_not": "is not",
    "contains": "contains",
    "gt": "greater than",
    "lt": "less than",
    "is_set": "is set",
    "is_empty": "is empty",
}
VALUELESS_OPS = frozenset({"is_set", "is_empty"})
CUSTOM_PREFIX = "custom."
_CUSTOM_KEY = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_ .-]{0,59}$")
VALUE_MAX = 200


def field_value(contact_fields: dict[str, Any], field: str) -> str:
    """The field's value for a contact (the merge-field dict of rendering.contact_context)."""
    if field.startswith(CUSTOM_PREFIX):
        value = (contact_fields.get("custom") or {}).get(field[len(CUSTOM_PREFIX) :])
    else:
        value = contact_fields.get(field)
    return "" if value is None else str(value).strip()


def _number(text: str) -> float | None:
    try:
        return float(text.replace(",", ""))
    except ValueError:
        return None


def matches(rule: dict[str, str], contact_fields: dict[str, Any]) -> bool:
    actual = field_value(contact_fields, rule["field"])
    op, wanted = rule["op"], (rule.get("value") or "").strip()
    if op == "is_set":
        return actual != ""
    if op == "is_empty":
        return actual == ""
    if op in ("gt", "lt"):
        have, limit = _number(actual), _number(wanted)
        if have is None or limit is None:
            return False
        return have > limit if op == "gt" else have < limit
    a, w = actual.casefold(), wanted.casefold()
    if op == "is":
        return a == w
    if op == "is_not":
        return a != w
    return w in a  # contains


def describe(rule: dict[str, str]) -> str:
    """How people read a rule: 'industry is "Manufacturing"'."""
    op = OPS.get(rule.get("op", ""), rule.get("op", ""))
    if rule.get("op") in VALUELESS_OPS:
        return f"{rule['field']} {op}"
    return f'{rule["field"]} {op} "{rule.get("value", "")}"'


def rule_errors(field: str, op: str, value: str) -> dict[str, str]:
    """A message per part of a rule that cannot be saved (field, op, value)."""
    errors: dict[str, str] = {}
    field, value = field.strip(), value.strip()
    if field.startswith(CUSTOM_PREFIX):
        if not _CUSTOM_KEY.match(field[len(CUSTOM_PREFIX) :]):
            errors["field"] = "Name the custom field after 'custom.', e.g. custom.company_size."
    elif field not in CONTACT_FIELDS:
        errors["field"] = (
            f"Unknown field {field!r}: use one of {', '.join(CONTACT_FIELDS)} or custom.<name>."
        )
    if op not in OPS:
        errors["op"] = "Choose how to compare."
    elif op not in VALUELESS_OPS:
        if not value:
            errors["value"] = "Enter the value to compare with."
        elif len(value) > VALUE_MAX:
            errors["value"] = f"At most {VALUE_MAX} characters."
        elif op in ("gt", "lt") and _number(value) is None:
            errors["value"] = "Enter a number to compare with."
    return errors


def missing_custom_fields(session, fields: set[str]) -> set[str]:
    """The custom fields among `fields` ("custom.x") that no contact has any more: a
    rule on one can never match (the campaign page warns about it). One short query
    per custom field, stopping at the first contact that has it."""
    missing = set()
    for field in fields:
        if not field.startswith(CUSTOM_PREFIX):
            continue
        key = field[len(CUSTOM_PREFIX) :]
        found = session.scalar(
            sa.select(Contact.id)
            .where(Contact.custom_fields[key].as_string().is_not(None))
            .limit(1)
        )
        if found is None:
            missing.add(field)
    return missing
