"""A/B variants: the split, the variant on the message and on retry, the verdict,
promotion (manual and automatic) and the per-variant results."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from types import SimpleNamespace

import pytest
import sqlalchemy as sa

from crm_app.drip.campaigns.lifecycle import clone_campaign
from crm_app.drip.delivery.pipeline import deliver_messages
from crm_app.drip.delivery.tick import run_tick
from crm_app.drip.experiments.auto_promotion import auto_promote
from crm_app.drip.experiments.variants import (
    VariantError,
    VariantInput,
    choose,
    promote,
    running_variants,
    start_test,
    stop_test,
)
from crm_app.drip.reporting.variants import VariantCounts, variant_counts, verdict, z_test
from crm_app.models import AuditEntry, Enrollment, Message, StepVariant, StepVersion, utcnow
from tests.delivery_helpers import open_all_week

SENDER = {"name": "Sam", "first_name": "Sam", "email": "sam@example.com"}


def _variants(weights: dict[str, int]) -> list[SimpleNamespace]:
    return [SimpleNamespace(id=n, key=k, weight=w) for n, (k, w) in enumerate(weights.items())]


@pytest.mark.parametrize("weights", [{"A": 50, "B": 50}, {"A": 20, "B": 30, "C": 50}])
def test_split_is_deterministic_and_follows_the_weights_over_10000_contacts(weights):
    variants = _variants(weights)
    picks = [choose(variants, 7, contact_id).key for contact_id in range(1, 10_001)]
    again = [choose(variants, 7, contact_id).key for contact_id in range(1, 10_001)]
    assert picks == again  # the same contact always gets the same variant
    shares = Counter(picks)
    for key, weight in weights.items():
        assert abs(shares[key] / 100 - weight) < 2.5, (key, shares)
    # Another step splits the same contacts differently (not always the same half).
    other = [choose(variants, 8, contact_id).key for contact_id in range(1, 10_001)]
    assert other != picks


def _start(session, step, **texts):
    inputs = [
        VariantInput("A", "50", subject=texts.get("a", "Option A for {{ contact.first_name }}")),
        VariantInput("B", "50", subject=texts.get("b", "Option B for {{ contact.first_name }}")),
    ]
    variants = start_test(session, step, inputs, SENDER, actor="user:admin@example.com")
    session.commit()
    return variants


def _due_messages(session, campaign, contacts) -> list[Message]:
    open_all_week(campaign)
    ids = [c.id for c in contacts]
    for enrollment in session.scalars(sa.select(Enrollment).where(Enrollment.contact_id.in_(ids))):
        enrollment.next_send_at = utcnow() - timedelta(seconds=1)
    session.commit()
    run_tick(session, lambda ids: None)
    return list(session.scalars(sa.select(Message).where(Message.contact_id.in_(ids))))


def test_variant_is_recorded_on_the_message_and_kept_on_retry(
    session, make_contact, campaigns, backend, settings, fake_sendgrid
):
    campaign = campaigns["lead"]
    contacts = [make_contact("lead") for _ in range(6)]
    variants = {v.id: v for v in _start(session, campaign.steps[0])}
    messages = _due_messages(session, campaign, contacts)
    fake_sendgrid.script(*["500"] * len(messages))  # every first attempt: a transient error

    deliver_messages(session, [m.id for m in messages], backend, settings)
    first = {}
    for message in messages:
        session.refresh(message)
        assert message.status == "queued" and message.variant_id in variants
        first[message.id] = message.variant_id
        # The weights change meanwhile: a retry must not switch the contact's variant.
    for variant in variants.values():
        variant.weight = 99 if variant.key == "A" else 1
    session.commit()
    for message in messages:
        message.next_attempt_at = None
    session.commit()

    deliver_messages(session, [m.id for m in messages], backend, settings)
    sent_subjects = {
        r["personalizations"][0]["to"][0]["email"]: r["subject"] for r in fake_sendgrid.requests
    }
    for message in messages:
        session.refresh(message)
        assert message.status == "sent"
        assert message.variant_id == first[message.id]
        key = variants[message.variant_id].key
        assert message.subject.startswith(f"Option {key} for")
        assert sent_subjects[message.to_email].startswith(f"Option {key} for")


def test_bad_variants_are_refused_next_to_the_field_and_nothing_is_saved(session, campaigns):
    step = campaigns["lead"].steps[0]
    cases = [
        ([VariantInput("A", "60", subject="x"), VariantInput("B", "30", subject="y")], "weights"),
        (
            [
                VariantInput("A", "50", subject="{{ contact.shoe_size }}"),
                VariantInput("B", "50", subject="y"),
            ],
            "variant-A-subject",
        ),
        (
            [VariantInput("A", "50", subject="ok"), VariantInput("B", "50", body_html="{% if %}")],
            "variant-B-body_html",
        ),
        ([VariantInput("A", "100", subject="only one")], "variants"),
        (
            [
                VariantInput("A", "50", subject="{{ block('nope') }}"),
                VariantInput("B", "50", subject="y"),
            ],
            "variant-A-subject",
        ),
    ]
    for inputs, field in cases:
        with pytest.raises(VariantError) as refused:
            start_test(session, step, inputs, SENDER, actor="test")
        assert field in refused.value.errors, refused.value.errors
        session.rollback()
    assert session.scalar(sa.select(sa.func.count(StepVariant.id))) == 0


def test_verdict_against_known_counts():
    a, b = SimpleNamespace(id=1, key="A"), SimpleNamespace(id=2, key="B")
    # 200/1000 vs 260/1000: z = 3.19, p = 0.0014: B wins.
    counts = {1: VariantCounts(sent=1000, opened=200), 2: VariantCounts(sent=1000, opened=260)}
    z, p = z_test(260, 1000, 200, 1000)
    assert round(z, 2) == 3.19 and round(p, 4) == 0.0014
    result = verdict([a, b], counts, min_sends=100)
    assert result.winner_id == 2 and result.text.startswith("B wins on opens")
    # 200/1000 vs 215/1000: p = 0.40: no winner.
    close = {1: VariantCounts(sent=1000, opened=200), 2: VariantCounts(sent=1000, opened=215)}
    assert verdict([a, b], close).winner_id is None
    assert "could be chance" in verdict([a, b], close).text
    # Below the minimum sample: no verdict whatever the rates.
    small = {1: VariantCounts(sent=50, opened=5), 2: VariantCounts(sent=50, opened=40)}
    result = verdict([a, b], small, min_sends=100)
    assert result.winner_id is None and result.text.startswith("Not enough data yet")
    # Three variants: Bonferroni (0.025 each): p = 0.03 alone is not enough.
    c = SimpleNamespace(id=3, key="C")
    three = {
        1: VariantCounts(sent=1000, opened=200),
        2: VariantCounts(sent=1000, opened=239),
        3: VariantCounts(sent=1000, opened=100),
    }
    assert z_test(239, 1000, 200, 1000)[1] > 0.025
    assert verdict([a, b, c], three).winner_id is None


def _send_all(session, campaign, contacts, backend, settings) -> list[Message]:
    messages = _due_messages(session, campaign, contacts)
    deliver_messages(session, [m.id for m in messages], backend, settings)
    for message in messages:
        session.refresh(message)
    return messages


def test_per_variant_results_count_sends_opens_clicks_and_conversions(
    session, make_contact, campaigns, backend, settings
):
    from crm_app.drip.audience.enrollment import record_goal

    campaign = campaigns["lead"]
    campaign.goal_events = "demo booked"
    contacts = [make_contact("lead") for _ in range(20)]
    variants = _start(session, campaign.steps[0])
    messages = _send_all(session, campaign, contacts, backend, settings)
    by_variant = Counter(m.variant_id for m in messages)
    now = utcnow()
    opened = [m for m in messages if m.id % 2 == 0]
    for message in opened:
        message.opened_at = message.human_opened_at = now
    messages[0].clicked_at = messages[0].human_clicked_at = now
    machine_opened = next(m for m in messages if m not in opened)
    machine_opened.opened_at = now  # Apple's proxy opened it, no person: not counted
    session.commit()
    record_goal(session, messages[0].contact, "Demo booked", actor="test")
    session.commit()

    counts = variant_counts(session, [v.id for v in variants])
    assert {v: c.sent for v, c in counts.items()} == dict(by_variant)
    assert sum(c.opened for c in counts.values()) == len(opened)
    assert counts[messages[0].variant_id].clicked == 1
    assert counts[messages[0].variant_id].converted == 1
    assert sum(c.converted for c in counts.values()) == 1


def test_promotion_makes_the_winner_a_new_version_and_keeps_history(
    session, make_contact, campaigns, backend, settings
):
    campaign = campaigns["lead"]
    step = campaign.steps[0]
    version = step.version
    a, b = _start(session, step)
    contacts = [make_contact("lead") for _ in range(8)]
    sent = _send_all(session, campaign, contacts, backend, settings)

    promote(session, b, actor="user:admin@example.com")
    session.commit()

    assert step.version == version + 1
    assert step.subject == "Option B for {{ contact.first_name }}"
    saved = session.scalar(
        sa.select(StepVersion).where(
            StepVersion.step_id == step.id, StepVersion.version == step.version
        )
    )
    assert "promoted variant B" in saved.note
    assert running_variants(session, step) == []
    assert (a.outcome, b.outcome) == ("lost", "promoted")
    # History stays: every email keeps its variant, and the counts still add up.
    assert sum(c.sent for c in variant_counts(session, [a.id, b.id]).values()) == len(sent)
    # New emails: the winner's text, no variant.
    later = [make_contact("lead") for _ in range(3)]
    for message in _send_all(session, campaign, later, backend, settings):
        assert message.variant_id is None
        assert message.subject.startswith("Option B for")


def test_auto_promotion_is_off_by_default_and_promotes_a_clear_winner(
    session, make_contact, campaigns, backend, settings
):
    campaign = campaigns["lead"]
    a, b = _start(session, campaign.steps[0])
    contacts = [make_contact("lead") for _ in range(80)]
    messages = _send_all(session, campaign, contacts, backend, settings)
    now = utcnow()
    for message in messages:  # B: 4 in 5 opened; A: 1 in 4
        opened = message.id % 5 != 0 if message.variant_id == b.id else message.id % 4 == 0
        if opened:
            message.opened_at = message.human_opened_at = now
    session.commit()
    assert settings.ab_auto_promote_after == 0
    assert auto_promote(session, after=settings.ab_auto_promote_after, min_sends=5) == []
    assert running_variants(session, campaign.steps[0]) != []
    counts = variant_counts(session, [a.id, b.id])
    # Not yet N sends per variant: nothing.
    assert auto_promote(session, after=1000, min_sends=5) == []
    assert auto_promote(session, after=min(c.sent for c in counts.values()), min_sends=5) == [b.id]
    session.commit()
    assert b.outcome == "promoted" and campaign.steps[0].subject.startswith("Option B")


def test_clone_carries_running_tests_as_fresh_variants_and_leaves_ended_ones(
    session, make_contact, campaigns, backend, settings
):
    campaign = campaigns["lead"]
    first, second = campaign.steps[0], campaign.steps[1]
    a, b = _start(session, first)
    b.weight, a.weight = 70, 30
    b.body_text = first.body_text + "\nA P.S. only B has."
    _start(session, second)
    stop_test(session, second, actor="test")  # ended: stays with the email that ran it
    session.commit()
    _send_all(session, campaign, [make_contact("lead") for _ in range(4)], backend, settings)

    copy = clone_campaign(session, campaign, actor="user:admin@example.com")
    session.commit()

    running = running_variants(session, copy.steps[0])
    assert [(v.key, v.weight, v.subject, v.body_html, v.body_text) for v in running] == [
        (v.key, v.weight, v.subject, v.body_html, v.body_text) for v in (a, b)
    ]
    assert {v.id for v in running}.isdisjoint({a.id, b.id})
    assert all(v.retired_at is None and v.outcome == "" for v in running)
    assert all(c.sent == 0 for c in variant_counts(session, [v.id for v in running]).values())
    assert running_variants(session, copy.steps[1]) == []
    copied = sa.select(sa.func.count(StepVariant.id)).where(StepVariant.step_id == copy.steps[1].id)
    assert session.scalar(copied) == 0
    # The source's test runs on, untouched.
    assert running_variants(session, first) == [a, b]
    started = session.scalar(
        sa.select(AuditEntry).where(
            AuditEntry.action == "ab_test.started", AuditEntry.target_id == copy.steps[0].id
        )
    )
    assert "copied from email 1 of Lead" in started.summary


def test_the_contact_page_names_an_email_under_test_by_the_contacts_own_variant(
    admin, session, make_contact, campaigns
):
    """The itinerary lists the subject the contact will get: its variant's, the same one
    the send draws (choose), not the email's own."""
    step = campaigns["lead"].steps[0]
    variants = _start(session, step)
    contact = make_contact("lead", first_name="Ada")
    session.commit()
    own = choose(variants, step.id, contact.id).key
    html = admin.get(f"/contacts/{contact.id}").get_data(as_text=True)
    itinerary = html.split('id="itinerary-table"')[1].split("</table>")[0]
    assert f"Option {own} for Ada" in itinerary
    other = "B" if own == "A" else "A"
    assert f"Option {other} for Ada" not in itinerary
