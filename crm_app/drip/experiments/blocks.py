"""Content blocks: named, reusable text chosen per contact by rules, with a default,
used in any email as {{ block("intro") }}.

A block's rules are tried in order; the first that matches the contact gives the
text, else the default. Each text is itself a small template (merge fields allowed,
no block inside a block), rendered in the email's own sandbox and budget. In an HTML
email the text is escaped and its line breaks become <br>, like a signature.

A block used by a live email (a step of a campaign that is not archived, or a running
variant of one) cannot be deleted; a step that names an unknown block is not saved.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from jinja2 import TemplateSyntaxError, nodes

from crm_app.drip.campaigns.rendering import (
    SAMPLE_CONTACT,
    SAMPLE_SENDER,
    Signature,
    TemplateRenderError,
    build_context,
    check_template,
    render_email,
)
from crm_app.drip.common.errors import FieldErrors
from crm_app.drip.common.sql import saved_unless_taken
from crm_app.drip.experiments.rules import describe, matches, rule_errors
from crm_app.drip.team.audit import record_audit
from crm_app.models import Campaign, CampaignStep, ContentBlock, StepVariant

BLOCK_NAME = re.compile(r"^[a-z][a-z0-9_]{0,59}$")
CONTENT_MAX = 20_000
MAX_RULES = 20
_CACHE_KEY = "content_blocks"


class BlockError(FieldErrors):
    """A block that cannot be saved or deleted; `errors` per field ("rule-2-value")."""


@dataclass
class RuleInput:
    field: str
    op: str
    value: str
    content: str


def block_names(source: str) -> set[str]:
    """The blocks a template calls: block("name") with a literal name."""
    try:
        tree = _parse(source)
    except TemplateSyntaxError:
        return set()
    names = set()
    for call in tree.find_all(nodes.Call):
        if isinstance(call.node, nodes.Name) and call.node.name == "block":
            if call.args and isinstance(call.args[0], nodes.Const):
                names.add(str(call.args[0].value))
    return names


def _parse(source: str) -> nodes.Template:
    from jinja2 import Environment

    return Environment().parse(source)


def _uses_block(source: str) -> bool:
    try:
        tree = _parse(source)
    except TemplateSyntaxError:
        return False
    return any(n.name == "block" for n in tree.find_all(nodes.Name))


def _content_error(content: str) -> str | None:
    if len(content) > CONTENT_MAX:
        return f"At most {CONTENT_MAX:,} characters."
    if _uses_block(content):
        return "A block cannot use another block."
    problems = check_template(content)
    if problems:
        return " ".join(problems)
    try:
        render_email(content, "", "", build_context(SAMPLE_CONTACT, SAMPLE_SENDER))
    except TemplateRenderError as error:
        return str(error)
    return None


def validate_block(name: str, default_content: str, rules: list[RuleInput]) -> dict:
    """Cleaned values, or BlockError with a message per field."""
    errors: dict[str, str] = {}
    name = name.strip()
    if not BLOCK_NAME.match(name):
        errors["name"] = (
            "Use lower-case letters, digits and _ (starting with a letter), e.g. intro."
        )
    default_content = default_content.replace("\r\n", "\n").strip()
    if not default_content:
        errors["default_content"] = "Write the text contacts get when no rule matches."
    elif problem := _content_error(default_content):
        errors["default_content"] = problem
    kept = []
    filled = [r for r in rules if r.field.strip() or r.value.strip() or r.content.strip()]
    if len(filled) > MAX_RULES:
        errors["rules"] = f"At most {MAX_RULES} rules."
    for index, rule in enumerate(filled, start=1):
        for part, message in rule_errors(rule.field, rule.op, rule.value).items():
            errors[f"rule-{index}-{part}"] = message
        content = rule.content.replace("\r\n", "\n").strip()
        if not content:
            errors[f"rule-{index}-content"] = "Write the text for contacts this rule matches."
        elif problem := _content_error(content):
            errors[f"rule-{index}-content"] = problem
        kept.append(
            {
                "field": rule.field.strip(),
                "op": rule.op,
                "value": rule.value.strip(),
                "content": content,
            }
        )
    if errors:
        raise BlockError(errors)
    return {"name": name, "default_content": default_content, "rules": kept}


def save_block(
    session,
    block: ContentBlock | None,
    name: str,
    default_content: str,
    rules: list[RuleInput],
    *,
    actor: str,
) -> ContentBlock:
    """Create (block None) or update a block; BlockError when refused. Callers commit."""
    values = validate_block(name, default_content, rules)
    clash = session.scalar(
        sa.select(ContentBlock.id).where(
            ContentBlock.name == values["name"],
            ContentBlock.id != (block.id if block is not None else -1),
        )
    )
    taken = BlockError({"name": f"A block named {values['name']} already exists."})
    if clash is not None:
        raise taken
    if block is not None and block.name != values["name"] and live_uses(session, block.name):
        raise BlockError({"name": "Live emails use this name: rename it there first."})
    block = block if block is not None else ContentBlock()

    def save() -> None:
        session.add(block)
        block.name, block.default_content = values["name"], values["default_content"]
        block.rules = values["rules"]

    if not saved_unless_taken(session, save):  # saved under this name at once elsewhere
        raise taken
    forget_blocks(session)  # this session's later renders see the change
    record_audit(session, actor, "content_block.saved", "content_block", block.id, block.name)
    return block


def live_uses_by_block(session) -> dict[str, list[str]]:
    """Block name -> the live emails that use it: "Campaign, email 2" (a step of a
    campaign that is not archived) or "..., email 2 (variant B)" (a running variant of
    one). One pass: each live template is parsed once, whatever the number of blocks."""
    uses: dict[str, list[str]] = {}

    def note(texts: tuple[str, ...], where: str) -> None:
        for name in sorted(set().union(*(block_names(text) for text in texts))):
            uses.setdefault(name, []).append(where)

    live_steps = session.execute(
        sa.select(CampaignStep, Campaign.name)
        .join(Campaign, Campaign.id == CampaignStep.campaign_id)
        .where(Campaign.status != "archived")
        .order_by(Campaign.name, CampaignStep.position)
    )
    for step, campaign_name in live_steps:
        where = f"{campaign_name}, email {step.position}"
        note((step.subject, step.body_html, step.body_text), where)
    variants = session.execute(
        sa.select(StepVariant, CampaignStep.position, Campaign.name)
        .join(CampaignStep, CampaignStep.id == StepVariant.step_id)
        .join(Campaign, Campaign.id == CampaignStep.campaign_id)
        .where(StepVariant.retired_at.is_(None), Campaign.status != "archived")
        .order_by(Campaign.name, CampaignStep.position, StepVariant.key)
    )
    for variant, position, campaign_name in variants:
        where = f"{campaign_name}, email {position} (variant {variant.key})"
        note((variant.subject, variant.body_html, variant.body_text), where)
    return uses


def missing_blocks(session, campaign: Campaign) -> list[str]:
    """The campaign's emails (and running variants) that call a block that does not
    exist, each with the names: "email 2 (variant B): 'intro'". An archived campaign's
    emails are no live use, so their blocks can be deleted meanwhile; restored as is,
    every such email would fail to render at send."""
    known = set(session.scalars(sa.select(ContentBlock.name)))
    steps = sorted(campaign.steps, key=lambda step: step.position)
    running: dict[int, list[StepVariant]] = {}
    for variant in session.scalars(
        sa.select(StepVariant)
        .where(StepVariant.step_id.in_([s.id for s in steps] or [-1]))
        .where(StepVariant.retired_at.is_(None))
        .order_by(StepVariant.key)
    ):
        running.setdefault(variant.step_id, []).append(variant)
    problems = []
    for step in steps:
        sources = [(f"email {step.position}", step)]
        sources += [
            (f"email {step.position} (variant {v.key})", v) for v in running.get(step.id, [])
        ]
        for where, source in sources:
            texts = (source.subject, source.body_html, source.body_text)
            missing = sorted(set().union(*(block_names(text) for text in texts)) - known)
            if missing:
                problems.append(f"{where}: {', '.join(repr(name) for name in missing)}")
    return problems


def live_uses(session, name: str) -> list[str]:
    """The live emails that use block `name` (see live_uses_by_block)."""
    return live_uses_by_block(session).get(name, [])


def delete_block(session, block: ContentBlock, *, actor: str) -> None:
    """Delete a block no live email uses; BlockError lists the ones that do."""
    uses = live_uses(session, block.name)
    if uses:
        raise BlockError(
            {"delete": f"Used by live emails: {'; '.join(uses)}. Remove it there first."}
        )
    record_audit(session, actor, "content_block.deleted", "content_block", block.id, block.name)
    session.delete(block)
    forget_blocks(session)


def unknown_blocks(session, texts: dict[str, str]) -> dict[str, str]:
    """A message per template field that calls a block that does not exist."""
    known = set(session.scalars(sa.select(ContentBlock.name)))
    errors = {}
    for name, source in texts.items():
        missing = sorted(block_names(source) - known)
        if missing:
            errors[name] = "No content block named " + ", ".join(repr(m) for m in missing) + "."
    return errors


def all_blocks(session) -> dict[str, ContentBlock]:
    return {b.name: b for b in session.scalars(sa.select(ContentBlock).order_by(ContentBlock.name))}


def session_blocks(session) -> dict[str, ContentBlock]:
    """The blocks, read once per database session (a delivery thread's batch)."""
    cached = session.info.get(_CACHE_KEY)
    if cached is None:
        cached = session.info[_CACHE_KEY] = all_blocks(session)
    return cached


def forget_blocks(session) -> None:
    session.info.pop(_CACHE_KEY, None)


@dataclass
class BlockChooser:
    """`block` inside a template: the text of the named block for this contact. Notes
    which rule gave each block (`applied`), for the preview."""

    blocks: dict[str, ContentBlock]
    contact_fields: dict[str, Any]
    context: dict[str, Any] = field(default_factory=dict)
    applied: dict[str, str] = field(default_factory=dict)
    _depth: int = 0

    def choose(self, name: str) -> tuple[str, str]:
        """(the text's template, which rule gave it)."""
        block = self.blocks.get(name)
        if block is None:
            raise TemplateRenderError(f"No content block named {name!r}.")
        for index, rule in enumerate(block.rules or [], start=1):
            if matches(rule, self.contact_fields):
                return rule["content"], f"rule {index}: {describe(rule)}"
        return block.default_content, "default"

    def __call__(self, name: str) -> Signature:
        from crm_app.drip.campaigns.rendering import _compiled, _render

        if self._depth:
            raise TemplateRenderError("A block cannot use another block.")
        content, label = self.choose(str(name))
        self.applied[str(name)] = label
        self._depth += 1
        try:
            return Signature(_render(_compiled(False, content), self.context))
        finally:
            self._depth -= 1


def with_blocks(context: dict[str, Any], blocks: dict[str, ContentBlock]) -> dict[str, Any]:
    """The context with `block` choosing from `blocks` for its contact."""
    chooser = BlockChooser(blocks, context["contact"])
    chooser.context = context | {"block": chooser}
    return chooser.context
