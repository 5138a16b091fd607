"""Compose one email: the step rendered for its contact, the unsubscribe footer, the
RFC 8058 headers and the custom_args that tie SendGrid's events back to the message.
(The SendGrid request itself is built from this in backends.py.)"""

from __future__ import annotations

from markupsafe import escape

from crm_app.config import Settings
from crm_app.drip.audience.unsubscribe import unsubscribe_url
from crm_app.drip.campaigns.naming import email_name
from crm_app.drip.campaigns.rendering import (
    build_context,
    contact_context,
    render_email,
    sender_context,
)
from crm_app.drip.delivery.backends import OutgoingEmail
from crm_app.models import Message


def email_label(message: Message) -> str:
    """How the timeline names this email: its subject for the sample contact (naming)."""
    step = message.step
    if step is None:  # removed from the campaign since
        return email_name(None, message.campaign.name, None)
    return email_name(step.position, message.campaign.name, step.subject)


def compose(message: Message, settings: Settings) -> OutgoingEmail:
    """Render the step for this contact, add the unsubscribe footer and headers.

    Raises TemplateRenderError (the sandbox refused or the template broke)."""
    contact, step = message.contact, message.step
    sender = sender_context(
        contact.owner,
        fallback_name=settings.mail_from_name,
        fallback_email=settings.mail_from_email,
        company=settings.sender_company,
        website=settings.sender_website,
    )
    context = build_context(contact_context(contact), sender)
    rendered = render_email(step.subject, step.body_html, step.body_text, context)
    link = unsubscribe_url(
        settings.public_base_url, contact.id, contact.email, secret_key=settings.secret_key
    )
    company = settings.sender_company or settings.mail_from_name
    html = (
        f"{rendered.html}\n"
        '<p style="font-size:12px;color:#666;margin-top:24px">'
        f"You receive these emails from {escape(company)}. "
        f'<a href="{escape(link)}">Unsubscribe</a></p>'
    )
    text = f"{rendered.text.rstrip()}\n\n--\nTo stop receiving these emails: {link}\n"
    return OutgoingEmail(
        message_id=message.id,
        to_email=contact.email,
        to_name=contact.full_name if contact.full_name != contact.email else "",
        subject=rendered.subject,
        html=html,
        text=text,
        headers={
            "List-Unsubscribe": (
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
