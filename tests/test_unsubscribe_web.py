"""One-click unsubscribe: signed link, no login, RFC 8058 POST, no email after it."""

import sqlalchemy as sa

from crm_app.drip.audience.unsubscribe import make_unsubscribe_token
from crm_app.models import Activity, Contact, Enrollment, Suppression
from tests.panel_helpers import sent_email


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


# --- counted in analytics, and the link opened again ---


def _sent_email(session, contact, *, step: int = 1, hours_ago: int = 1):
    from datetime import timedelta

    from crm_app.models import utcnow

    return sent_email(session, contact, step=step, sent_at=utcnow() - timedelta(hours=hours_ago))


def test_our_own_unsubscribes_count_in_analytics(web, admin_user, session, make_contact):
    from crm_app.drip.reporting.analytics import campaigns_overview
    from crm_app.drip.reporting.date_range import default_range
    from crm_app.models import Message, utcnow

    in_browser = make_contact("lead", email="browser@example.com")
    one_click = make_contact("lead", email="oneclick@example.com")
    for contact in (in_browser, one_click):
        _sent_email(session, contact, step=1, hours_ago=30)
        latest = _sent_email(session, contact, step=2, hours_ago=2)
    # The page a person opens, then its button; and a mail client's RFC 8058 POST.
    page = web.get(f"/unsubscribe/{_token(in_browser)}").get_data(as_text=True)
    assert 'name="List-Unsubscribe" value="One-Click"' in page
    web.client.post(f"/unsubscribe/{_token(in_browser)}", data={"List-Unsubscribe": "One-Click"})
    web.client.post(f"/unsubscribe/{_token(one_click)}", data={"List-Unsubscribe": "One-Click"})

    session.expire_all()
    lead = in_browser.enrollments[0].campaign_id
    counts = campaigns_overview(session, default_range(utcnow().date()))
    assert {row.campaign_id: row.counts.unsubscribed for row in counts.rows}[lead] == 2
    # Counted on the latest email each one got, once (a second click adds nothing).
    web.client.post(f"/unsubscribe/{_token(one_click)}")
    marked = session.scalars(sa.select(Message).where(Message.unsubscribed_at.is_not(None))).all()
    assert [m.step_position for m in marked] == [2, 2] and latest.step_position == 2


def test_an_unsubscribe_keeps_the_first_time_sendgrid_reported(web, session, make_contact):
    from datetime import UTC, datetime

    from crm_app.models import Message

    contact = make_contact("lead", email="both@example.com")
    message = _sent_email(session, contact)
    earlier = datetime(2026, 1, 2, 3, 4, tzinfo=UTC)
    message.unsubscribed_at = earlier
    session.commit()
    web.client.post(f"/unsubscribe/{_token(contact)}")
    session.expire_all()
    assert session.get(Message, message.id).unsubscribed_at == earlier


def test_the_link_opened_again_says_you_are_unsubscribed(web, make_contact):
    contact = make_contact("lead", email="leaving@example.com")
    web.client.post(f"/unsubscribe/{_token(contact)}")
    again = web.get(f"/unsubscribe/{_token(contact)}")
    page = again.get_data(as_text=True)
    assert again.status_code == 200
    assert "You are unsubscribed" in page and "leaving@example.com" in page
    assert "<button" not in page.split("<main", 1)[1]  # nothing to confirm any more
