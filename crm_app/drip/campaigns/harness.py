"""The test harness: any email rendered for the sample contact or a real one (HTML,
plain text, and the merge fields missing or empty for that contact), the editor's
unsaved text rendered through the same sandbox and checks, and "send a test".

A test goes through the configured backend (SendGrid or the Outbox) with its
subject prefixed "[Test]" and is recorded as a TestSend: never a message of an
enrolment, so it never counts in analytics and never moves a contact on. While the
email runs an A/B test, a test sends the base text or one variant's, chosen by key;
a variant's test is prefixed "[Test B]" and its TestSend row keeps the key.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from email_validator import EmailNotValidError, validate_email

from crm_app.drip.campaigns.rendering import (
    SAMPLE_CONTACT,
    RenderedEmail,
    TemplateRenderError,
    WorkspaceSender,
    build_context,
    contact_context,
    empty_merge_fields,
    render_email,
    sender_for_contact,
)
from crm_app.drip.campaigns.step_input import StepInput, cleaned_texts, template_errors
from crm_app.drip.common.errors import FieldErrors
from crm_app.drip.delivery.backends import (
    Backend,
    OutgoingEmail,
    PermanentSendError,
    TransientSendError,
    UnknownOutcomeError,
    send_one,
)
from crm_app.drip.delivery.compose import with_footer
from crm_app.drip.experiments.blocks import BlockChooser, with_blocks
from crm_app.drip.experiments.variants import choose, running_variants, variant_texts
from crm_app.models import CampaignStep, Contact, ContentBlock, StepVariant, TestSend, utcnow

log = logging.getLogger(__name__)

TEST_PREFIX = "[Test] "


class SendTestError(FieldErrors):
    """A test that cannot be sent (bad address, a template that does not render)."""


@dataclass(frozen=True)
class Preview:
    """An email as one contact would get it, or why it cannot be rendered."""

    email: RenderedEmail | None
    errors: dict[str, str] = field(default_factory=dict)  # field (or "render") -> message
    empty_fields: list[str] = field(default_factory=list)
    contact: Contact | None = None  # None: the sample contact
    # Each content block the email used -> which rule gave its text ("default").
    blocks: dict[str, str] = field(default_factory=dict)


def preview_context(
    contact: Contact | None,
    viewer_sender: dict[str, str],
    workspace: WorkspaceSender,
    *,
    blocks: dict[str, ContentBlock] | None = None,
) -> dict[str, Any]:
    """The merge fields a preview renders with: the sample contact with the viewer as
    sender, or a real contact with the sender its real emails carry (its owner); with
    `blocks`, `block("name")` chooses among them for that contact."""
    if contact is None:
        context = build_context(SAMPLE_CONTACT, viewer_sender)
    else:
        context = build_context(contact_context(contact), sender_for_contact(contact, workspace))
    return with_blocks(context, blocks) if blocks is not None else context


def render_preview(
    subject: str,
    html: str,
    text: str,
    context: dict[str, Any],
    contact: Contact | None,
    workspace: WorkspaceSender | None = None,
) -> Preview:
    """The email for `context`; with `workspace`, the footer every email gets too
    (compose.with_footer), so that a preview shows what goes."""
    empty = empty_merge_fields([subject, html, text], context)
    try:
        email = render_email(subject, html, text, context)
    except TemplateRenderError as error:
        return Preview(None, {"render": str(error)}, empty, contact)
    if workspace is not None:
        email = with_footer(email, context["unsubscribe_url"], workspace)
    chooser = context.get("block")
    applied = dict(chooser.applied) if isinstance(chooser, BlockChooser) else {}
    return Preview(email, {}, empty, contact, applied)


def preview_step(
    step: CampaignStep,
    context: dict[str, Any],
    contact: Contact | None,
    variant: StepVariant | None = None,
    workspace: WorkspaceSender | None = None,
) -> Preview:
    """The saved email, or one variant of its running A/B test, for `context` (with
    `workspace`: its footer, as render_preview)."""
    return render_preview(*variant_texts(step, variant), context, contact, workspace)


def variant_to_preview(
    session, step: CampaignStep, contact: Contact | None, requested: str | None
) -> StepVariant | None:
    """The version a preview shows: the variant asked for by key ("" is the base text),
    else the one a real contact gets from the running test, else the base text.
    SendTestError for a key the email does not run."""
    if requested is not None:
        return variant_to_test(session, step, requested)
    if contact is None:
        return None
    return choose(running_variants(session, step), step.id, contact.id)


def preview_draft(
    data: StepInput,
    context: dict[str, Any],
    contact: Contact | None,
    viewer_sender: dict[str, str],
    workspace: WorkspaceSender | None = None,
) -> Preview:
    """The editor's unsaved text: the checks a save runs (a message per field), then
    the render for the chosen contact (with `workspace`: its footer)."""
    texts = cleaned_texts(data)
    errors = template_errors(texts, viewer_sender)
    if errors:
        empty = empty_merge_fields(list(texts.values()), context)
        return Preview(None, errors, empty, contact)
    return render_preview(
        texts["subject"], texts["body_html"], texts["body_text"], context, contact, workspace
    )


# ---------------------------------------------------------------- send a test


def recipient_for_test(to_email: str, viewer_email: str, may_choose: bool) -> str:
    """The address a test goes to: the viewer's own, or (admins) any valid one typed."""
    wanted = (to_email or "").strip() or viewer_email
    if not may_choose and wanted.lower() != viewer_email.lower():
        raise SendTestError({"to_email": "Only admins can send a test to another address."})
    try:
        return validate_email(wanted, check_deliverability=False).normalized
    except EmailNotValidError as invalid:
        raise SendTestError({"to_email": f"Not a valid email address: {invalid}"}) from None


def subject_prefix(variant_key: str = "") -> str:
    """The subject prefix: "[Test] " for the base text, "[Test B] " for variant B's."""
    return f"[Test {variant_key}] " if variant_key else TEST_PREFIX


def variant_to_test(session, step: CampaignStep, variant_key: str) -> StepVariant | None:
    """The running variant a test asks for by key (None: the base text); SendTestError
    when the email runs no such variant (a test that ended, a key typed by hand)."""
    key = (variant_key or "").strip()
    if not key:
        return None
    running = running_variants(session, step)
    for variant in running:
        if variant.key == key:
            return variant
    if not running:
        problem = "This email runs no A/B test now: send the base text."
    else:
        keys = ", ".join(v.key for v in running)
        problem = f"Choose Base or a variant of the running A/B test ({keys})."
    raise SendTestError({"variant": problem})


def _test_footer(step: CampaignStep, actor: str, variant: StepVariant | None) -> tuple[str, str]:
    which = f", variant {variant.key}" if variant is not None else ""
    note = (
        f"A test of email {step.position} of {step.campaign.name} (version {step.version}"
        f"{which}), sent by {actor}. Real emails end with an unsubscribe link here."
    )
    return f'\n<p style="font-size:12px;color:#666;margin-top:24px">{note}</p>', f"\n\n--\n{note}\n"


def send_test(
    session,
    step: CampaignStep,
    recipient: str,
    context: dict[str, Any],
    *,
    contact: Contact | None,
    backend: Backend,
    actor: str,
    variant_key: str = "",
    now: datetime | None = None,
) -> TestSend:
    """Render the saved email (or its running variant `variant_key`) for `context` and
    send it to `recipient` now, through `backend`; the TestSend row records what went
    and how it ended. Raises SendTestError (nothing sent, nothing recorded) when the
    variant is not one the email runs or the email does not render."""
    variant = variant_to_test(session, step, variant_key)
    try:
        rendered = render_email(*variant_texts(step, variant), context)
    except TemplateRenderError as error:
        raise SendTestError({"step": str(error)}) from None
    html_note, text_note = _test_footer(step, actor, variant)
    row = TestSend(
        step_id=step.id,
        template_version=step.version,
        contact_id=contact.id if contact is not None else None,
        to_email=recipient,
        subject=subject_prefix(variant.key if variant else "") + rendered.subject,
        variant_key=variant.key if variant else "",
        html=rendered.html + html_note,
        text=rendered.text.rstrip() + text_note,
        backend=backend.name,
        sent_by=actor,
        sent_at=now or utcnow(),
    )
    session.add(row)
    session.flush()  # its id travels in custom_args, so an event never looks like a message's
    outgoing = OutgoingEmail(
        message_id=0,
        to_email=recipient,
        to_name="",
        subject=row.subject,
        html=row.html,
        text=row.text,
        headers={},
        custom_args={"test_send_id": str(row.id)},
    )
    try:
        row.provider_message_id = send_one(backend, outgoing)
        row.status = "sent"
    except (TransientSendError, PermanentSendError, UnknownOutcomeError) as error:
        row.status, row.error = "failed", str(error)
    except Exception as error:  # a test must end with a message, whatever the backend did
        log.exception("test send %s failed", row.id)
        row.status, row.error = "failed", f"unexpected error: {error}"
    return row


def recent_test_sends(session, step: CampaignStep | None = None, limit: int = 20) -> list[TestSend]:
    """The latest tests, newest first: of one email, or of every one (the Outbox)."""
    query = sa.select(TestSend).order_by(TestSend.sent_at.desc(), TestSend.id.desc()).limit(limit)
    if step is not None:
        query = query.where(TestSend.step_id == step.id)
    return list(session.scalars(query))
