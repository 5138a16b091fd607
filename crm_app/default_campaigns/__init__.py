"""Default drip campaigns shipped with Drip CRM, stored as TOML data files.

Each file defines one campaign (metadata plus ``[[steps]]``) whose subjects and
bodies are Jinja2 templates rendered against ``contact``, ``company`` and
``sender``.
"""

from __future__ import annotations

import tomllib
from importlib import resources
from typing import Any

CAMPAIGN_FILES = ("networking.toml", "lead.toml", "prospect.toml", "client.toml")

CONTACT_TYPES = ("networking", "lead", "prospect", "client")

CAMPAIGN_KEYS: dict[str, type] = {
    "slug": str,
    "name": str,
    "contact_type": str,
    "description": str,
    "goal_contact_type": str,
    "goal_days": int,
    "steps": list,
}

STEP_KEYS: dict[str, type] = {
    "delay_days": int,
    "subject": str,
    "body_text": str,
    "body_html": str,
}


def _check_type(value: Any, expected: type) -> bool:
    # bool is a subclass of int; ``goal_days = true`` must not pass as a number.
    if expected is int and isinstance(value, bool):
        return False
    return isinstance(value, expected)


def validate_campaign(data: dict[str, Any], source: str = "<campaign>") -> dict[str, Any]:
    """Check a parsed campaign dict and return it; raise ValueError if malformed."""
    missing = [key for key in CAMPAIGN_KEYS if key not in data]
    if missing:
        raise ValueError(f"{source}: missing required key(s): {', '.join(missing)}")
    unknown = sorted(set(data) - set(CAMPAIGN_KEYS))
    if unknown:
        raise ValueError(f"{source}: unknown key(s): {', '.join(unknown)}")
    for key, expected in CAMPAIGN_KEYS.items():
        if not _check_type(data[key], expected):
            raise ValueError(
                f"{source}: {key!r} must be {expected.__name__}, got {type(data[key]).__name__}"
            )
    for key in ("slug", "name", "contact_type", "description"):
        if not data[key].strip():
            raise ValueError(f"{source}: {key!r} must not be empty")
    if data["contact_type"] not in CONTACT_TYPES:
        raise ValueError(
            f"{source}: contact_type {data['contact_type']!r} is not one of {CONTACT_TYPES}"
        )
    if data["goal_contact_type"] not in (*CONTACT_TYPES, ""):
        raise ValueError(
            f"{source}: goal_contact_type {data['goal_contact_type']!r} "
            f"is not one of {CONTACT_TYPES} or empty"
        )
    if data["goal_days"] <= 0:
        raise ValueError(f"{source}: goal_days must be a positive integer")
    if not data["steps"]:
        raise ValueError(f"{source}: 'steps' must contain at least one step")

    for number, step in enumerate(data["steps"], start=1):
        where = f"{source}: step {number}"
        if not isinstance(step, dict):
            # ValueError (not TypeError) by contract: callers catch one error type.
            raise ValueError(f"{where} must be a table ([[steps]])")  # noqa: TRY004
        missing = [key for key in STEP_KEYS if key not in step]
        if missing:
            raise ValueError(f"{where}: missing required key(s): {', '.join(missing)}")
        unknown = sorted(set(step) - set(STEP_KEYS))
        if unknown:
            raise ValueError(f"{where}: unknown key(s): {', '.join(unknown)}")
        for key, expected in STEP_KEYS.items():
            if not _check_type(step[key], expected):
                raise ValueError(
                    f"{where}: {key!r} must be {expected.__name__}, got {type(step[key]).__name__}"
                )
        if step["delay_days"] < 0:
            raise ValueError(f"{where}: delay_days must not be negative")
        for key in ("subject", "body_text", "body_html"):
            if not step[key].strip():
                raise ValueError(f"{where}: {key!r} must not be empty")
    return data


def load_default_campaigns() -> list[dict[str, Any]]:
    """Parse and validate the default campaign files, in CAMPAIGN_FILES order."""
    package = resources.files(__name__)
    campaigns: list[dict[str, Any]] = []
    for filename in CAMPAIGN_FILES:
        try:
            data = tomllib.loads(package.joinpath(filename).read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"{filename}: invalid TOML: {exc}") from exc
        campaigns.append(validate_campaign(data, filename))

    for key in ("slug", "contact_type"):
        values = [campaign[key] for campaign in campaigns]
        if len(set(values)) != len(values):
            raise ValueError(f"default campaigns: duplicate {key} values: {values}")
    return campaigns
