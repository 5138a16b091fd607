"""Deleting a contact: its SendGrid events stay (a replay is still recognised) but keep
nothing of the person, except the address of a group opt-out (forgetting.py)."""

from __future__ import annotations

import sqlalchemy as sa

from crm_app.drip.audience.contacts import delete_contact
from crm_app.extensions import db
from crm_app.models import EmailEvent
from tests.panel_helpers import sent_email

CLICK = {"url": "https://example.com/?who=ada@example.com", "ip": "203.0.113.7"}


def _events_of(session, message, address: str) -> None:
    """An open, a click and a group unsubscribe, sg_event_id "<address>-<n>"."""
    for n, (event, detail) in enumerate(
        [("open", ""), ("click", CLICK["url"]), ("group_unsubscribe", "group 12")]
    ):
        session.add(
            EmailEvent(
                sg_event_id=f"{address}-{n}", event=event, email=address, detail=detail,
                message_id=message.id, payload={"email": address, **CLICK},
            )
        )  # fmt: skip
    session.commit()


def _kept(session) -> dict[str, tuple]:
    rows = session.execute(
        sa.select(
            EmailEvent.sg_event_id,
            EmailEvent.event,
            EmailEvent.email,
            EmailEvent.detail,
            EmailEvent.payload,
            EmailEvent.message_id,
        )
    )
    return {row[0]: tuple(row[1:]) for row in rows}


def test_a_deleted_contacts_events_keep_their_kind_and_time_but_not_the_person(
    session, make_contact
):
    ada = make_contact("lead", email="ada@example.com")
    bob = make_contact("lead", email="bob@example.com")
    gone, stays = sent_email(session, ada), sent_email(session, bob)
    _events_of(session, gone, "ada@example.com")
    _events_of(session, stays, "bob@example.com")
    stays_id = stays.id

    delete_contact(session, ada, actor="test")
    session.commit()

    kept = _kept(session)
    assert kept["ada@example.com-0"] == ("open", "", "", {}, None)
    assert kept["ada@example.com-1"] == ("click", "", "", {}, None)
    # An opt-out keeps its address: later group events are ordered against it.
    assert kept["ada@example.com-2"] == ("group_unsubscribe", "ada@example.com", "", {}, None)
    # Another contact's events keep everything.
    assert kept["bob@example.com-1"] == (
        "click", "bob@example.com", CLICK["url"], {"email": "bob@example.com", **CLICK}, stays_id
    )  # fmt: skip


def test_deleting_from_the_page_or_the_api_forgets_the_events_too(admin, api, make_contact):
    for number, delete in enumerate(
        [
            lambda contact_id: admin.post(f"/contacts/{contact_id}/delete"),
            lambda contact_id: api.delete(f"/api/v1/contacts/{contact_id}"),
        ]
    ):
        contact = make_contact("lead", email=f"gone{number}@example.com")
        message = sent_email(db.session, contact)
        _events_of(db.session, message, contact.email)
        address = contact.email

        assert delete(contact.id).status_code in (204, 302)

        db.session.expire_all()
        addresses = db.session.scalars(
            sa.select(EmailEvent.email).where(EmailEvent.sg_event_id.like(f"{address}-%"))
        )
        assert sorted(addresses) == ["", "", address]
