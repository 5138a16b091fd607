"""One-click unsubscribe: signed link, no login, RFC 8058 POST, no email after it."""

import sqlalchemy as sa

from crm_app.drip.audience.unsubscribe import make_unsubscribe_token
from crm_app.models import Activity, Contact, Enrollment, Suppression


def _token(contact):
    return make_unsubscribe_token(contact.id, contact.email)


def test_get_shows_a_confirmation_page_without_login(web, make_contact):
    contact = make_contact("lead", email="leaving@example.com")
    page = web.get(f"/unsubscribe/{_token(contact)}")
    assert page.status_code == 200
    assert b"leaving@example.com" in page.data
    # Opening the page (link scanners do) changes nothing.
    assert contact.email_status == "ok"


def test_one_click_post_unsubscribes_and_stops_everything(web, session, make_contact):
    contact = make_contact("lead", email="leaving@example.com")
    response = web.client.post(
        f"/unsubscribe/{_token(contact)}", data={"List-Unsubscribe": "One-Click"}
    )
    assert response.status_code == 200
    assert b"unsubscribed" in response.data
    session.expire_all()
    contact = session.get(Contact, contact.id)
    assert contact.email_status == "unsubscribed"
    assert session.scalar(sa.select(Suppression.email)) == "leaving@example.com"
    statuses = session.scalars(
        sa.select(Enrollment.status).where(Enrollment.contact_id == contact.id)
    ).all()
    assert statuses == ["stopped"]


def test_second_post_is_harmless(web, session, make_contact):
    contact = make_contact("lead", email="leaving@example.com")
    url = f"/unsubscribe/{_token(contact)}"
    web.client.post(url)
    rows = session.scalar(sa.select(sa.func.count()).select_from(Activity))
    second = web.client.post(url)
    assert second.status_code == 200
    assert b"already unsubscribed" in second.data
    assert session.scalar(sa.select(sa.func.count()).select_from(Activity)) == rows
    assert session.scalar(sa.select(sa.func.count()).select_from(Suppression)) == 1


def test_tampered_token_is_a_400_that_says_so(web, session, make_contact):
    contact = make_contact("lead", email="leaving@example.com")
    token = _token(contact)
    forged = token[:-3] + ("AAA" if not token.endswith("AAA") else "BBB")
    for response in (web.get(f"/unsubscribe/{forged}"), web.client.post(f"/unsubscribe/{forged}")):
        assert response.status_code == 400
        assert b"not valid" in response.data
    assert session.scalar(sa.select(sa.func.count()).select_from(Suppression)) == 0
    assert session.get(Contact, contact.id).email_status == "ok"


def test_a_token_for_someone_else_cannot_be_forged_from_mine(web, session, make_contact):
    mine = make_contact("lead", email="me@example.com")
    victim = make_contact("lead", email="victim@example.com")
    token = _token(mine)
    payload, signature = token.rsplit(".", 1)
    other = make_unsubscribe_token(victim.id, victim.email).rsplit(".", 1)[0]
    assert web.client.post(f"/unsubscribe/{other}.{signature}").status_code == 400
    assert session.get(Contact, victim.id).email_status == "ok"
