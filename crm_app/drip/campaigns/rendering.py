"""Merge-field rendering in a sandbox, and the checks a template passes before it is saved."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, Template, TemplateSyntaxError, nodes
from jinja2.exceptions import SecurityError, UndefinedError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from crm_app.config import Settings
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
    "sender": frozenset({"name", "first_name", "title", "company", "email", "phone", "website"}),
}


class TemplateRenderError(Exception):
    """A template failed to render; the message is meant for the user."""


# A template must never take the worker down: cap what one operator or one part may produce.
MAX_OPERAND_SIZE = 100_000
MAX_EXPONENT = 100
MAX_INT_BITS = 10_000
MAX_RENDERED_CHARS = 2_000_000


class _MailSandbox(ImmutableSandboxedEnvironment):
    """Immutable sandbox that also refuses `'x' * 10**9` and `(10**99) ** 99`."""

    # Intercepting also stops the compiler from constant-folding these at parse time.
    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and isinstance(right, int) and isinstance(left, int | float):
            bits = max(int(abs(left)).bit_length(), 1) * abs(right)
            if abs(right) > MAX_EXPONENT or bits > MAX_INT_BITS:
                raise SecurityError("a number is too large for an email template")
        if operator == "*":
            if isinstance(left, int) and isinstance(right, int):
                if left.bit_length() + right.bit_length() > MAX_INT_BITS:
                    raise SecurityError("a number is too large for an email template")
            for seq, times in ((left, right), (right, left)):
                if isinstance(seq, str | list | tuple) and isinstance(times, int):
                    if len(seq) * times > MAX_OPERAND_SIZE:
                        raise SecurityError("a repeated value is too long for an email template")
        return super().call_binop(context, operator, left, right)


def _environment(autoescape: bool) -> ImmutableSandboxedEnvironment:
    # Immutable sandbox: no attribute of Python internals, no mutation of the context.
    env = _MailSandbox(autoescape=autoescape, undefined=StrictUndefined)
    env.globals.pop("lipsum", None)  # lipsum(n=10**8) would only burn memory
    return env


_HTML_ENV = _environment(True)
_TEXT_ENV = _environment(False)


# Names a template may use besides the merge fields: loop helpers and the sandbox's globals.
_BUILTIN_NAMES = frozenset({"loop", "caller", "varargs", "kwargs"}) | frozenset(_TEXT_ENV.globals)


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
        elif name.name not in MERGE_FIELDS and name.name not in _BUILTIN_NAMES:
            errors.append(f"Unknown merge field {name.name!r}: use contact, company or sender.")
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


def sender_context(
    user: User | None, *, fallback_name: str, fallback_email: str, company: str, website: str
) -> dict[str, str]:
    """The `sender` merge fields: a user (the contact's owner, or the previewing user),
    else the configured sender identity; company and website come from the config."""
    name = ((user.name if user else "") or "").strip() or fallback_name
    return {
        "name": name,
        "first_name": name.split()[0] if name else "",
        "title": (user.title if user else "") or "",
        "company": company,
        "email": (user.email if user else "") or fallback_email,
        "phone": (user.phone if user else "") or "",
        "website": website,
    }


def sender_for_contact(contact: Contact, settings: Settings) -> dict[str, str]:
    """The `sender` of a real contact's emails: its owner, else the configured identity."""
    return sender_context(
        contact.owner,
        fallback_name=settings.mail_from_name,
        fallback_email=settings.mail_from_email,
        company=settings.sender_company,
        website=settings.sender_website,
    )


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


def _custom_keys(tree: nodes.Template) -> set[str]:
    """Custom fields a template reads: contact.custom.x, .get("x") and ["x"]."""

    def is_custom(node: nodes.Node) -> bool:
        return (
            isinstance(node, nodes.Getattr)
            and node.attr == "custom"
            and isinstance(node.node, nodes.Name)
            and node.node.name == "contact"
        )

    keys: set[str] = set()
    for attr in tree.find_all(nodes.Getattr):
        if is_custom(attr.node) and attr.attr != "get":
            keys.add(attr.attr)
    for call in tree.find_all(nodes.Call):
        target = call.node
        if isinstance(target, nodes.Getattr) and target.attr == "get" and is_custom(target.node):
            if call.args and isinstance(call.args[0], nodes.Const):
                keys.add(str(call.args[0].value))
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


def _render(env: ImmutableSandboxedEnvironment, source: str, context: dict[str, Any]) -> str:
    """Render in chunks so a runaway loop stops at MAX_RENDERED_CHARS instead of eating memory."""
    parts: list[str] = []
    size = 0
    for chunk in _compiled(bool(env.autoescape), source).generate(context):
        size += len(chunk)
        if size > MAX_RENDERED_CHARS:
            raise SecurityError("the rendered email is too long")
        parts.append(chunk)
    return "".join(parts)


def render_email(
    subject: str, body_html: str, body_text: str, context: dict[str, Any]
) -> RenderedEmail:
    """Render all three parts; HTML is autoescaped, the subject and text are not."""
    try:
        return RenderedEmail(
            subject=" ".join(_render(_TEXT_ENV, subject, context).split()),
            html=_render(_HTML_ENV, body_html, context),
            text=_render(_TEXT_ENV, body_text, context),
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
