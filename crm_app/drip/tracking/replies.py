"""Replies to our emails: a human reply ends the contact's enrolment in that campaign
(when the campaign stops on reply, the default); an automatic one (out of office,
autoresponder, delivery report) is recorded and stops nothing.

Each email's Reply-To carries a token of its message (reply_tokens.py): SendGrid's
Inbound Parse posts the reply to /webhooks/inbound/<secret>, and the token ties it to
its message even when the reply quotes nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from crm_app.config import Settings
from crm_app.drip.audience.ending import stop
from crm_app.drip.audience.enrollment import active_enrollment
from crm_app.drip.common.activity import record_activity
from crm_app.drip.delivery.compose import email_label
from crm_app.drip.tracking.inbound_parse import InboundEmail
from crm_app.drip.tracking.reply_text import first_lines
from crm_app.drip.tracking.reply_tokens import replied_message_id
from crm_app.models import EmailReply, Enrollment, Message, utcnow

ACTOR = "sendgrid:inbound-parse"
STOP_REASON = "the contact replied"

# --- automatic or human ---------------------------------------------------------------

AUTOMATIC_HEADERS = ("X-Autoreply", "X-Autorespond", "X-Autoresponder")
AUTOMATIC_PRECEDENCE = frozenset({"auto_reply", "bulk", "junk", "list"})
# Subjects of out-of-office replies, in the languages mail programs write them in.
OUT_OF_OFFICE = re.compile(
    r"\b(out of (the )?office|automatic reply|auto[- ]?reply|autoreply|away from (the )?office"
    r"|on vacation|vacation reply|absent du bureau|absence du bureau|réponse automatique"
    r"|abwesenheitsnotiz|automatische antwort|nicht im büro|fuera de la oficina"
    r"|respuesta automática|fuori sede|fuori ufficio|risposta automatica|afwezigheidsmelding"
    r"|automatisch antwoord|resposta automática|fora do escritório|autosvar"
    r"|frånvaromeddelande|automatisk svar|automatyczna odpowiedź|poza biurem)\b",
    re.IGNORECASE,
)


def automatic_reason(inbound: InboundEmail) -> str | None:
    """Why this reply was written by a machine, or None for a person's reply."""
    headers = inbound.header_block()
    submitted = (headers.get("Auto-Submitted") or "").strip().lower()
    if submitted and submitted.split(";")[0].strip() != "no":  # RFC 3834
        return f"Auto-Submitted: {submitted[:40]}"
    for name in AUTOMATIC_HEADERS:
        if headers.get(name) is not None:
            return f"{name} header"
    precedence = (headers.get("Precedence") or "").strip().lower()
    if precedence in AUTOMATIC_PRECEDENCE:
        return f"Precedence: {precedence}"
    if (headers.get("Content-Type") or "").strip().lower().startswith("multipart/report"):
        return "a delivery or read report"
    if OUT_OF_OFFICE.search(inbound.subject):
        return "an out-of-office subject"
    if inbound.envelope_from is not None and inbound.envelope_from.strip() in ("", "<>"):
        return "an empty return path"  # RFC 3834: what automatic answers are sent with
    return None


# --- recording ------------------------------------------------------------------------


@dataclass(frozen=True)
class ReplyOutcome:
    status: str  # "recorded", "duplicate" or "ignored"
    detail: str = ""  # why, in words (never the reply's content: it reaches the logs)
    reply: EmailReply | None = None
    stopped: Enrollment | None = None


def _is_known(session, email_message_id: str | None) -> bool:
    if not email_message_id:
        return False
    known = sa.select(EmailReply.id).where(EmailReply.email_message_id == email_message_id)
    return session.scalar(known) is not None


def _timeline_detail(message: Message, reply: EmailReply) -> str:
    quoted = f": “{reply.first_lines}”" if reply.first_lines else ""
    label = email_label(message, message.subject)  # as it was sent (stored at its claim)
    if reply.is_automatic:
        return f"Automatic reply to {label} ({reply.automatic_reason}); nothing stopped{quoted}"
    if not message.campaign.stop_on_reply:
        return f"Replied to {label}{quoted} ({message.campaign.name} goes on after replies)"
    return f"Replied to {label}{quoted}"


def record_reply(
    session, inbound: InboundEmail, settings: Settings, *, now: datetime | None = None
) -> ReplyOutcome:
    """Record a reply and apply it; the caller commits. A reply to no message of ours,
    to a deleted one or from an erased contact is ignored (and nothing of it kept)."""
    now = now or utcnow()
    message_id = replied_message_id(inbound.recipients(), settings.secret_key)
    if message_id is None:
        return ReplyOutcome("ignored", "no reply address of ours among its recipients")
    message = session.get(Message, message_id)
    if message is None:
        return ReplyOutcome("ignored", "the email it answers no longer exists")
    if message.contact.erased_at is not None:
        return ReplyOutcome("ignored", "the contact's data was erased")
    email_message_id = (inbound.header_block().get("Message-ID") or "").strip()[:255] or None
    if _is_known(session, email_message_id):
        return ReplyOutcome("duplicate", "this reply was recorded before")
    automatic = automatic_reason(inbound)
    reply = EmailReply(
        message_id=message.id,
        contact_id=message.contact_id,
        campaign_id=message.campaign_id,
        from_email=inbound.sender()[:254],
        subject=" ".join(inbound.subject.split())[:1000],
        first_lines=first_lines(inbound.text, inbound.html),
        is_automatic=automatic is not None,
        automatic_reason=(automatic or "")[:120],
        email_message_id=email_message_id,
        received_at=now,
    )
    try:
        with session.begin_nested():  # SendGrid posting the same reply twice at once
            session.add(reply)
            session.flush()
    except IntegrityError:
        return ReplyOutcome("duplicate", "this reply was recorded before")
    record_activity(
        session,
        message.contact,
        "auto_replied" if reply.is_automatic else "replied",
        _timeline_detail(message, reply),
        actor=ACTOR,
        campaign=message.campaign,
        enrollment=message.enrollment,
    )
    stopped = None
    if not reply.is_automatic and message.campaign.stop_on_reply:
        stopped = active_enrollment(session, message.contact, message.campaign)
        if stopped is not None:
            stop(session, stopped, reason=STOP_REASON, actor=ACTOR, now=now)
            reply.stopped_enrollment_id = stopped.id
    kind = f"an automatic reply ({automatic})" if automatic else "a reply from a person"
    return ReplyOutcome("recorded", f"{kind} to message {message.id}", reply, stopped)
