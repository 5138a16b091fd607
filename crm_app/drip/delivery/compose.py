"""Compose one email: the step rendered for its contact, the compliance footer (the
postal address, and the unsubscribe link unless the body already shows it), the
RFC 8058 headers, the Reply-To that ties a reply to the message, and the custom_args
that tie SendGrid's events back to it. (The SendGrid request itself is built from this
in backends.py.)"""

from __future__ import annotations

from markupsafe import escape
from sqlalchemy.orm import object_session

from crm_app.config import Settings
from crm_app.drip.audience.unsubscribe import unsubscribe_url
from crm_app.drip.campaigns.naming import email_name, step_title, subject_title
from crm_app.drip.campaigns.rendering import (
    RenderedEmail,
    TemplateRenderError,
    WorkspaceSender,
    build_context,
    contact_context,
    render_email,
    sender_context,
    sender_from_name,
)
from crm_app.drip.campaigns.unsubscribe_link import links_visibly
from crm_app.drip.common.headers import header_safe
from crm_app.drip.delivery.backends import OutgoingEmail
from crm_app.drip.experiments.blocks import session_blocks, with_blocks
from crm_app.drip.experiments.variants import choose, running_variants_by_step, variant_texts
from crm_app.drip.team.workspace import workspace_sender
from crm_app.drip.tracking.reply_tokens import reply_address
from crm_app.models import CampaignStep, Contact, Message, StepVariant


def email_label(message: Message, subject: str = "") -> str:
    """How the timeline names this email: with the `subject` it was sent with, once
    rendered for its contact (a claim has it); else its subject for the sample contact
    (naming)."""
    step = message.step
    if step is None:  # removed from the campaign since
        return email_name(None, message.campaign.name, None)
    return email_name(step.position, message.campaign.name, step.subject, subject)


def with_footer(rendered: RenderedEmail, link: str, workspace: WorkspaceSender) -> RenderedEmail:
    """The email with the footer every email carries: who sends it and their postal
    address (CAN-SPAM), and the unsubscribe link when the body does not show it already
    (a template saved before the rule, or a conditional block that left it out). The
    previews add it too: what they show is what goes."""
    address = ", ".join(workspace.postal_address.splitlines())
    company = workspace.footer_name
    sender = f"{company}, {address}" if address else company
    html_link = (
        "" if links_visibly(rendered.html, link) else f' <a href="{escape(link)}">Unsubscribe</a>'
    )
    html = (
        f"{rendered.html}\n"
        '<p style="font-size:12px;color:#666;margin-top:24px">'
        f"You receive these emails from {escape(sender)}.{html_link}</p>"
    )
    text = f"{rendered.text.rstrip()}\n\n--\nYou receive these emails from {sender}.\n"
    if link not in rendered.text:
        text += f"To stop receiving these emails: {link}\n"
    return RenderedEmail(rendered.subject, html, text)


class PersonalSubjects:
    """The subject each email would have for one contact, rendered as `compose`
    renders it: what its page lists next ("Worth a 20-minute call, Ada?"), where the
    sample contact's name (naming.py) would read as if it went to someone else. An
    email under an A/B test is named by the contact's own variant (the split is the
    same at send: variants.choose). One that cannot be rendered is named as everywhere
    else (naming.step_title)."""

    def __init__(self, session, contact: Contact, settings: Settings) -> None:
        self._session, self._contact, self._settings = session, contact, settings
        self._contact_fields = contact_context(contact)
        self._sender: dict[str, str] | None = None
        self._subjects: dict[str, str] = {}  # by source: the itinerary and the "Why?" list
        self._running: dict[int, list[StepVariant]] | None = None  # by step id

    def __call__(self, step: CampaignStep) -> str:
        source = self._subject_source(step)
        subject = self._subjects.get(source)
        if subject is None:
            subject = self._subjects[source] = self._render(step, source)
        return subject

    def _subject_source(self, step: CampaignStep) -> str:
        if self._running is None:  # one read for the page: tests run on few emails
            self._running = running_variants_by_step(self._session)
        variant = choose(self._running.get(step.id, []), step.id, self._contact.id)
        return variant_texts(step, variant)[0]

    def _render(self, step: CampaignStep, source: str) -> str:
        if "{" not in source:  # no template: the same for every contact (cached)
            return subject_title(source)
        try:
            subject = render_email(source, "", "", self._context_for(source))
        except TemplateRenderError:
            return step_title(step)
        return header_safe(subject.subject) or step_title(step)

    def _context_for(self, source: str) -> dict:
        """A template names every variable it reads: the sender (the workspace's row)
        and the blocks are read from the database only for a subject that names them."""
        sender = self._speaking_sender() if "sender" in source else {}
        context = build_context(self._contact_fields, sender)
        if "block" in source:
            context = with_blocks(context, session_blocks(self._session))
        return context

    def _speaking_sender(self) -> dict[str, str]:
        if self._sender is None:
            workspace = workspace_sender(self._session, self._settings)
            self._sender = sender_context(self._contact.owner, workspace)
        return self._sender


def compose(
    message: Message, settings: Settings, variant: StepVariant | None = None
) -> OutgoingEmail:
    """Render the step (or its A/B `variant`) for this contact, with its content blocks,
    add the compliance footer and the headers.

    Raises TemplateRenderError (the sandbox refused or the template broke)."""
    contact, step = message.contact, message.step
    # The contact's owner speaks, else the workspace (one read per session, see workspace.py).
    session = object_session(message)
    workspace = workspace_sender(session, settings)
    sender = sender_context(contact.owner, workspace)
    link = unsubscribe_url(
        settings.public_base_url, contact.id, contact.email, secret_key=settings.secret_key
    )
    context = build_context(contact_context(contact), sender, unsubscribe_url=link)
    context = with_blocks(context, session_blocks(session))
    rendered = with_footer(render_email(*variant_texts(step, variant), context), link, workspace)
    return OutgoingEmail(
        message_id=message.id,
        to_email=contact.email,
        to_name=header_safe(contact.full_name) if contact.full_name != contact.email else "",
        from_name=header_safe(sender_from_name(contact.owner, workspace)),
        # A per-message address when replies are parsed, else the configured one.
        reply_to=reply_address(message.id, settings) or settings.mail_reply_to or "",
        subject=header_safe(rendered.subject),
        html=rendered.html,
        text=rendered.text,
        headers={
            "List-Unsubscribe": header_safe(
                f"<mailto:{settings.mail_unsubscribe_mailto}?subject=unsubscribe>, <{link}>"
            ),
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        },
        custom_args={
            "message_id": str(message.id),
            "contact_id": str(contact.id),
            "campaign_id": str(message.campaign_id),
            "step_id": str(message.step_id),
        },
        category=message.campaign.slug,
    )
