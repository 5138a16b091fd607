"""Merge-field rendering in a sandbox, and the checks a template passes before it is saved."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, nodes
from jinja2.exceptions import SecurityError, UndefinedError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from crm_app.models import Contact

# The merge fields a template may use; anything else is an error at save time.
MERGE_FIELDS: dict[str, frozenset[str]] = {
    "contact": frozenset(
        {
            "first_name",
            "last_name",
            "full_name",
            "email",
            "phone",
            "company",
            "title",
            "industry",
            "contact_type",
            "custom",
        }
    ),
    "company": frozenset({"name", "industry"}),
    "sender": frozenset({"name", "first_name", "title", "company", "email", "phone", "website"}),
}


class TemplateRenderError(Exception):
    """A template failed to render; the message is meant for the user."""


def _environment(autoescape: bool) -> ImmutableSandboxedEnvironment:
    # Immutable sandbox: no attribute of Python internals, no mutation of the context.
    return ImmutableSandboxedEnvironment(autoescape=autoescape, undefined=StrictUndefined)


_HTML_ENV = _environment(True)
_TEXT_ENV = _environment(False)


def check_template(source: str) -> list[str]:
    """Errors that stop a template from being saved: syntax and unknown merge fields."""
    try:
        tree = _TEXT_ENV.parse(source)
    except TemplateSyntaxError as error:
        return [f"Syntax error on line {error.lineno}: {error.message}"]
    errors: list[str] = []
    assigned = {n.name for n in tree.find_all(nodes.Name) if n.ctx in ("store", "param")}
    for name in tree.find_all(nodes.Name):
        if name.ctx == "load" and name.name not in MERGE_FIELDS and name.name not in assigned:
            errors.append(f"Unknown merge field {name.name!r}: use contact, company or sender.")
    for attr in tree.find_all(nodes.Getattr):
        if isinstance(attr.node, nodes.Name) and attr.node.name in MERGE_FIELDS:
            if attr.attr not in MERGE_FIELDS[attr.node.name]:
                errors.append(f"Unknown merge field {attr.node.name}.{attr.attr}.")
    return sorted(set(errors))


def contact_context(contact: Contact) -> dict[str, Any]:
    return {
        "first_name": contact.first_name or "",
        "last_name": contact.last_name or "",
        "full_name": " ".join(p for p in (contact.first_name, contact.last_name) if p),
        "email": contact.email,
        "phone": contact.phone or "",
        "company": contact.company or "",
        "title": contact.title or "",
        "industry": contact.industry or "",
        "contact_type": contact.contact_type,
        "custom": dict(contact.custom_fields or {}),
    }


def build_context(contact_fields: dict[str, Any], sender: dict[str, str]) -> dict[str, Any]:
    return {
        "contact": contact_fields,
        "company": {
            "name": contact_fields.get("company", ""),
            "industry": contact_fields.get("industry", ""),
        },
        "sender": {key: sender.get(key, "") for key in MERGE_FIELDS["sender"]},
    }


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    html: str
    text: str


def missing_fields(sources: list[str], contact_fields: dict[str, Any]) -> list[str]:
    """Contact fields a template uses that are empty for this contact (for previews)."""
    used: set[str] = set()
    for source in sources:
        try:
            tree = _TEXT_ENV.parse(source)
        except TemplateSyntaxError:
            continue
        for attr in tree.find_all(nodes.Getattr):
            if isinstance(attr.node, nodes.Name) and attr.node.name == "contact":
                used.add(attr.attr)
    return sorted(f for f in used if f != "custom" and not contact_fields.get(f))


def render_email(
    subject: str, body_html: str, body_text: str, context: dict[str, Any]
) -> RenderedEmail:
    """Render all three parts; HTML is autoescaped, the subject and text are not."""
    try:
        return RenderedEmail(
            subject=" ".join(_TEXT_ENV.from_string(subject).render(context).split()),
            html=_HTML_ENV.from_string(body_html).render(context),
            text=_TEXT_ENV.from_string(body_text).render(context),
        )
    except (TemplateSyntaxError, UndefinedError, SecurityError) as error:
        raise TemplateRenderError(f"The template cannot be rendered: {error}") from error
    except Exception as error:  # a template must never take the worker down
        raise TemplateRenderError(f"The template failed while rendering: {error}") from error


SAMPLE_CONTACT = {
    "first_name": "Alex",
    "last_name": "Morgan",
    "full_name": "Alex Morgan",
    "email": "alex.morgan@example.com",
    "phone": "+1 555 0100",
    "company": "Northwind Traders",
    "title": "Operations Director",
    "industry": "Logistics",
    "contact_type": "lead",
    "custom": {"met_at": "the Spring Growth Summit"},
}
