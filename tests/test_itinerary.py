"""Every contact's itinerary (issue 15 item 5): its next emails across campaigns, with
dates on the contact's and the viewer's clocks, after send windows, DST, pauses and
the frequency cap."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from crm_app.drip.audience.enrollment import enroll
from crm_app.drip.audience.itinerary import contact_itinerary
from crm_app.drip.audience.suppression import suppress
from crm_app.drip.delivery.frequency_cap import FrequencyCap
from crm_app.models import Activity, Enrollment
from tests.delivery_helpers import WEDNESDAY_10

DAILY = FrequencyCap(1, timedelta(hours=24))
OFF = FrequencyCap(0, timedelta(hours=24))
THURSDAY_10 = WEDNESDAY_10 + timedelta(days=1)


def _two_campaigns(session, make_contact, campaigns, **fields):
    contact = make_contact("lead", **fields)
    enroll(session, contact, campaigns["networking"], actor="test")
    lead, networking = session.scalars(
        sa.select(Enrollment).where(Enrollment.contact_id == contact.id).order_by(Enrollment.id)
    )
    lead.next_send_at = THURSDAY_10
    networking.next_send_at = THURSDAY_10 + timedelta(hours=1)
    session.commit()
    return contact


def _rows(itinerary):
    return [(i.campaign.contact_type, i.step.position, i.at, i.notes) for i in itinerary.items]


def test_two_campaigns_interleave_under_the_cap_and_the_window(session, make_contact, campaigns):
    contact = _two_campaigns(session, make_contact, campaigns)
    rows = _rows(contact_itinerary(session, contact, cap=DAILY, now=WEDNESDAY_10))
    held = ["held by the frequency cap (1 email per day)"]
    assert rows[:4] == [
        ("lead", 1, THURSDAY_10, []),
        ("networking", 1, datetime(2026, 11, 27, 10, 0, tzinfo=UTC), held),
        # Lead email 2: 2 days after Thursday is Saturday: Monday's opening.
        ("lead", 2, datetime(2026, 11, 30, 9, 0, tzinfo=UTC), []),
        ("networking", 2, datetime(2026, 12, 1, 9, 0, tzinfo=UTC), held),
    ]
    times = [at for _, _, at, _ in rows]
    assert all(b - a >= timedelta(hours=24) for a, b in zip(times, times[1:], strict=False))


def test_without_the_cap_both_go_on_their_own_dates(session, make_contact, campaigns):
    contact = _two_campaigns(session, make_contact, campaigns)
    rows = _rows(contact_itinerary(session, contact, cap=OFF, now=WEDNESDAY_10))
    assert rows[1] == ("networking", 1, THURSDAY_10 + timedelta(hours=1), [])


def test_dates_keep_the_wall_clock_across_a_dst_change(session, make_contact, campaigns):
    lead = campaigns["lead"]
    lead.steps[1].delay_days = 4
    contact = make_contact("lead", timezone="America/New_York")
    enrollment = contact.enrollments[0]
    # Thursday 29 October 2026, 10:00 EDT; New York leaves DST on Sunday 1 November.
    enrollment.next_send_at = datetime(2026, 10, 29, 14, 0, tzinfo=UTC)
    session.commit()
    items = contact_itinerary(
        session, contact, cap=DAILY, now=datetime(2026, 10, 27, 12, 0, tzinfo=UTC)
    ).items
    # Four days later is Monday 2 November, 10:00 EST: 15:00 UTC, not 14:00.
    assert items[1].at == datetime(2026, 11, 2, 15, 0, tzinfo=UTC)


def test_an_overdue_email_outside_the_window_waits_for_the_opening(
    session, make_contact, campaigns
):
    contact = make_contact("lead")
    contact.enrollments[0].next_send_at = WEDNESDAY_10 - timedelta(days=1)
    session.commit()
    evening = WEDNESDAY_10 + timedelta(hours=8)  # 18:00, after the window
    first = contact_itinerary(session, contact, cap=DAILY, now=evening).items[0]
    assert first.at == THURSDAY_10 - timedelta(hours=1)
    assert first.notes == ["at the send window's next opening"]


def test_a_paused_campaign_has_no_date_and_a_suppressed_contact_no_emails(
    session, make_contact, campaigns
):
    contact = _two_campaigns(session, make_contact, campaigns)
    campaigns["networking"].status = "paused"
    session.commit()
    rows = _rows(contact_itinerary(session, contact, cap=DAILY, now=WEDNESDAY_10))
    assert ("networking", 1, None, ["Networking is paused"]) in rows
    assert all(kind == "lead" for kind, _, at, _ in rows if at is not None)

    suppress(session, contact.email, reason="bounce", source="test", actor="test")
    session.commit()
    itinerary = contact_itinerary(session, contact, cap=DAILY, now=WEDNESDAY_10)
    assert itinerary.items == [] and "bounced" in itinerary.blocked


def test_contact_page_shows_the_itinerary_on_both_clocks(
    app, monkeypatch, admin, session, make_contact, campaigns
):
    from crm_app.models import User

    monkeypatch.setitem(app.config, "FREQUENCY_CAP_COUNT", 1)
    viewer = session.scalar(sa.select(User).where(User.email == "admin@example.com"))
    viewer.timezone = "Asia/Tokyo"
    session.commit()
    contact = _two_campaigns(session, make_contact, campaigns, timezone="America/New_York")
    lead = session.scalar(
        sa.select(Enrollment).where(
            Enrollment.contact_id == contact.id, Enrollment.campaign_id == campaigns["lead"].id
        )
    )
    lead.next_send_at = datetime.now(UTC).replace(microsecond=0) + timedelta(days=40)
    session.commit()
    html = admin.get(f"/contacts/{contact.id}").get_data(as_text=True)
    assert 'id="itinerary-table"' in html
    section = html.split('id="itinerary"')[1].split("</section>")[0]
    assert "Lead" in section and "Networking" in section
    assert " EST</td>" in section or " EDT</td>" in section  # the contact's clock
    assert " JST</td>" in section  # the viewer's
    assert "Your time" in section and "(the contact's and yours)" not in section
    assert "frequency cap (1 email per day" in section


def test_a_contact_on_the_viewers_clock_has_each_time_once(admin, session, make_contact):
    """Viewer and contact both on UTC: "Contact's time" and "Your time" were two equal
    columns (and two equal lines in the campaign panel), doubling every row's height on
    a phone. One time, said to be both."""
    contact = make_contact("lead", first_name="Ada", timezone="UTC")
    session.commit()
    html = admin.get(f"/contacts/{contact.id}").get_data(as_text=True)
    section = html.split('id="itinerary"')[1].split("</section>")[0]
    assert "(the contact's and yours)" in section and "Your time" not in section
    assert 'data-when="contact"' in section and 'data-when="viewer"' not in section
    panel = html.split('class="next-send"')[1].split("</td>")[0]
    assert panel.count(" UTC ") == 1 and "the contact's time and yours" in panel
    assert "your time</span>" not in panel


def test_contact_page_names_the_next_emails_as_this_contact_reads_them(
    admin, session, make_contact
):
    """'Worth a 20-minute call, Ada?' on Ada's page, in the itinerary and the "Why?"
    list: not the sample contact's 'Alex', which reads as if it went to someone else.
    The sender's company too, as delivery renders it."""
    contact = make_contact("lead", first_name="Ada", last_name="Lovelace")
    session.commit()
    html = admin.get(f"/contacts/{contact.id}").get_data(as_text=True)
    section = html.split('id="itinerary"')[1].split("</section>")[0]
    table, why_list = section.split('id="why-step"')
    for listed in (table, why_list):
        assert "Worth a 20-minute call, Ada?" in listed
        assert "Alex" not in listed
    assert "Thanks for getting in touch with Drip CRM" in table


def test_a_subject_that_cannot_be_rendered_keeps_its_usual_name(session, make_contact, app):
    from crm_app.config import settings_of
    from crm_app.drip.delivery.compose import PersonalSubjects

    contact = make_contact("lead", first_name="Ada")
    step = contact.enrollments[0].campaign.steps[0]
    step.subject = "Hello {{ contact.first_name.nope() }}"
    subjects = PersonalSubjects(session, contact, settings_of(app))
    assert subjects(step) == "(its subject cannot be rendered)"
    session.rollback()


def test_the_itinerary_is_what_the_tick_then_does(session, make_contact, campaigns):
    """Walk the projected dates: at each one the tick creates exactly that email (and
    nothing before it), under the same cap."""
    from crm_app.drip.audience.progress import advance
    from crm_app.drip.delivery.tick import run_tick
    from crm_app.models import Message

    contact = _two_campaigns(session, make_contact, campaigns, timezone="Europe/Paris")
    planned = contact_itinerary(session, contact, cap=DAILY, now=WEDNESDAY_10).items[:5]
    for item in planned:
        early = run_tick(
            session, lambda ids: None, now=item.at - timedelta(minutes=1), frequency_cap=DAILY
        )
        assert early.created == 0, item.title
        assert run_tick(session, lambda ids: None, now=item.at, frequency_cap=DAILY).created == 1
        message = session.scalar(sa.select(Message).order_by(Message.id.desc()).limit(1))
        assert message.step_id == item.step.id
        message.status, message.sent_at = "sent", item.at
        advance(session, message.enrollment, sent_at=item.at, now=item.at)
        session.commit()


def test_the_contact_page_reuses_the_panels_reads_and_says_the_same(
    session, make_contact, campaigns
):
    """The page hands the campaign panel to the itinerary and the "Why?" list: the
    answers are those each gives on its own, with one statement less for each."""
    from crm_app.drip.audience.panel import campaign_panel
    from crm_app.drip.audience.why import emails_to_explain

    contact = _two_campaigns(session, make_contact, campaigns)
    networking = session.scalars(
        sa.select(Enrollment).where(Enrollment.contact_id == contact.id).order_by(Enrollment.id)
    ).all()[1]
    networking.status, networking.next_send_at = "stopped", None  # a finished one too
    session.commit()
    alone = _rows(contact_itinerary(session, contact, cap=DAILY, now=WEDNESDAY_10))
    choices = emails_to_explain(session, contact)
    session.expire_all()
    panel = campaign_panel(session, contact)
    statements = []
    listen = lambda *args: statements.append(args[2])  # noqa: E731
    sa.event.listen(session.get_bind(), "before_cursor_execute", listen)
    try:
        shared = contact_itinerary(session, contact, cap=DAILY, now=WEDNESDAY_10, panel=panel)
        shared_choices = emails_to_explain(session, contact, campaigns=panel.enrolled_campaigns)
    finally:
        sa.event.remove(session.get_bind(), "before_cursor_execute", listen)
    assert _rows(shared) == alone
    assert shared_choices == choices and len(choices) > 6  # both campaigns' emails
    assert len(statements) == 1, statements  # only the recent sends, for the cap


def test_the_campaign_panel_names_the_current_email_as_this_contact_reads_it(
    admin, session, make_contact, campaigns
):
    """The panel's "Progress" names the current email with the contact's own name, as
    the itinerary beside it does: the sample contact's 'Alex' read as a wrong person."""
    campaigns["lead"].steps[0].subject = "Welcome, {{ contact.first_name }}"
    contact = make_contact("lead", first_name="Ada", last_name="Lovelace")
    session.commit()
    html = admin.get(f"/contacts/{contact.id}").get_data(as_text=True)
    panel = html.split('id="campaign-panel"')[1].split("</section>")[0]
    assert "“Welcome, Ada”" in panel
    assert "Alex" not in panel


def test_an_email_its_condition_will_skip_is_listed_as_such_and_takes_no_cap_slot(
    session, make_contact, campaigns
):
    """Lead's email 1 holds only for Retail; Ada is not: the worker will skip it without
    a slot of the cap, so Networking's email due the same hour is not held for it."""
    from datetime import UTC, datetime, timedelta

    from crm_app.drip.audience.enrollment import enroll
    from crm_app.drip.audience.itinerary import contact_itinerary
    from crm_app.drip.delivery.frequency_cap import FrequencyCap

    daily = FrequencyCap(1, timedelta(hours=24))
    campaigns["lead"].steps[0].condition = {"field": "industry", "op": "is", "value": "Retail"}
    contact = make_contact("lead", first_name="Ada", industry="Science")
    enroll(session, contact, campaigns["networking"], actor="test")
    due = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
    for enrollment in contact.enrollments:
        enrollment.next_send_at = due
    session.commit()
    now = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
    items = contact_itinerary(session, contact, cap=daily, now=now).items
    lead_1 = next(i for i in items if i.campaign.name == "Lead" and i.step.position == 1)
    networking_1 = next(i for i in items if i.campaign.name == "Networking")
    assert any("skipped if nothing changes" in note for note in lead_1.notes)
    assert lead_1.at == networking_1.at == due
    assert not networking_1.held_by_cap


def test_a_contact_moving_to_another_time_zone_gets_the_date_the_page_shows(
    session, make_contact, campaigns
):
    """Its next email was placed in the send window on the old clock: 10:00 in Tokyo is
    20:00 the evening before in New York, outside the window there. The panel's date
    (next_send_at), "Why?" and the itinerary all say 09:00 New York, when the tick
    really sends it; before, the panel and "Why?" kept the Tokyo date the tick skips."""
    from crm_app.drip.audience.contacts import contact_form_values, save_contact
    from crm_app.drip.audience.why import why_email
    from crm_app.drip.delivery.tick import run_tick

    contact = make_contact("lead", timezone="Asia/Tokyo")
    enrollment = contact.enrollments[0]
    tokyo_10 = datetime(2030, 1, 10, 1, 0, tzinfo=UTC)  # Thursday 10:00 in Tokyo
    enrollment.next_send_at = tokyo_10
    session.commit()
    values = contact_form_values(contact, owner_id=None) | {"timezone": "America/New_York"}
    save_contact(session, values, contact=contact, actor="test")
    session.commit()

    new_york_9 = datetime(2030, 1, 10, 14, 0, tzinfo=UTC)  # Thursday 09:00 in New York
    now = tokyo_10 - timedelta(days=1)
    assert enrollment.next_send_at == new_york_9
    assert contact_itinerary(session, contact, cap=OFF, now=now).items[0].at == new_york_9
    why = why_email(session, contact, enrollment.step, cap=OFF, now=now)
    assert why.summary == "Scheduled for Thu 10 Jan 2030 14:00 UTC."
    moved = session.scalar(
        sa.select(Activity).where(Activity.contact_id == contact.id, Activity.kind == "rescheduled")
    )
    assert moved.detail.startswith("Time zone changed to America/New_York: the next email of Lead")
    assert run_tick(session, lambda ids: None, now=tokyo_10).created == 0
    assert run_tick(session, lambda ids: None, now=new_york_9).created == 1


def test_an_email_with_no_delay_comes_after_the_emails_due_with_the_one_before_it(
    session, make_contact, campaigns
):
    """Two emails a day; Lead's email 1 and Networking's email 1 due Thursday 10:00, and
    Lead's email 2 due the moment email 1 goes (no delay). The tick queues both emails 1
    together; email 2 comes up only once email 1 went, when the cap is full: held to
    Friday. The itinerary listed email 2 on Thursday and held Networking's instead."""
    from crm_app.drip.audience.progress import advance
    from crm_app.drip.delivery.tick import run_tick
    from crm_app.models import Message
    from tests.delivery_helpers import open_all_week

    two_a_day = FrequencyCap(2, timedelta(hours=24))
    for campaign in (campaigns["lead"], campaigns["networking"]):
        open_all_week(campaign)
    campaigns["lead"].steps[1].delay_days = 0
    contact = make_contact("lead")
    enroll(session, contact, campaigns["networking"], actor="test")
    for enrollment in contact.enrollments:
        enrollment.next_send_at = THURSDAY_10
    session.commit()

    friday_10 = THURSDAY_10 + timedelta(days=1)
    rows = _rows(contact_itinerary(session, contact, cap=two_a_day, now=WEDNESDAY_10))
    held = ["held by the frequency cap (2 emails per day)"]
    assert rows[:3] == [
        ("lead", 1, THURSDAY_10, []),
        ("networking", 1, THURSDAY_10, []),
        ("lead", 2, friday_10, held),
    ]

    assert (
        run_tick(session, lambda ids: None, now=THURSDAY_10, frequency_cap=two_a_day).created == 2
    )
    for message in session.scalars(sa.select(Message)):
        message.status, message.sent_at = "sent", THURSDAY_10
        advance(session, message.enrollment, sent_at=THURSDAY_10, now=THURSDAY_10)
    session.commit()
    then = THURSDAY_10 + timedelta(minutes=1)
    assert run_tick(session, lambda ids: None, now=then, frequency_cap=two_a_day).held == 1
    lead = next(e for e in contact.enrollments if e.campaign.contact_type == "lead")
    assert lead.next_send_at == friday_10


def test_the_panels_next_email_is_the_date_the_itinerary_gives(
    app, monkeypatch, admin, session, make_contact, campaigns
):
    """One email a day: Lead's and Networking's emails are both due a Thursday 10:00, and
    the cap holds Networking's to Friday (the itinerary says so). The campaign panel
    beside it said Thursday 10:00 for Networking, a date it does not go."""
    from crm_app.web.filters import local_time

    monkeypatch.setitem(app.config, "FREQUENCY_CAP_COUNT", 1)
    now = datetime.now(UTC)
    thursday_10 = (now + timedelta(days=7 + (3 - now.weekday()) % 7)).replace(
        hour=10, minute=0, second=0, microsecond=0
    )
    contact = make_contact("lead")
    enroll(session, contact, campaigns["networking"], actor="test")
    for enrollment in contact.enrollments:
        enrollment.next_send_at = thursday_10
    session.commit()
    html = admin.get(f"/contacts/{contact.id}").get_data(as_text=True)
    panel = html.split('id="campaign-panel"')[1].split("</section>")[0]
    networking = panel.split('data-campaign="Networking"')[1].split("</tr>")[0]
    lead = panel.split('data-campaign="Lead"')[1].split("</tr>")[0]
    assert local_time(thursday_10 + timedelta(days=1), "UTC") in networking
    assert local_time(thursday_10, "UTC") in lead
