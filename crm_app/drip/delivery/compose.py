"""Compose one email: the step rendered for its contact, the unsubscribe footer, the
RFC 8058 headers and the custom_args that tie SendGrid's events back to the message.
(The SendGrid request itself is built from this in backends.py.)"""

from __future__ import annotations

from markupsafe import escape
from sqlalchemy.orm import object_session

from crm_app.config import Settings
from crm_app.drip.audience.unsubscribe import unsubscribe_url
from crm_app.drip.campaigns.naming import email_name
from crm_app.drip.campaigns.rendering import (
    build_context,
    contact_context,
    render_email,
    sender_context,
    sender_from_name,
)
from crm_app.drip.common.headers import header_safe
from crm_app.drip.delivery.backends import OutgoingEmail
from crm_app.drip.team.workspace import workspace_sender
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
    # The contact's owner speaks, else the workspace (one read per session, see workspace.py).
    workspace = workspace_sender(object_session(message), settings)
    sender = sender_context(contact.owner, workspace)
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
        to_name=header_safe(contact.full_name) if contact.full_name != contact.email else "",
        from_name=header_safe(sender_from_name(contact.owner, workspace)),
        subject=header_safe(rendered.subject),
        html=html,
        text=text,
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
