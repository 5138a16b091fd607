"""What an email's form must hold before it is saved: the template fields (they parse,
use known merge fields, render for the sample contact and carry a visible unsubscribe
link), the delay, and the errors, one message per field. Used by the email editor
(steps.py), the A/B variants and the test harness. No HTTP in here."""

from __future__ import annotations

from dataclasses import dataclass, fields

from crm_app.drip.campaigns.rendering import (
    PREVIEW_UNSUBSCRIBE_URL,
    SAMPLE_CONTACT,
    TemplateRenderError,
    build_context,
    check_template,
    render_email,
)
from crm_app.drip.campaigns.unsubscribe_link import unsubscribe_link_problems
from crm_app.drip.common.errors import FieldErrors
from crm_app.drip.experiments.blocks import unknown_blocks

MAX_DELAY_DAYS = 365
SUBJECT_MAX = 300
# Gmail clips a message over 102 KB: no email needs a longer template.
TEMPLATE_MAX = 100_000
TEMPLATE_FIELDS = ("subject", "body_html", "body_text")
FIELD_LABELS = {"subject": "subject", "body_html": "HTML body", "body_text": "plain-text body"}


class StepEditError(FieldErrors):
    """An email edit that cannot be saved (broken template, bad delay...)."""


@dataclass(frozen=True)
class StepInput:
    subject: str
    body_html: str
    body_text: str
    delay_days: str
    position: str = ""  # a new email's place (1 = first); empty: after the last
    # The revision the form was opened at (step_revisions.step_revision); empty: not checked.
    revision: str = ""


# What the email form submits, by name (each as text).
STEP_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(StepInput))


def template_errors(values: dict[str, str], sender: dict[str, str]) -> dict[str, str]:
    """A message per template field that cannot be saved: empty, syntax, unknown merge
    field, a failure rendering it for the sample contact, or no visible unsubscribe
    link in either body."""
    errors: dict[str, str] = {}
    for name in TEMPLATE_FIELDS:
        if not values[name]:
            errors[name] = f"The {FIELD_LABELS[name]} is required."
        elif len(values[name]) > TEMPLATE_MAX:
            errors[name] = f"At most {TEMPLATE_MAX:,} characters."
        elif problems := check_template(values[name]):
            errors[name] = " ".join(problems)
    if len(values["subject"]) > SUBJECT_MAX:
        errors["subject"] = f"At most {SUBJECT_MAX} characters."
    # Parsing is not enough: a filter misused on real data fails only when rendering.
    context = build_context(SAMPLE_CONTACT, sender)
    for name in TEMPLATE_FIELDS:
        if name in errors:
            continue
        parts = {field: "" for field in TEMPLATE_FIELDS} | {name: values[name]}
        try:
            render_email(parts["subject"], parts["body_html"], parts["body_text"], context)
        except TemplateRenderError as failed:
            errors[name] = str(failed)
    if not errors:
        # Every email carries a visible unsubscribe link: both bodies must have it.
        email = render_email(values["subject"], values["body_html"], values["body_text"], context)
        errors.update(unsubscribe_link_problems(email.html, email.text, PREVIEW_UNSUBSCRIBE_URL))
    return errors


def parse_delay(raw: str | None) -> int | None:
    text = (raw or "").strip()
    if not (text.isascii() and text.isdigit()):  # int() alone reads "1_0" as 10
        return None
    try:
        delay = int(text)
    except ValueError:  # more digits than int() reads
        return None
    return delay if 0 <= delay <= MAX_DELAY_DAYS else None


def cleaned_texts(data: StepInput) -> dict[str, str]:
    """The template fields as saved: trimmed, with the browser's CRLF line ends as LF (a
    textarea posts CRLF; unchanged text must compare equal, not make a new version)."""
    return {
        name: (getattr(data, name) or "").replace("\r\n", "\n").strip() for name in TEMPLATE_FIELDS
    }


def validate_step(data: StepInput, sender: dict[str, str], session=None) -> dict:
    """Cleaned values, or StepEditError with one message per field (with a session: a
    content block the text calls must exist)."""
    values = cleaned_texts(data)
    errors = template_errors(values, sender)
    if session is not None:
        errors = unknown_blocks(session, values) | errors
    delay = parse_delay(data.delay_days)
    if delay is None:
        errors["delay_days"] = f"Enter a whole number of days from 0 to {MAX_DELAY_DAYS}."
    if errors:
        raise StepEditError(errors)
    return values | {"delay_days": delay}
