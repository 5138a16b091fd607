"""Two saves of the same unique thing at once (a double click, two admins): the second
request gets the form's own answer, never a 500. Another session holds its save
uncommitted while the request runs past its checks in a thread and waits: on
PostgreSQL for the unique index's entry or the campaign's row lock, on SQLite for the
database's write lock. Then the other session commits and the request goes on."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.orm import Session

from crm_app.drip.audience.enrollment import change_contact_type
from crm_app.drip.campaigns.lifecycle import clone_campaign
from crm_app.drip.campaigns.steps import StepInput, add_step
from crm_app.drip.experiments.variants import VariantInput, promote, running_variants, start_test
from crm_app.extensions import db
from crm_app.models import (
    Campaign,
    CampaignStep,
    Contact,
    ContentBlock,
    Enrollment,
    StepVariant,
    StepVersion,
    User,
)
from tests.test_campaign_lifecycle import NEW
from tests.test_contacts_web import VALID
from tests.test_step_editor import GOOD


def _waiting_on_a_lock(session, seconds: float = 10.0) -> bool:
    if session.get_bind().dialect.name == "sqlite":
        # SQLite cannot show who waits: its write lock is held until the other commits,
        # and the request reaches it well within this.
        time.sleep(1.0)
        return True
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        waiting = session.scalar(
            sa.text(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                " AND datname = current_database()"
            )
        )
        session.rollback()
        if waiting:
            return True
        time.sleep(0.02)
    return False


def race(session, save_first: Callable[[Session], object], request: Callable[[], object]):
    """`save_first` in another session, flushed, uncommitted; `request` in a thread until
    it waits on that session's lock; then the other session commits. Returns the response."""
    other = Session(db.engine)
    answer: dict[str, object] = {}
    try:
        save_first(other)
        other.flush()
        thread = threading.Thread(target=lambda: answer.setdefault("response", request()))
        thread.start()
        assert _waiting_on_a_lock(session), "the request never reached the other's lock"
        other.commit()
        thread.join(timeout=20)
        assert not thread.is_alive()
    finally:
        other.rollback()
        other.close()
    session.expire_all()
    return answer["response"]


def test_the_same_user_added_twice_at_once(admin, session):
    response = race(
        session,
        lambda other: other.add(
            User(
                email="dana@example.com",
                name="Dana",
                role="staff",
                password_hash="x",
                session_version=1,
            )
        ),  # fmt: skip
        lambda: admin.post(
            "/users/", {"name": "Dana", "email": "dana@example.com", "role": "staff"}
        ),
    )
    assert response.status_code == 422
    assert "A user with this email address already exists." in response.get_data(as_text=True)
    assert session.scalar(sa.select(sa.func.count()).where(User.email == "dana@example.com")) == 1


def test_the_same_content_block_saved_twice_at_once(admin, session):
    response = race(
        session,
        lambda other: other.add(ContentBlock(name="greeting", default_content="Hi", rules=[])),
        lambda: admin.post("/blocks/new", {"name": "greeting", "default_content": "Hello"}),
    )
    assert response.status_code == 422
    assert "A block named greeting already exists." in response.get_data(as_text=True)


def test_the_same_campaign_created_twice_at_once(admin, session, campaigns):
    def create_first(other: Session) -> None:
        other.add(Campaign(slug="webinar-follow-up", name=NEW["name"], status="active",
                           reentry="never", customized=True))  # fmt: skip

    response = race(session, create_first, lambda: admin.post("/campaigns/new", NEW))

    assert response.status_code == 422
    assert f"Another campaign is called {NEW['name']}." in response.get_data(as_text=True)
    named = sa.select(sa.func.count()).where(Campaign.name == NEW["name"])
    assert session.scalar(named) == 1


def test_a_campaign_cloned_twice_at_once_gets_two_copies(admin, session, campaigns):
    lead = campaigns["lead"]
    response = race(
        session,
        lambda other: clone_campaign(other, other.get(Campaign, lead.id), actor="test"),
        lambda: admin.post(f"/campaigns/{lead.id}/clone"),
    )
    assert response.status_code == 302
    names = session.scalars(sa.select(Campaign.name).where(Campaign.name.like("Copy of Lead%")))
    assert sorted(names) == ["Copy of Lead", "Copy of Lead (2)"]


def test_an_email_added_twice_at_once_goes_after_the_other(admin, session, campaigns):
    lead = campaigns["lead"]
    count = len(lead.steps)

    def add_first(other: Session) -> None:
        campaign = other.get(Campaign, lead.id)
        add_step(other, campaign, StepInput(**GOOD), {}, actor="test", confirmed=True)

    response = race(
        session,
        add_first,
        lambda: admin.post(f"/campaigns/{lead.id}/steps/new", GOOD | {"confirmed": "1"}),
    )
    assert response.status_code == 302, response.get_data(as_text=True)[:500]
    positions = session.scalars(
        sa.select(CampaignStep.position).where(CampaignStep.campaign_id == lead.id)
    ).all()
    assert sorted(positions) == list(range(1, count + 3))


def test_two_type_changes_at_once_leave_the_contact_in_one_types_campaign(
    admin, session, make_contact
):
    """lead -> client by one person, lead -> prospect by another at the same instant:
    the second stops the campaign of the type the first left (client), not the one
    both were shown (lead), or the contact walked through Client and Prospect at once."""
    contact = make_contact("lead")

    def to_client(other: Session) -> None:
        change_contact_type(other, other.get(Contact, contact.id), "client", actor="test")

    response = race(
        session,
        to_client,
        lambda: admin.post(
            f"/contacts/{contact.id}/edit",
            {**VALID, "email": contact.email, "contact_type": "prospect"},
        ),
    )
    assert response.status_code == 302, response.get_data(as_text=True)[:500]
    assert session.get(Contact, contact.id).contact_type == "prospect"
    active = session.scalars(
        sa.select(Campaign.name)
        .join(Enrollment, Enrollment.campaign_id == Campaign.id)
        .where(Enrollment.contact_id == contact.id, Enrollment.status == "active")
    ).all()
    assert active == ["Prospect"]


def _ab_test(campaign, step, tail: str = "") -> str:
    return f"/campaigns/{campaign.id}/steps/{step.id}/experiment{tail}"


def test_an_ab_test_started_twice_at_once_runs_once(admin, session, campaigns):
    lead = campaigns["lead"]
    step = lead.steps[0]
    inputs = [VariantInput("A", "50", subject="Subject A"), VariantInput("B", "50", "Subject B")]
    form = {"variant-A-weight": "50", "variant-A-subject": "Subject A"}
    form |= {"variant-B-weight": "50", "variant-B-subject": "Subject B"}
    response = race(
        session,
        lambda other: start_test(other, other.get(CampaignStep, step.id), inputs, {}, actor="t"),
        lambda: admin.post(_ab_test(lead, step), form),
    )
    assert response.status_code == 422
    assert "A test is running" in response.get_data(as_text=True)
    # Two tests side by side: four variants, and A and A took every contact (B never sent).
    assert sorted(v.key for v in running_variants(session, step)) == ["A", "B"]


def test_a_winner_promoted_twice_at_once_is_saved_once(admin, session, campaigns):
    lead = campaigns["lead"]
    step = lead.steps[0]
    inputs = [VariantInput("A", "50"), VariantInput("B", "50", subject="Subject B")]
    variants = start_test(session, step, inputs, {}, actor="t")
    session.commit()
    version = step.version
    b_id = next(v.id for v in variants if v.key == "B")
    url = _ab_test(lead, step, f"/promote/{b_id}")
    response = race(
        session,
        lambda other: promote(other, other.get(StepVariant, b_id), actor="t"),
        lambda: admin.post(url),
    )
    assert response.status_code == 409
    assert "This test has already ended." in response.get_data(as_text=True)
    step = session.get(CampaignStep, step.id)
    assert (step.version, step.subject) == (version + 1, "Subject B")
    saved = sa.select(sa.func.count()).where(StepVersion.step_id == step.id)
    assert session.scalar(saved) == version + 1
