"""A small analytics fixture whose every figure was counted by hand (shared with the browser test).

Range: 2026-03-01 .. 2026-03-10 (UTC days). Campaign A (Lead, goal "type:prospect" within
30 days) and B (Prospect, no goal type, 10 days: only "goal:" events count).

A's messages (step, sent, then first events):
  m1 eA1 s1 03-01 10:00  delivered, opened 03-02, clicked 03-02
  m2 eA1 s2 03-03 10:00  delivered, opened 03-03
  m3 eA2 s1 03-02 10:00  bounced
  m4 eA3 s1 03-03 11:00  delivered, opened 03-03, spam report 03-04
  m5 eA3 s2 03-05 09:00  delivered, opened 03-05, clicked 03-05, unsubscribed 03-06
  m8 eA1 s3 03-10 23:59:59  delivered                    (last second of the range)
  m6 eA0 s1 2026-01-02   delivered, opened 03-02          (sent before the range: not counted)
  m9 eA1 s4 03-11 00:00  delivered                        (first second after: not counted)
  m7 eA3 s3 queued, never sent                            (not counted)
=> A: sent 6, delivered 5, opened 4, clicked 2, bounced 1, spam 1, unsubscribed 1.
Enrolments of A: eA1 completed 03-05, eA2 stopped 03-04, eA3 active, eA0 (enrolled in
January) completed 03-06 => ended 3, completed 2 (66.7%). Started in range: eA1, eA2, eA3;
converted: eA2 only (an exit goal ended it 03-04, converted_at set) => 1/3 (33.3%); the
goal rows of c1, c2 and c3 end nothing by themselves: conversion counts exactly the
enrolments an exit goal ended.
B: n1 (c1) sent 03-02 delivered opened 03-09; n2 (c4) sent 03-02 delivered.
Enrolments of B: eB1 active, eB2 completed 03-08 => completion 1/1; started 2; converted 0
(c4's "goal:demo_booked" 03-05 ended no enrolment).
"""

from __future__ import annotations

from datetime import UTC, date, datetime

from crm_app.drip.reporting.daily_counts import rebuild as rebuild_daily_counts
from crm_app.models import Contact, Enrollment, Message
from crm_app.models.tracking import ContactGoal

FIRST_DAY = date(2026, 3, 1)
LAST_DAY = date(2026, 3, 10)


def at(month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(2026, month, day, hour, minute, second, tzinfo=UTC)


# Per step of A: (sent, delivered, opened, clicked, bounced, spam, unsubscribed)
EXPECTED_A_STEPS = {
    1: (3, 2, 2, 1, 1, 1, 0),
    2: (2, 2, 2, 1, 0, 0, 1),
    3: (1, 1, 0, 0, 0, 0, 0),
    4: (0, 0, 0, 0, 0, 0, 0),
    5: (0, 0, 0, 0, 0, 0, 0),
    6: (0, 0, 0, 0, 0, 0, 0),
}
EXPECTED_A_TOTALS = (6, 5, 4, 2, 1, 1, 1)
EXPECTED_B_TOTALS = (2, 2, 1, 0, 0, 0, 0)
# Per day of A in the range: sends, first opens, first clicks.
EXPECTED_A_DAILY = {
    date(2026, 3, 1): (1, 0, 0),
    date(2026, 3, 2): (1, 1, 1),
    date(2026, 3, 3): (2, 2, 0),
    date(2026, 3, 5): (1, 1, 1),
    date(2026, 3, 10): (1, 0, 0),
}


def build_analytics_fixture(session, campaigns) -> dict:
    """Insert the rows above directly (exact timestamps); returns the campaigns by letter."""
    a, b = campaigns["lead"], campaigns["prospect"]
    a.goal_contact_type, a.goal_days = "prospect", 30
    b.goal_contact_type, b.goal_days = "", 10
    steps_a = {step.position: step for step in a.steps}
    steps_b = {step.position: step for step in b.steps}

    contacts = {}
    for n, kind in ((1, "lead"), (2, "lead"), (3, "lead"), (4, "prospect")):
        contacts[n] = Contact(
            email=f"analytics{n}@example.com", first_name=f"C{n}", contact_type=kind
        )
    session.add_all(contacts.values())
    session.flush()

    def enrol(contact, campaign, enrolled_at, status="active", ended_at=None):
        row = Enrollment(
            contact_id=contact.id,
            campaign_id=campaign.id,
            status=status,
            enrolled_at=enrolled_at,
            ended_at=ended_at,
            end_reason="" if status == "active" else status,
        )
        session.add(row)
        return row

    e_a1 = enrol(contacts[1], a, at(3, 1, 9), "completed", at(3, 5, 12))
    e_a2 = enrol(contacts[2], a, at(3, 2, 9), "stopped", at(3, 4, 12))
    e_a2.converted_at, e_a2.end_reason = at(3, 4, 12), "converted: goal demo booked"
    e_a3 = enrol(contacts[3], a, at(3, 3, 9))
    e_a0 = enrol(contacts[4], a, at(1, 1, 9), "completed", at(3, 6, 12))
    e_b1 = enrol(contacts[1], b, at(3, 2, 9))
    e_b2 = enrol(contacts[4], b, at(3, 2, 9), "completed", at(3, 8, 12))
    session.flush()

    def message(enrollment, steps, position, sent_at, status="sent", **first_events):
        row = Message(
            enrollment_id=enrollment.id,
            step_id=steps[position].id,
            contact_id=enrollment.contact_id,
            campaign_id=enrollment.campaign_id,
            status=status,
            to_email="x@example.com",
            sent_at=sent_at,
            **first_events,
        )
        session.add(row)
        return row

    message(e_a1, steps_a, 1, at(3, 1, 10), delivered_at=at(3, 1, 10, 1),
            opened_at=at(3, 2, 8), clicked_at=at(3, 2, 8, 5))  # fmt: skip
    message(e_a1, steps_a, 2, at(3, 3, 10), delivered_at=at(3, 3, 10, 1), opened_at=at(3, 3, 12))
    message(e_a2, steps_a, 1, at(3, 2, 10), bounced_at=at(3, 2, 10, 1))
    message(e_a3, steps_a, 1, at(3, 3, 11), delivered_at=at(3, 3, 11, 1),
            opened_at=at(3, 3, 13), spam_reported_at=at(3, 4))  # fmt: skip
    message(e_a3, steps_a, 2, at(3, 5, 9), delivered_at=at(3, 5, 9, 1), opened_at=at(3, 5, 10),
            clicked_at=at(3, 5, 10, 1), unsubscribed_at=at(3, 6))  # fmt: skip
    message(e_a0, steps_a, 1, at(1, 2, 10), delivered_at=at(1, 2, 10, 1), opened_at=at(3, 2))
    message(e_a3, steps_a, 3, None, status="queued")
    message(e_a1, steps_a, 3, at(3, 10, 23, 59, 59), delivered_at=at(3, 11, 0, 0, 30))
    message(e_a1, steps_a, 4, at(3, 11), delivered_at=at(3, 11, 0, 1))
    message(e_b1, steps_b, 1, at(3, 2, 12), delivered_at=at(3, 2, 12, 1), opened_at=at(3, 9))
    message(e_b2, steps_b, 1, at(3, 2, 12), delivered_at=at(3, 2, 12, 1))

    session.add_all(
        [
            ContactGoal(contact_id=contacts[1].id, name="type:prospect", occurred_at=at(3, 10)),
            ContactGoal(contact_id=contacts[2].id, name="goal:demo_booked", occurred_at=at(4, 15)),
            ContactGoal(contact_id=contacts[3].id, name="type:client", occurred_at=at(3, 4)),
            ContactGoal(contact_id=contacts[3].id, name="goal:early", occurred_at=at(2, 1)),
            ContactGoal(contact_id=contacts[4].id, name="goal:demo_booked", occurred_at=at(3, 5)),
        ]
    )
    session.flush()
    # Written behind the app's back (exact timestamps): the rollups from these rows.
    rebuild_daily_counts(session)
    session.commit()
    return {"A": a, "B": b}
