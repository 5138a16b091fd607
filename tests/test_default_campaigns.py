"""Tests for the default drip campaigns shipped as TOML data."""

from __future__ import annotations

import importlib
import re
import sys
from pathlib import Path
from typing import Any

import jinja2
import pytest
from jinja2 import meta, nodes
from jinja2.sandbox import SandboxedEnvironment

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# The repository root may not be on sys.path when pytest runs without a config.
_campaigns_module = importlib.import_module("crm_app.default_campaigns")
CAMPAIGN_FILES = _campaigns_module.CAMPAIGN_FILES
load_default_campaigns = _campaigns_module.load_default_campaigns
validate_campaign = _campaigns_module.validate_campaign
from crm_app.drip.campaigns.rendering import (  # noqa: E402
    MERGE_FIELDS,
    PREVIEW_UNSUBSCRIBE_URL,
    SCALAR_MERGE_FIELDS,
)
from crm_app.drip.campaigns.step_input import TEMPLATE_FIELDS, StepInput, validate_step  # noqa: E402

EXPECTED_COUNTS = {"networking": 8, "lead": 6, "prospect": 5, "client": 4}
# What the editor would accept: the default campaigns obey the same merge-field rule.
ALLOWED_VARIABLES = set(MERGE_FIELDS) | SCALAR_MERGE_FIELDS
ALLOWED_ATTRIBUTES = MERGE_FIELDS

SENDER = {
    "name": "Alex Morgan",
    "first_name": "Alex",
    "title": "Principal Consultant",
    "company": "Morgan & Reed Consulting",
    "email": "alex@morganreed.example",
    "phone": "+1 555 0100",
    "website": "https://morganreed.example",
    "signature": "Alex Morgan\nPrincipal Consultant\nMorgan & Reed Consulting",
}

FULL_CONTEXT: dict[str, Any] = {
    "contact": {
        "first_name": "Jamie",
        "last_name": "Lee",
        "full_name": "Jamie Lee",
        "email": "jamie@acme.example",
        "phone": "+1 555 0199",
        "company": "Acme Logistics",
        "title": "Head of Operations",
        "industry": "logistics",
        "contact_type": "lead",
        "custom": {
            "met_at": "the Ops Summit",
            "interest": "process automation",
            "project": "the fulfilment review",
        },
    },
    "company": {"name": "Acme Logistics", "industry": "logistics"},
    "sender": SENDER,
    "unsubscribe_url": PREVIEW_UNSUBSCRIBE_URL,
}

EMPTY_CONTEXT: dict[str, Any] = {
    "contact": {
        "first_name": "",
        "last_name": "",
        "full_name": "",
        "email": "jamie@acme.example",
        "phone": "",
        "company": "",
        "title": "",
        "industry": "",
        "contact_type": "lead",
        "custom": {},
    },
    "company": {"name": "", "industry": ""},
    "sender": SENDER,
    "unsubscribe_url": PREVIEW_UNSUBSCRIBE_URL,
}

EMPTY_GREETING = re.compile(r"^\s*(hi|hello|hey|dear|good \w+)\s*[,!:]", re.IGNORECASE)


@pytest.fixture(scope="module")
def campaigns() -> list[dict[str, Any]]:
    return load_default_campaigns()


@pytest.fixture(scope="module")
def env() -> SandboxedEnvironment:
    return SandboxedEnvironment(autoescape=True, undefined=jinja2.StrictUndefined)


def all_templates(campaigns: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    """(label, field, source) for every template in every campaign."""
    return [
        (f"{campaign['slug']} step {number} {field}", field, step[field])
        for campaign in campaigns
        for number, step in enumerate(campaign["steps"], start=1)
        for field in TEMPLATE_FIELDS
    ]


def strip_tags(html: str) -> str:
    return re.sub(r"<[^>]+>", "", html)


def test_loads_in_file_order(campaigns: list[dict[str, Any]]) -> None:
    assert [f"{c['slug']}.toml" for c in campaigns] == list(CAMPAIGN_FILES)


def test_step_counts(campaigns: list[dict[str, Any]]) -> None:
    assert {c["slug"]: len(c["steps"]) for c in campaigns} == EXPECTED_COUNTS


def test_contact_types_distinct_and_mapped(campaigns: list[dict[str, Any]]) -> None:
    types = [c["contact_type"] for c in campaigns]
    assert len(set(types)) == len(types)
    assert set(types) == set(EXPECTED_COUNTS)
    assert len({c["slug"] for c in campaigns}) == len(campaigns)


def test_goals(campaigns: list[dict[str, Any]]) -> None:
    order = ["networking", "lead", "prospect", "client"]
    for campaign in campaigns:
        goal = campaign["goal_contact_type"]
        if campaign["contact_type"] == "client":
            assert goal == ""
        else:
            assert order.index(goal) > order.index(campaign["contact_type"])
        assert campaign["goal_days"] > 0


def test_delays(campaigns: list[dict[str, Any]]) -> None:
    for campaign in campaigns:
        delays = [step["delay_days"] for step in campaign["steps"]]
        assert delays[0] == 0, campaign["slug"]
        assert all(d > 0 for d in delays[1:]), campaign["slug"]


def test_subjects_distinct(campaigns: list[dict[str, Any]]) -> None:
    subjects = [step["subject"] for c in campaigns for step in c["steps"]]
    assert len(subjects) == sum(EXPECTED_COUNTS.values())
    assert len(set(subjects)) == len(subjects)


def test_steps_have_html_and_text(campaigns: list[dict[str, Any]]) -> None:
    for campaign in campaigns:
        for step in campaign["steps"]:
            assert step["subject"].strip()
            assert step["body_html"].strip()
            assert step["body_text"].strip()
            assert "<p>" in step["body_html"]
            # The plain text is written as text, not an HTML copy.
            assert not re.search(r"<[a-zA-Z/][^>]*>", step["body_text"])
            assert "&ldquo;" not in step["body_text"]


def test_bodies_distinct(campaigns: list[dict[str, Any]]) -> None:
    for field in ("body_html", "body_text"):
        bodies = [step[field] for c in campaigns for step in c["steps"]]
        assert len(set(bodies)) == len(bodies)


def test_every_email_links_unsubscribe_as_the_editor_requires(
    campaigns: list[dict[str, Any]],
) -> None:
    for campaign in campaigns:
        for step in campaign["steps"]:
            assert "{{ unsubscribe_url }}" in step["body_html"], step["subject"]
            assert "{{ unsubscribe_url }}" in step["body_text"], step["subject"]
            data = StepInput(
                step["subject"], step["body_html"], step["body_text"], str(step["delay_days"])
            )
            validate_step(data, SENDER)  # raises StepEditError when the editor would refuse


def test_each_campaign_has_conditional(campaigns: list[dict[str, Any]]) -> None:
    for campaign in campaigns:
        assert any(
            "{% if" in step[field] for step in campaign["steps"] for field in TEMPLATE_FIELDS
        ), campaign["slug"]


def test_templates_use_only_known_variables(
    campaigns: list[dict[str, Any]], env: SandboxedEnvironment
) -> None:
    for label, _field, source in all_templates(campaigns):
        ast = env.parse(source)
        assert meta.find_undeclared_variables(ast) <= ALLOWED_VARIABLES, label
        for node in ast.find_all(nodes.Getattr):
            if isinstance(node.node, nodes.Name) and node.node.name in ALLOWED_ATTRIBUTES:
                assert node.attr in ALLOWED_ATTRIBUTES[node.node.name], (
                    f"{label}: unknown field {node.node.name}.{node.attr}"
                )


@pytest.mark.parametrize("context", [FULL_CONTEXT, EMPTY_CONTEXT], ids=["full", "empty"])
def test_templates_render(
    campaigns: list[dict[str, Any]], env: SandboxedEnvironment, context: dict[str, Any]
) -> None:
    for label, field, source in all_templates(campaigns):
        output = env.from_string(source).render(**context)
        assert output.strip(), label
        assert "None" not in output, label
        plain = strip_tags(output) if field == "body_html" else output
        assert not EMPTY_GREETING.match(plain), f"{label}: {plain[:40]!r}"
        assert not re.search(r" [,.?!]", plain), f"{label}: dangling punctuation"
        if field == "subject":
            assert "\n" not in output, label
        if context is FULL_CONTEXT and field != "subject":
            assert "Jamie" in output, label


def test_full_context_uses_custom_fields(
    campaigns: list[dict[str, Any]], env: SandboxedEnvironment
) -> None:
    text = {
        c["slug"]: "".join(
            env.from_string(step["body_text"]).render(**FULL_CONTEXT) for step in c["steps"]
        )
        for c in campaigns
    }
    assert "the Ops Summit" in text["networking"]
    assert "process automation" in text["lead"]
    assert "the fulfilment review" in text["prospect"]


def test_validate_rejects_missing_key() -> None:
    campaign = load_default_campaigns()[0]
    broken = {k: v for k, v in campaign.items() if k != "goal_days"}
    with pytest.raises(ValueError, match="goal_days"):
        validate_campaign(broken, "broken.toml")


def test_validate_rejects_malformed_step() -> None:
    campaign = dict(load_default_campaigns()[0])
    campaign["steps"] = [{"delay_days": 0, "subject": "Hi", "body_text": "x"}]
    with pytest.raises(ValueError, match="step 1.*body_html"):
        validate_campaign(campaign, "broken.toml")
    campaign["steps"] = [{"delay_days": "3", "subject": "Hi", "body_text": "x", "body_html": "y"}]
    with pytest.raises(ValueError, match="delay_days"):
        validate_campaign(campaign, "broken.toml")
