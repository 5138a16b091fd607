"""Content blocks (each rule and the default, in the sandbox, the preview's note,
deletion refused while live), step conditions (skip with the reason, the next email
scheduled) and exit goals (converted at once, a queued email skipped)."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from crm_app.drip.audience.ending import stop_all
from crm_app.drip.audience.enrollment import change_contact_type, enroll, record_goal
from crm_app.drip.campaigns.harness import preview_context, render_preview
from crm_app.drip.campaigns.rendering import SAMPLE_SENDER, WorkspaceSender
from crm_app.drip.delivery.pipeline import deliver_messages
from crm_app.drip.delivery.tick import run_tick
from crm_app.drip.experiments.blocks import (
    BlockError,
    RuleInput,
    all_blocks,
    delete_block,
    save_block,
)
from crm_app.drip.experiments.conditions import ConditionError, set_condition
from crm_app.models import Activity, Enrollment, Message, utcnow
from tests.delivery_helpers import open_all_week

WORKSPACE = WorkspaceSender("Drip", "", "hello@example.com", "Drip", "https://example.com")
UNSUB = '<a href="{{ unsubscribe_url }}">Unsubscribe</a>'


def _intro(session):
    block = save_block(
        session,
        None,
        "intro",
        "Hello {{ contact.first_name }}, a note for every business.",
        [
            RuleInput("industry", "is", "Manufacturing", "Factories like {{ contact.company }}"),
            RuleInput("custom.company_size", "gt", "50", "Teams over fifty people"),
        ],
        actor="test",
    )
    session.commit()
    return block


def _render_for(session, contact, source="{{ block('intro') }}"):
    context = preview_context(contact, SAMPLE_SENDER, WORKSPACE, blocks=all_blocks(session))
    return render_preview(source, f"<p>{source}</p>{UNSUB}", source, context, contact)


def test_each_block_rule_and_the_default_and_the_preview_says_which(session, make_contact):
    _intro(session)
    maker = make_contact("lead", industry="manufacturing ", company="Acme <Steel>")
    big = make_contact("lead", industry="Retail", custom_fields={"company_size": "120"})
    small = make_contact("lead", industry="Retail", custom_fields={"company_size": "12"})
    other = make_contact("lead", first_name="Ada")

    made = _render_for(session, maker)
    assert made.email.subject == "Factories like Acme <Steel>"
    assert "Factories like Acme &lt;Steel&gt;" in made.email.html  # escaped in HTML
    assert made.blocks == {"intro": 'rule 1: industry is "Manufacturing"'}
    assert _render_for(session, big).email.text == "Teams over fifty people"
    assert _render_for(session, big).blocks["intro"].startswith("rule 2:")
    assert _render_for(session, small).blocks["intro"] == "default"
    assert _render_for(session, other).email.text == "Hello Ada, a note for every business."


def test_bad_blocks_are_refused_next_to_the_field(session, campaigns):
    cases = [
        ("Bad Name", "x", [], "name"),
        ("intro", "{{ contact.shoe_size }}", [], "default_content"),
        ("intro", "ok", [RuleInput("shoe_size", "is", "x", "y")], "rule-1-field"),
        ("intro", "ok", [RuleInput("custom.size", "gt", "many", "y")], "rule-1-value"),
        ("intro", "ok", [RuleInput("industry", "is", "x", "{% if %}")], "rule-1-content"),
        ("intro", "{{ block('intro') }}", [], "default_content"),
    ]
    for name, default, rules, field in cases:
        with pytest.raises(BlockError) as refused:
            save_block(session, None, name, default, rules, actor="test")
        assert field in refused.value.errors, refused.value.errors
        session.rollback()
    assert all_blocks(session) == {}


def test_a_block_used_by_a_live_email_cannot_be_deleted(session, campaigns):
    block = _intro(session)
    step = campaigns["lead"].steps[1]
    step.body_text = step.body_text + "\n{{ block('intro') }}"
    session.commit()
    with pytest.raises(BlockError) as refused:
        delete_block(session, block, actor="test")
    assert "Lead" in refused.value.errors["delete"] and "email 2" in refused.value.errors["delete"]
    campaigns["lead"].status = "archived"
    session.commit()
    delete_block(session, block, actor="test")
    session.commit()
    assert all_blocks(session) == {}


def test_delivery_renders_the_contacts_block(session, make_contact, campaigns, backend, settings):
    _intro(session)
    step = campaigns["lead"].steps[0]
    step.subject = "{{ block('intro') }}"
    session.commit()
    contact = make_contact("lead", industry="Manufacturing", company="Acme")
    message = _due(session, contact)
    deliver_messages(session, [message.id], backend, settings)
    session.refresh(message)
    assert message.status == "sent" and message.subject == "Factories like Acme"


def _due(session, contact) -> Message:
    enrollment = session.scalar(
        sa.select(Enrollment).where(
            Enrollment.contact_id == contact.id, Enrollment.status == "active"
        )
    )
    open_all_week(enrollment.campaign)
    enrollment.next_send_at = utcnow() - timedelta(seconds=1)
    session.commit()
    run_tick(session, lambda ids: None)
    return session.scalars(
        sa.select(Message).where(Message.contact_id == contact.id).order_by(Message.id.desc())
    ).first()


def _timeline(session, contact) -> list[str]:
    return list(
        session.scalars(
            sa.select(Activity.detail)
            .where(Activity.contact_id == contact.id)
            .order_by(Activity.id)
        )
    )


def test_a_false_field_condition_skips_the_email_with_the_reason_and_schedules_the_next(
    session, make_contact, campaigns, backend, settings
):
    campaign = campaigns["lead"]
    first, second = campaign.steps[0], campaign.steps[1]
    set_condition(session, first, "field", "industry", "is", "Manufacturing", "", actor="test")
    session.commit()
    retail = make_contact("lead", industry="Retail")
    maker = make_contact("lead", industry="Manufacturing")
    skipped, sent = _due(session, retail), _due(session, maker)

    before = utcnow()
    deliver_messages(session, [skipped.id, sent.id], backend, settings)
    session.refresh(skipped)
    session.refresh(sent)
    assert sent.status == "sent"
    assert skipped.status == "skipped"
    assert 'its condition does not hold (industry is "Manufacturing")' in skipped.error
    assert any("skipped: its condition does not hold" in d for d in _timeline(session, retail))
    enrollment = skipped.enrollment
    session.refresh(enrollment)
    assert enrollment.status == "active" and enrollment.current_step_id == second.id
    assert enrollment.next_send_at >= before + timedelta(days=second.delay_days) - timedelta(
        seconds=5
    )
    assert enrollment.last_sent_at is None  # nothing went out


def test_engagement_conditions_read_the_previous_email(
    session, make_contact, campaigns, backend, settings
):
    campaign = campaigns["lead"]
    second = campaign.steps[1]
    with pytest.raises(ConditionError):
        set_condition(session, campaign.steps[0], "engagement", "", "", "", "opened", actor="t")
    set_condition(session, second, "engagement", "", "", "", "not_opened", actor="test")
    session.commit()
    opener, ignorer = make_contact("lead"), make_contact("lead")
    for contact in (opener, ignorer):
        deliver_messages(session, [_due(session, contact).id], backend, settings)
    first_of_opener = session.scalar(
        sa.select(Message).where(Message.contact_id == opener.id, Message.status == "sent")
    )
    first_of_opener.opened_at = first_of_opener.sent_at + timedelta(hours=1)
    first_of_opener.human_opened_at = first_of_opener.opened_at
    session.commit()

    to_opener, to_ignorer = _due(session, opener), _due(session, ignorer)
    deliver_messages(session, [to_opener.id, to_ignorer.id], backend, settings)
    session.refresh(to_opener)
    session.refresh(to_ignorer)
    assert to_ignorer.status == "sent"  # not opened: the reminder goes
    assert to_opener.status == "skipped" and "was not opened" in to_opener.error


def test_a_goal_event_ends_the_enrolment_as_converted_and_skips_its_queued_email(
    session, make_contact, campaigns, backend, settings
):
    campaign = campaigns["lead"]
    campaign.goal_events = "Demo booked\nContract signed"
    session.commit()
    contact = make_contact("lead")
    queued = _due(session, contact)
    assert queued.status == "queued"

    record_goal(session, contact, "demo   BOOKED", actor="api:crm-sync")
    session.commit()
    enrollment = queued.enrollment
    assert enrollment.status == "stopped" and enrollment.converted_at is not None
    assert enrollment.end_reason == "converted: goal demo BOOKED"
    assert enrollment.next_send_at is None

    deliver_messages(session, [queued.id], backend, settings)
    session.refresh(queued)
    assert queued.status == "skipped"
    assert "reached a goal of the campaign" in queued.error
    assert any("converted (goal demo BOOKED)" in d for d in _timeline(session, contact))
    # A goal the campaign does not name ends nothing.
    other = make_contact("lead")
    record_goal(session, other, "newsletter read", actor="test")
    session.commit()
    assert other.enrollments[0].status == "active"


def test_reaching_the_goal_type_converts(session, make_contact, campaigns):
    contact = make_contact("lead")
    lead_enrollment = contact.enrollments[0]
    change_contact_type(session, contact, "prospect", actor="test")  # Lead's goal type
    session.commit()
    assert lead_enrollment.converted_at is not None
    assert lead_enrollment.end_reason == "converted: became a prospect"
    assert any(e.campaign_id == campaigns["prospect"].id and e.status == "active"
               for e in contact.enrollments)  # fmt: skip


@pytest.mark.parametrize(
    ("event", "engaged", "goes"),
    [
        ("opened", "human_opened_at", True),
        ("opened", None, False),
        ("opened", "opened_at", False),  # a machine open only: no sign of a person
        ("clicked", "human_clicked_at", True),
        ("clicked", "clicked_at", False),  # a link scanner's click only
    ],
)
def test_opened_and_clicked_conditions(
    session, make_contact, campaigns, backend, settings, event, engaged, goes
):
    second = campaigns["lead"].steps[1]
    set_condition(session, second, "engagement", "", "", "", event, actor="test")
    session.commit()
    contact = make_contact("lead")
    deliver_messages(session, [_due(session, contact).id], backend, settings)
    first = session.scalar(sa.select(Message).where(Message.contact_id == contact.id))
    if engaged:
        setattr(first, engaged, first.sent_at + timedelta(minutes=5))
        if engaged.startswith("human_"):  # a person's open is an open too
            setattr(first, engaged.removeprefix("human_"), first.sent_at + timedelta(minutes=5))
    session.commit()
    following = _due(session, contact)
    deliver_messages(session, [following.id], backend, settings)
    session.refresh(following)
    assert following.status == ("sent" if goes else "skipped")


def test_a_resumed_contact_s_opened_condition_reads_the_email_of_its_earlier_enrolment(
    session, make_contact, campaigns, backend, settings
):
    campaign = campaigns["lead"]
    set_condition(session, campaign.steps[1], "engagement", "", "", "", "opened", actor="test")
    session.commit()
    contact = make_contact("lead")
    deliver_messages(session, [_due(session, contact).id], backend, settings)
    first = session.scalar(sa.select(Message).where(Message.contact_id == contact.id))
    first.opened_at = first.human_opened_at = first.sent_at + timedelta(minutes=5)
    stop_all(session, contact, reason="paused by hand", actor="test")
    session.commit()
    enrollment = enroll(session, contact, campaign, actor="test")  # resumes at email 2
    session.commit()
    assert enrollment.entry == "resumed"

    second = _due(session, contact)
    assert second.step_id == campaign.steps[1].id
    deliver_messages(session, [second.id], backend, settings)
    session.refresh(second)
    assert second.status == "sent"  # opened email 1 (in the first enrolment): it goes


def test_an_email_whose_condition_reads_the_previous_one_cannot_become_the_first(
    session, campaigns
):
    from crm_app.drip.campaigns.steps import StepEditError, move_step, remove_step

    campaign = campaigns["lead"]
    first, second = campaign.steps[0], campaign.steps[1]
    set_condition(session, second, "engagement", "", "", "", "opened", actor="test")
    session.commit()
    with pytest.raises(StepEditError, match="first email has no previous email"):
        move_step(session, second, "up", actor="test", confirmed=True)
    with pytest.raises(StepEditError, match="first email has no previous email"):
        move_step(session, first, "down", actor="test", confirmed=True)
    with pytest.raises(StepEditError, match="first email has no previous email"):
        remove_step(session, first, actor="test", confirmed=True)
    session.rollback()
    assert [s.id for s in sorted(campaign.steps, key=lambda s: s.position)][:2] == [
        first.id,
        second.id,
    ]
    # Once the condition is cleared, the move goes through.
    set_condition(session, second, "none", "", "", "", "", actor="test")
    move_step(session, second, "up", actor="test", confirmed=True)
    session.commit()
    assert second.position == 1


def test_a_chunks_engagement_conditions_read_the_previous_emails_in_one_query(
    session, make_contact, campaigns, backend, settings
):
    """Each email's previous one is read for the whole chunk at once (not one query per
    email), and each decision is the one the single-email rule gives."""
    from crm_app.drip.experiments.conditions import condition_failure, previous_sent_many

    campaign = campaigns["lead"]
    set_condition(session, campaign.steps[1], "engagement", "", "", "", "opened", actor="test")
    session.commit()
    contacts = [make_contact("lead") for _ in range(4)]
    firsts = [_due(session, contact) for contact in contacts]
    deliver_messages(session, [m.id for m in firsts], backend, settings)
    for opened in firsts[:2]:  # two of the four opened their first email
        session.refresh(opened)
        opened.opened_at = opened.human_opened_at = opened.sent_at + timedelta(minutes=5)
    session.commit()
    seconds = [_due(session, contact) for contact in contacts]
    for message in seconds:  # loaded with the chunk by the worker (chunk._load)
        assert message.step is not None and message.enrollment is not None

    statements = []
    listen = lambda *args: statements.append(args[2])  # noqa: E731
    sa.event.listen(session.get_bind(), "before_cursor_execute", listen)
    try:
        previous = previous_sent_many(session, seconds)
    finally:
        sa.event.remove(session.get_bind(), "before_cursor_execute", listen)
    assert len(statements) == 1
    assert {m.id: previous[m.id].id for m in seconds} == {
        s.id: f.id for s, f in zip(seconds, firsts, strict=True)
    }
    assert [condition_failure(session, m, previous) for m in seconds] == [
        condition_failure(session, m) for m in seconds
    ]
    deliver_messages(session, [m.id for m in seconds], backend, settings)
    for message in seconds:
        session.refresh(message)
    assert [m.status for m in seconds] == ["sent", "sent", "skipped", "skipped"]
