"""The analytics rollups are maintained on write: after delivery, webhook events (first
seen, out of order, duplicated), an in-doubt email SendGrid reports, an unsubscribe
through our own link, and contacts deleted with their emails, every rollup row equals
the GROUP BY over messages it stands for, and the analytics read from them agree with
the messages."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa

from crm_app.drip.audience.bulk_actions import BulkAction, Selection, run_bulk_action
from crm_app.drip.audience.contacts import delete_contact
from crm_app.drip.audience.unsubscribe import unsubscribe
from crm_app.drip.delivery.backends import OutboxBackend
from crm_app.drip.delivery.pipeline import deliver_messages
from crm_app.drip.delivery.tick import run_tick
from crm_app.drip.reporting import daily_counts
from crm_app.drip.reporting.analytics import campaign_report, campaigns_overview
from crm_app.drip.reporting.date_range import DateRange
from crm_app.drip.tracking.events import ingest_events
from crm_app.models import CampaignDailyCounts, CampaignDailyFirsts, Message, utcnow
from tests.delivery_helpers import bulk_due, open_all_week

pytest_plugins = ["tests.conftest_delivery"]


def _rollups(session) -> tuple[list, list]:
    counts = session.execute(
        sa.select(CampaignDailyCounts.__table__).order_by(
            CampaignDailyCounts.campaign_id, CampaignDailyCounts.step_id, CampaignDailyCounts.day
        )
    ).all()
    firsts = session.execute(
        sa.select(CampaignDailyFirsts.__table__).order_by(
            CampaignDailyFirsts.campaign_id, CampaignDailyFirsts.sent_day, CampaignDailyFirsts.day
        )
    ).all()
    return [tuple(r) for r in counts if any(r[3:])], [tuple(r) for r in firsts if any(r[3:])]


def _assert_rollups_equal_the_messages(session) -> None:
    maintained = _rollups(session)
    daily_counts.rebuild(session)
    assert maintained == _rollups(session)
    session.rollback()


def _event(kind: str, message_id: int, n: int, ts: float, **extra) -> dict:
    return {
        "event": kind,
        "email": f"m{message_id}@example.com",
        "timestamp": ts,
        "sg_event_id": f"{kind}-{message_id}-{n}",
        "message_id": str(message_id),
        **extra,
    }


def _sent_ids(session, campaigns, count: int) -> list[int]:
    campaign = campaigns["client"]
    open_all_week(campaign)
    session.commit()
    bulk_due(session, campaign, count, utcnow() - timedelta(minutes=1))
    ids = run_tick(session, lambda ids: None, now=utcnow()).enqueued
    return ids


def test_delivery_webhook_events_and_our_unsubscribe_keep_the_rollups_exact(
    session, campaigns, settings
):
    ids = _sent_ids(session, campaigns, 12)
    in_doubt = ids[-1]
    report = deliver_messages(session, ids[:-1], OutboxBackend(), settings)
    assert len(report.sent) == 11
    # The last one went out but its worker died: in doubt, then SendGrid reports it.
    session.execute(sa.update(Message).where(Message.id == in_doubt).values(status="in_doubt"))
    session.commit()
    _assert_rollups_equal_the_messages(session)
    assert _rollups(session)[0][0][3] == 11  # sent, counted by record_sent

    now = utcnow().timestamp()
    events = [_event("delivered", i, 1, now + 60) for i in ids[:8]]
    events += [_event("open", i, 1, now + 3600) for i in ids[:6]]
    events += [_event("open", i, 2, now + 7200) for i in ids[:6]]  # not a first open
    events += [_event("open", ids[6], 1, now + 90000)]  # opened the next day
    events += [_event("click", i, 1, now + 3700, url="https://x.example") for i in ids[:3]]
    events += [_event("bounce", ids[8], 1, now + 60, type="bounce", reason="550")]
    events += [_event("spamreport", ids[0], 1, now + 9000)]
    # Apple's privacy proxy opening one: an open, but not a person's.
    events += [_event("open", ids[7], 1, now + 5000, sg_machine_open=True)]
    # An event about the in-doubt email before SendGrid says it processed it.
    events += [_event("open", in_doubt, 1, now + 4000)]
    ingest_events(session, events, hash_key=b"k" * 32)
    session.commit()
    _assert_rollups_equal_the_messages(session)

    # Replayed, and an earlier open arriving late: nothing is counted twice.
    events += [_event("open", ids[1], 9, now + 10)]
    ingest_events(session, events, hash_key=b"k" * 32)
    session.commit()
    _assert_rollups_equal_the_messages(session)

    ingest_events(session, [_event("processed", in_doubt, 1, now + 1)], hash_key=b"k" * 32)
    session.commit()
    assert session.get(Message, in_doubt).status == "sent"
    _assert_rollups_equal_the_messages(session)

    contact = session.get(Message, ids[2]).contact
    unsubscribe(session, contact, source="link")
    session.commit()
    _assert_rollups_equal_the_messages(session)

    today = utcnow().date()
    period = DateRange(today - timedelta(days=1), today + timedelta(days=2))
    campaign = campaigns["client"]
    report = campaign_report(session, campaign, period)
    counts = report.summary.counts
    opened = 6 + 1 + 1  # ids[:6], ids[6], the in-doubt one (people)
    assert (counts.sent, counts.delivered, counts.opened, counts.clicked) == (12, 8, opened + 1, 3)
    assert (counts.human_opened, counts.human_clicked) == (opened, 3)  # not the machine
    assert (counts.bounced, counts.spam_reports, counts.unsubscribed) == (1, 1, 1)
    overview = {row.campaign_id: row.counts for row in campaigns_overview(session, period).rows}
    assert overview[campaign.id] == counts
    assert sum(p.opened for p in report.series) == opened + 1
    assert sum(p.sent for p in report.series) == 12
    assert report.steps[0].counts.sent == 12


def test_a_range_counts_only_the_days_in_it(session, campaigns, settings):
    ids = _sent_ids(session, campaigns, 3)
    deliver_messages(session, ids, OutboxBackend(), settings)
    today = utcnow().date()
    campaign = campaigns["client"]

    yesterday = DateRange(today - timedelta(days=1), today - timedelta(days=1))
    assert campaign_report(session, campaign, yesterday).summary.counts.sent == 0
    assert campaign_report(session, campaign, DateRange(today, today)).summary.counts.sent == 3


def test_a_batchs_columns_in_any_order_share_one_statement(session, campaigns, settings):
    # The rollups' statements are kept per set of columns: the order a batch met them in
    # (its events' order) must not add one per permutation to a long-running process.
    ids = _sent_ids(session, campaigns, 2)
    deliver_messages(session, ids, OutboxBackend(), settings)
    daily_counts._first_seen_statements.cache_clear()
    daily_counts.count_first_seen_many(session, {"opened_at": [ids[0]], "clicked_at": [ids[1]]})
    daily_counts.count_first_seen_many(session, {"clicked_at": [ids[0]], "opened_at": [ids[1]]})
    assert daily_counts._first_seen_statements.cache_info().currsize == 1


def test_an_earlier_first_open_arriving_late_on_another_day_moves_its_count(
    session, campaigns, settings
):
    """A first open or click seen the day after next, then an earlier one (the next day)
    arriving late: the first-opens series counts it on the earlier day, as the messages
    say, whatever the time of day the test runs at."""
    ids = _sent_ids(session, campaigns, 3)
    deliver_messages(session, ids, OutboxBackend(), settings)
    session.commit()
    sent_at = session.get(Message, ids[0]).sent_at.timestamp()
    day = 86400
    later = [_event("open", i, 1, sent_at + 2 * day) for i in ids]
    later += [_event("click", ids[0], 1, sent_at + 2 * day, url="https://x.example")]
    ingest_events(session, later, hash_key=b"k" * 32)
    session.commit()
    earlier = [_event("open", i, 2, sent_at + day) for i in ids[:2]]
    earlier += [_event("click", ids[0], 2, sent_at + day, url="https://x.example")]
    earlier += [_event("open", ids[2], 3, sent_at + 2 * day - 1)]  # earlier, the same day
    ingest_events(session, earlier, hash_key=b"k" * 32)
    session.commit()
    _assert_rollups_equal_the_messages(session)
    firsts = {(row[2] - row[1]).days: row[3:] for row in _rollups(session)[1]}
    assert firsts == {1: (2, 1), 2: (1, 0)}  # (first opens, first clicks) by days after sending


def test_deleted_contacts_take_their_emails_out_of_the_rollups(session, campaigns, settings):
    """A contact deleted (alone or in bulk) takes its emails with it, by cascade: the
    rollups stop counting them, first opens and clicks of another day included, so the
    analytics agree with what the messages (and the dashboard) count."""
    ids = _sent_ids(session, campaigns, 6)
    deliver_messages(session, ids, OutboxBackend(), settings)
    session.commit()
    sent_at = session.get(Message, ids[0]).sent_at.timestamp()
    events = [_event("delivered", i, 1, sent_at + 60) for i in ids]
    events += [_event("open", i, 1, sent_at + 600) for i in ids[:4]]
    events += [_event("open", ids[4], 1, sent_at + 86400)]  # opened the next day
    events += [_event("click", i, 1, sent_at + 700, url="https://x.example") for i in ids[:2]]
    events += [_event("bounce", ids[5], 1, sent_at + 60, type="bounce", reason="550")]
    ingest_events(session, events, hash_key=b"k" * 32)
    session.commit()
    gone = [session.get(Message, i).contact_id for i in (ids[0], ids[4], ids[5])]

    delete_contact(session, session.get(Message, ids[0]).contact, actor="test")
    session.commit()
    _assert_rollups_equal_the_messages(session)
    for _ in run_bulk_action(
        session, BulkAction("delete"), Selection(contact_ids=tuple(gone[1:])),
        actor="test", stop_reason="",
    ):  # fmt: skip
        session.commit()
    _assert_rollups_equal_the_messages(session)

    today = utcnow().date()
    period = DateRange(today - timedelta(days=1), today + timedelta(days=2))
    report = campaign_report(session, campaigns["client"], period)
    counts = report.summary.counts
    assert session.scalar(sa.select(sa.func.count()).select_from(Message)) == 3
    assert (counts.sent, counts.delivered, counts.opened, counts.clicked) == (3, 3, 3, 1)
    assert counts.bounced == 0
    assert sum(p.opened for p in report.series) == 3
