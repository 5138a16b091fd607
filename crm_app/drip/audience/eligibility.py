"""Who may be mailed: the one place the rule lives (the contact's email status and
the suppression list). Enrolment refuses, and delivery skips, by this rule."""

from __future__ import annotations

from collections.abc import Mapping

import sqlalchemy as sa

from crm_app.drip.common.sql import in_values
from crm_app.models import Contact, Suppression

# Why an address is on the suppression list, as people say it.
SUPPRESSION_REASON_LABELS = {
    "unsubscribe": "unsubscribed",
    "group_unsubscribe": "unsubscribed from a group",
    "bounce": "bounced",
    "dropped": "dropped by SendGrid",
    "spamreport": "reported as spam",
    "manual": "suppressed by staff",
}
# A contact's email status other than "ok": a short label, and the reason as a sentence.
EMAIL_STATUS_LABELS = {
    "unsubscribed": "unsubscribed",
    "bounced": "bounced",
    "complained": "reported as spam",
}
EMAIL_STATUS_REASONS = {
    "unsubscribed": "the contact unsubscribed",
    "bounced": "the contact's address bounced",
    "complained": "the contact reported an email as spam",
}


def suppression_reasons(session, emails) -> dict[str, str]:
    """{lowercased address: suppression reason} for those of `emails` on the list: one
    query for a whole chunk of messages (pass it to `mailing_block_reason`)."""
    wanted = {email.lower() for email in emails}
    if not wanted:
        return {}
    rows = session.execute(
        sa.select(Suppression.email, Suppression.reason).where(
            in_values(session, Suppression.email, wanted)
        )
    )
    return {email: reason for email, reason in rows}


def mailing_block_reason(
    session, contact: Contact, *, suppressions: Mapping[str, str] | None = None
) -> str | None:
    """Why this contact may not be mailed, or None. The one place this rule lives.

    `suppressions`: the suppression list already read for this contact's address
    (`suppression_reasons`), instead of one query here. The list's reason comes first:
    an address an admin suppressed reads "suppressed by staff", not "unsubscribed"."""
    if suppressions is not None:
        suppressed = suppressions.get(contact.email.lower())
    else:
        suppressed = session.scalar(
            sa.select(Suppression.reason).where(Suppression.email == contact.email.lower())
        )
    if suppressed is not None:
        label = SUPPRESSION_REASON_LABELS.get(suppressed, suppressed)
        return f"the address is on the suppression list ({label})"
    if contact.email_status != "ok":
        return EMAIL_STATUS_REASONS.get(contact.email_status, contact.email_status)
    return None


def not_mailed_label(email_status: str, suppression_reason: str | None) -> str | None:
    """Why a contact is not mailed, in a word or two (the contact list's marker, the
    contact page's status), or None when it may be mailed: the same rule as
    `mailing_block_reason`, from values a list query has already read."""
    if suppression_reason is not None:
        return SUPPRESSION_REASON_LABELS.get(suppression_reason, suppression_reason)
    if email_status != "ok":
        return EMAIL_STATUS_LABELS.get(email_status, email_status)
    return None
