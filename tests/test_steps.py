"""The campaigns core's rules for the editor: which actions an email allows, which
status changes a campaign offers, where a new email goes and what its delay counts from."""

from __future__ import annotations

import pytest

from crm_app.drip.campaigns.manage import counts_from_enrolment, status_changes
from crm_app.drip.campaigns.steps import (
    StepEditError,
    move_step,
    next_position,
    remove_step,
    step_actions,
)
from crm_app.models import Campaign, CampaignStep


def test_the_first_email_moves_down_the_last_moves_up_the_middle_both(campaigns):
    steps = campaigns["lead"].steps  # six emails
    assert step_actions(steps[0]) == {"down", "remove"}
    assert step_actions(steps[2]) == {"up", "down", "remove"}
    assert step_actions(steps[-1]) == {"up", "remove"}


def test_a_lone_email_can_neither_move_nor_be_removed(session):
    campaign = Campaign(slug="solo", name="Solo")
    campaign.steps.append(CampaignStep(position=1, subject="s", body_html="h", body_text="t"))
    session.add(campaign)
    session.flush()
    assert step_actions(campaign.steps[0]) == set()
    with pytest.raises(StepEditError, match="at least one email"):
        remove_step(session, campaign.steps[0], actor="test")


@pytest.mark.parametrize(("index", "direction"), [(0, "up"), (-1, "down")])
def test_a_move_the_email_does_not_allow_is_refused(session, campaigns, index, direction):
    step = campaigns["prospect"].steps[index]
    position = step.position
    assert direction not in step_actions(step)
    with pytest.raises(StepEditError, match=f"cannot move {direction}"):
        move_step(session, step, direction)
    assert step.position == position


def test_an_allowed_move_swaps_neighbours(session, campaigns):
    first, second = campaigns["client"].steps[:2]
    move_step(session, second, "up")
    assert (first.position, second.position) == (2, 1)


def test_a_new_email_goes_after_the_last(campaigns):
    assert next_position(campaigns["lead"]) == len(campaigns["lead"].steps) + 1


def test_only_the_first_emails_delay_counts_from_the_enrolment():
    assert counts_from_enrolment(1) is True
    assert counts_from_enrolment(2) is False


@pytest.mark.parametrize(
    ("status", "offered"),
    [
        ("active", ["paused", "archived"]),
        ("paused", ["active", "archived"]),
        ("archived", ["active"]),  # restored, never straight to paused
    ],
)
def test_status_changes_offered_from_each_status(campaigns, status, offered):
    campaign = campaigns["lead"]
    campaign.status = status
    assert [new for new, _label in status_changes(campaign)] == offered
