"""What SendGrid's events keep of a person whose contact is deleted. No HTTP in here.

Deleting a contact deletes its enrolments, messages, replies and timeline; its events
stay (tied to no message once their message is gone), because a replayed event must
still be recognised and counted once. They keep their kind, time and outcome only: not
the address, SendGrid's payload or the detail (a clicked URL may carry the address).
A group (un)subscribe keeps its address: it records an opt-out, as the suppression
list that outlives a deleted contact does, and later ones are ordered against it by
address (event_consequences.py).
"""

from __future__ import annotations

import sqlalchemy as sa

from crm_app.models import EmailEvent, Message

OPT_OUT_EVENTS = ("group_unsubscribe", "group_resubscribe")


def forget_contact_events(session, contact_id: int) -> int:
    """Scrub the events of the contact's messages (see the module's docstring), before
    the contact and its messages are deleted; returns how many events were scrubbed."""
    events = EmailEvent.__table__
    messages_of_contact = sa.select(Message.id).where(Message.contact_id == contact_id)
    address = sa.case((events.c.event.in_(OPT_OUT_EVENTS), events.c.email), else_=sa.literal(""))
    return session.execute(
        sa.update(events)
        .where(events.c.message_id.in_(messages_of_contact))
        .values(email=address, payload={}, detail="")
    ).rowcount
