"""Who may be mailed: the one place the rule lives (the contact's email status and
the suppression list). Enrolment refuses, and delivery skips, by this rule."""

from __future__ import annotations

from collections.abc import Mapping

import sqlalchemy as sa

from crm_app.drip.common.sql import in_values
from crm_app.models import Contact, Suppression


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
    (`suppression_reasons`), instead of one query here."""
    if contact.email_status != "ok":
        return f"the contact is {contact.email_status}"
    if suppressions is not None:
        suppressed = suppressions.get(contact.email.lower())
    else:
        suppressed = session.scalar(
            sa.select(Suppression.reason).where(Suppression.email == contact.email.lower())
        )
    if suppressed is not None:
        return f"the address is on the suppression list ({suppressed})"
    return None
