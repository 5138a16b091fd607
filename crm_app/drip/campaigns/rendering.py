"""Merge-field rendering in a sandbox, and the checks a template passes before it is saved."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, Template, TemplateSyntaxError, nodes
from jinja2.exceptions import SecurityError, UndefinedError
from jinja2.sandbox import ImmutableSandboxedEnvironment
from markupsafe import escape

from crm_app.drip.campaigns.sandbox import EmailSandbox, FieldValues, render_budget
from crm_app.models import Contact, User

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
    "sender": frozenset(
        {"name", "first_name", "title", "company", "email", "phone", "website", "signature"}
    ),
}
# Merge fields that are a value, not a group: the contact's own signed unsubscribe link,
# which every email's body must carry (unsubscribe_link.py checks it at save).
SCALAR_MERGE_FIELDS = frozenset({"unsubscribe_url"})
# What `{{ unsubscribe_url }}` renders as where no real contact is mailed (previews and
# the checks at save): a placeholder that reads as what it stands for.
PREVIEW_UNSUBSCRIBE_URL = "https://unsubscribe.example/personal-link"


class TemplateRenderError(Exception):
    """A template failed to render; the message is meant for the user."""


# A template must never take the worker down: each part's output is capped too (the
# sandbox caps the work and the values built on the way: see sandbox.py).
MAX_RENDERED_CHARS = 2_000_000


def _environment(autoescape: bool) -> ImmutableSandboxedEnvironment:
    # Immutable sandbox: no attribute of Python internals, no mutation of the context.
    return EmailSandbox(autoescape=autoescape, undefined=StrictUndefined)


_HTML_ENV = _environment(True)
_TEXT_ENV = _environment(False)


# Names a template may use besides the merge fields: loop helpers and the sandbox's globals.
_BUILTIN_NAMES = frozenset({"loop", "caller", "varargs", "kwargs"}) | frozenset(_TEXT_ENV.globals)
# Functions a template may call: block("name"), a content block chosen for the contact
# (crm_app/drip/experiments/blocks.py).
FUNCTION_NAMES = frozenset({"block"})
_KNOWN_NAMES = frozenset(MERGE_FIELDS) | SCALAR_MERGE_FIELDS | _BUILTIN_NAMES | FUNCTION_NAMES


def _internal_name_error(name: str) -> str:
    return f"{name!r} is not allowed: names starting with '_' are Python internals."


def check_template(source: str) -> list[str]:
    """Errors that stop a template from being saved: syntax, unknown merge fields, internals."""
    try:
        tree = _TEXT_ENV.parse(source)
    except TemplateSyntaxError as error:
        return [f"Syntax error on line {error.lineno}: {error.message}"]
    errors: list[str] = []
    assigned = {n.name for n in tree.find_all(nodes.Name) if n.ctx in ("store", "param")}
    for name in tree.find_all(nodes.Name):
        if name.ctx != "load" or name.name in assigned:
            continue
        if name.name.startswith("_"):
            errors.append(_internal_name_error(name.name))
        elif name.name not in _KNOWN_NAMES:
            errors.append(
                f"Unknown merge field {name.name!r}: use contact, company, sender or "
                "unsubscribe_url."
            )
    # `x.attr`, `x["attr"]` and `x|attr("attr")` all reach attributes: check all three.
    lookups: list[tuple[nodes.Node, str]] = [(a.node, a.attr) for a in tree.find_all(nodes.Getattr)]
    for item in tree.find_all(nodes.Getitem):
        if isinstance(item.arg, nodes.Const) and isinstance(item.arg.value, str):
            lookups.append((item.node, item.arg.value))
    for flt in tree.find_all(nodes.Filter):
        if flt.name == "attr" and flt.args and isinstance(flt.args[0], nodes.Const):
            if isinstance(flt.args[0].value, str) and flt.args[0].value.startswith("_"):
                errors.append(_internal_name_error(flt.args[0].value))
    for node, attr in lookups:
        if attr.startswith("_"):
            errors.append(_internal_name_error(attr))
        elif isinstance(node, nodes.Name) and node.name in MERGE_FIELDS:
            if node.name not in assigned and attr not in MERGE_FIELDS[node.name]:
                errors.append(f"Unknown merge field {node.name}.{attr}.")
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


@dataclass(frozen=True)
class WorkspaceSender:
    """Who speaks for the workspace (contacts with no owner), and the sender facts every
    email shares. `name` and `signature` are set by an admin on the Settings page (until
    then `name` is MAIL_FROM_NAME); the rest comes from the configuration."""

    name: str
    signature: str
    email: str  # the verified sender address (MAIL_FROM_EMAIL): every email's From
    company: str
    website: str
    # The workspace's postal address, in every email's footer (CAN-SPAM); "" until set.
    postal_address: str = ""
    # Who sends, as every email's footer says (SENDER_COMPANY, else MAIL_FROM_NAME).
    footer_name: str = ""


class Signature(str):
    """A sign-off block: plain lines in a text email; in an HTML email (autoescaped)
    each line escaped and joined with <br>, so `{{ sender.signature }}` fits both."""

    def __html__(self) -> str:
        return "<br>\n".join(str(escape(line)) for line in self.splitlines())


def speaking_owner(owner: User | None) -> User | None:
    """The owner who signs the emails of their contacts: an active user with a name.
    A disabled owner (someone who left) or one without a name leaves it to the workspace."""
    if owner is not None and owner.is_active_user and (owner.name or "").strip():
        return owner
    return None


def _one_line(text: str | None) -> str:
    # Names reach email headers (From): never a line break, nor doubled spaces.
    return " ".join((text or "").split())


def _composed_signature(*lines: str) -> Signature:
    """Name, title, company: each once (a workspace named like its company signs once)."""
    kept: list[str] = []
    for line in (_one_line(part) for part in lines):
        if line and line.lower() not in (k.lower() for k in kept):
            kept.append(line)
    return Signature("\n".join(kept))


def sender_context(owner: User | None, workspace: WorkspaceSender) -> dict[str, str]:
    """The `sender` merge fields: the contact's owner when one speaks (speaking_owner),
    else the workspace. The previews pass the previewing user as the owner, delivery
    the contact's owner. A workspace has no first name: templates sign off with
    `{{ sender.first_name | default(sender.name, true) }}` or `{{ sender.signature }}`."""
    speaker = speaking_owner(owner)
    if speaker is None:
        name = _one_line(workspace.name)
        signature = workspace.signature.strip()
        return {
            "name": name,
            "first_name": "",
            "title": "",
            "company": workspace.company,
            "email": workspace.email,
            "phone": "",
            "website": workspace.website,
            "signature": Signature(signature)
            if signature
            else _composed_signature(name, workspace.company),
        }
    name = _one_line(speaker.name)
    title = _one_line(speaker.title)
    signature = (speaker.signature or "").strip()
    return {
        "name": name,
        "first_name": name.split()[0],
        "title": title,
        "company": workspace.company,
        "email": speaker.email,
        "phone": _one_line(speaker.phone),
        "website": workspace.website,
        "signature": Signature(signature)
        if signature
        else _composed_signature(name, title, workspace.company),
    }


def sender_from_name(owner: User | None, workspace: WorkspaceSender) -> str:
    """The From name of an email: the speaking owner's own From name (or their name),
    else the workspace's sender name. The From address is always workspace.email."""
    speaker = speaking_owner(owner)
    if speaker is None:
        return _one_line(workspace.name)
    return _one_line(speaker.from_name) or _one_line(speaker.name)


def sender_for_contact(contact: Contact, workspace: WorkspaceSender) -> dict[str, str]:
    """The `sender` of a real contact's emails: its owner when one speaks, else the
    workspace (what delivery's compose uses)."""
    return sender_context(contact.owner, workspace)


def build_context(
    contact_fields: dict[str, Any],
    sender: dict[str, str],
    *,
    unsubscribe_url: str = PREVIEW_UNSUBSCRIBE_URL,
) -> dict[str, Any]:
    """The template's variables; delivery passes the contact's real unsubscribe link.
    `block` renders nothing here: blocks.with_blocks gives it the blocks to choose from."""
    # FieldValues: `contact.custom.items` is the field named items, not the dict's method.
    custom = FieldValues(contact_fields.get("custom") or {})
    return {
        "block": _no_block,
        "unsubscribe_url": unsubscribe_url,
        "contact": contact_fields | {"custom": custom},
        "company": {
            "name": contact_fields.get("company", ""),
            "industry": contact_fields.get("industry", ""),
        },
        "sender": {key: sender.get(key, "") for key in MERGE_FIELDS["sender"]},
    }


def _no_block(name: str) -> str:
    """`block` where no blocks were given (a save's checks, readable names)."""
    return ""


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    html: str
    text: str


def _custom_keys(tree: nodes.Template) -> set[str]:
    """Custom fields a template reads: contact.custom.x, .get("x") and ["x"]. A called
    `contact.custom.get(...)` or `.items()` is a method; uncalled, `.get` is a field."""

    def is_custom(node: nodes.Node) -> bool:
        return (
            isinstance(node, nodes.Getattr)
            and node.attr == "custom"
            and isinstance(node.node, nodes.Name)
            and node.node.name == "contact"
        )

    keys: set[str] = set()
    called: set[int] = set()
    for call in tree.find_all(nodes.Call):
        target = call.node
        if isinstance(target, nodes.Getattr) and is_custom(target.node):
            called.add(id(target))
            if target.attr == "get" and call.args and isinstance(call.args[0], nodes.Const):
                keys.add(str(call.args[0].value))
    for attr in tree.find_all(nodes.Getattr):
        if is_custom(attr.node) and id(attr) not in called:
            keys.add(attr.attr)
    for item in tree.find_all(nodes.Getitem):
        if is_custom(item.node) and isinstance(item.arg, nodes.Const):
            keys.add(str(item.arg.value))
    return keys


def empty_merge_fields(sources: list[str], context: dict[str, Any]) -> list[str]:
    """Merge fields the templates use that are missing or empty in this context (a
    contact, its company and the sender), as written: "contact.first_name",
    "contact.custom.met_at", "sender.title". A preview lists them: each one renders as
    its fallback, or as nothing."""
    empty: set[str] = set()
    for source in sources:
        try:
            tree = _TEXT_ENV.parse(source)
        except TemplateSyntaxError:
            continue
        for attr in tree.find_all(nodes.Getattr):
            owner = attr.node
            if isinstance(owner, nodes.Name) and owner.name in MERGE_FIELDS:
                if attr.attr != "custom" and not context[owner.name].get(attr.attr):
                    empty.add(f"{owner.name}.{attr.attr}")
        custom = context["contact"].get("custom") or {}
        empty |= {f"contact.custom.{key}" for key in _custom_keys(tree) if not custom.get(key)}
    return sorted(empty)


@lru_cache(maxsize=512)
def _compiled(autoescape: bool, source: str) -> Template:
    """The compiled template for this source: compiling costs far more than rendering, and a
    campaign's few steps are rendered for thousands of contacts. Keyed by the source itself,
    so an edited step compiles afresh; a template that fails to compile is not cached."""
    return (_HTML_ENV if autoescape else _TEXT_ENV).from_string(source)


def _render(template: Template, context: dict[str, Any]) -> str:
    """Render in chunks so a runaway loop stops at MAX_RENDERED_CHARS instead of eating memory."""
    parts: list[str] = []
    size = 0
    for chunk in template.generate(context):
        size += len(chunk)
        if size > MAX_RENDERED_CHARS:
            raise SecurityError("the rendered email is too long")
        parts.append(chunk)
    return "".join(parts)


def render_email(
    subject: str, body_html: str, body_text: str, context: dict[str, Any]
) -> RenderedEmail:
    """Render all three parts on one budget (sandbox.py); HTML is autoescaped, the
    subject and text are not."""
    try:
        # Compiled outside the budget: nothing a template computes is folded in at compile time.
        templates = (
            _compiled(False, subject),
            _compiled(True, body_html),
            _compiled(False, body_text),
        )
        with render_budget():
            subject_text, html, text = (_render(t, context) for t in templates)
        return RenderedEmail(subject=" ".join(subject_text.split()), html=html, text=text)
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

# The sender the sample renders use when no real one is at hand (an email's readable
# name in analytics or on the timeline): the configured identity's defaults.
SAMPLE_SENDER = {
    "name": "Sam Taylor",
    "first_name": "Sam",
    "title": "Account Manager",
    "company": "Drip CRM",
    "email": "hello@example.com",
    "phone": "+1 555 0199",
    "website": "https://example.com",
}
