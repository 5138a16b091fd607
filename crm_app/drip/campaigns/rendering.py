"""Merge-field rendering in a sandbox, and the checks a template passes before it is saved."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, Template, TemplateSyntaxError, nodes
from jinja2.exceptions import SecurityError, UndefinedError
from jinja2.sandbox import ImmutableSandboxedEnvironment
from markupsafe import escape

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
_KNOWN_NAMES = frozenset(MERGE_FIELDS) | SCALAR_MERGE_FIELDS | _BUILTIN_NAMES


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


def build_context(
    contact_fields: dict[str, Any],
    sender: dict[str, str],
    *,
    unsubscribe_url: str = PREVIEW_UNSUBSCRIBE_URL,
) -> dict[str, Any]:
    """The template's variables; delivery passes the contact's real unsubscribe link."""
    return {
        "unsubscribe_url": unsubscribe_url,
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
            # company.* is filled from the contact's own fields.
            elif isinstance(attr.node, nodes.Name) and attr.node.name == "company":
                used.add(_COMPANY_SOURCE.get(attr.attr, attr.attr))
    return sorted(f for f in used if f != "custom" and not contact_fields.get(f))


_COMPANY_SOURCE = {"name": "company", "industry": "industry"}


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
