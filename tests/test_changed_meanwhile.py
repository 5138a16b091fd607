"""Two tabs (or two admins) editing the same email or the same campaign's details: the
form carries the revision it was opened at, and a save against a newer one is refused
with what changed, keeps what was typed, and saves nothing. Saving again from that
answer (which now carries the newer revision) replaces it on purpose."""

from __future__ import annotations

import re

from sqlalchemy.orm import Session

from crm_app.drip.campaigns.lifecycle import details_of
from crm_app.extensions import db
from crm_app.models import Campaign, CampaignStep
from tests.authoring_helpers import step_form
from tests.test_concurrent_saves import race

REVISION = re.compile(r'name="revision" value="([^"]*)"')


def _opened(client, url: str) -> dict[str, str]:
    """The form as a tab opened it: its fields as the page fills them in."""
    page = client.get(url).get_data(as_text=True)
    return {"revision": REVISION.search(page).group(1)}


def _fresh_step(step_id: int) -> CampaignStep:
    db.session.expire_all()
    return db.session.get(CampaignStep, step_id)


def test_a_stale_email_save_is_refused_with_what_changed_and_keeps_what_was_typed(admin, campaigns):
    lead = campaigns["lead"]
    step = lead.steps[1]
    url = f"/campaigns/{lead.id}/steps/{step.id}/edit"
    original = step_form(step)
    tab_a, tab_b = _opened(admin, url), _opened(admin, url)

    saved = admin.post(url, original | tab_a | {"subject": "A new subject from tab A"})
    assert saved.status_code == 302
    assert _fresh_step(step.id).version == 2

    body = original["body_text"] + "\nA line from tab B."
    refused = admin.post(url, original | tab_b | {"body_text": body})

    assert refused.status_code == 409
    page = refused.get_data(as_text=True)
    assert "This email was changed by someone else since you opened it" in page
    assert "its text is now version 2, saved by admin@example.com (you opened version 1)" in page
    assert "versions/compare?a=1&amp;b=2" in page  # what changed, side by side
    assert "A line from tab B." in page  # what tab B typed is still in its form
    kept = _fresh_step(step.id)
    assert (kept.subject, kept.version, kept.body_text) == (
        "A new subject from tab A",
        2,
        original["body_text"],
    )

    # Saving again from that answer replaces it, knowingly.
    again = admin.post(
        url, original | {"body_text": body} | {"revision": REVISION.search(page).group(1)}
    )
    assert again.status_code == 302
    assert (_fresh_step(step.id).version, _fresh_step(step.id).subject) == (3, original["subject"])


def test_a_new_delay_saved_meanwhile_refuses_a_stale_text_save(admin, campaigns):
    lead = campaigns["lead"]
    step = lead.steps[2]
    url = f"/campaigns/{lead.id}/steps/{step.id}/edit"
    original = step_form(step)
    tab_a, tab_b = _opened(admin, url), _opened(admin, url)
    new_delay = str(step.delay_days + 1)

    assert admin.post(url, original | tab_a | {"delay_days": new_delay}).status_code == 302
    refused = admin.post(url, original | tab_b | {"subject": "From tab B"})

    assert refused.status_code == 409
    page = refused.get_data(as_text=True)
    assert (
        f"its delay is now {new_delay} days (you opened it at {original['delay_days']} days)"
        in page
    )
    kept = _fresh_step(step.id)
    assert (kept.delay_days, kept.subject, kept.version) == (int(new_delay), original["subject"], 1)


def test_two_saves_of_one_revision_at_once_save_one(admin, session, campaigns):
    lead = campaigns["lead"]
    step = lead.steps[0]
    url = f"/campaigns/{lead.id}/steps/{step.id}/edit"
    form = step_form(step) | _opened(admin, url)

    def save_first(other: Session) -> None:  # the other save, past its check, not committed
        mine = other.get(CampaignStep, step.id)
        mine.subject, mine.version = "Saved first", mine.version + 1

    response = race(
        session, save_first, lambda: admin.post(url, form | {"subject": "Saved second"})
    )

    assert response.status_code == 409
    kept = _fresh_step(step.id)
    assert (kept.subject, kept.version) == ("Saved first", 2)


def test_a_stale_details_save_is_refused_with_what_changed(admin, campaigns):
    lead = campaigns["lead"]
    url = f"/campaigns/{lead.id}/edit"
    original = details_of(lead)
    tab_a, tab_b = _opened(admin, url), _opened(admin, url)

    assert admin.post(url, original | tab_a | {"name": "Leads 2027"}).status_code == 302
    refused = admin.post(url, original | tab_b | {"description": "Typed in tab B."})

    assert refused.status_code == 409
    page = refused.get_data(as_text=True)
    assert "This campaign was changed by someone else since you opened it" in page
    assert "the name is now “Leads 2027”" in page
    assert "Typed in tab B." in page
    db.session.expire_all()
    kept = db.session.get(Campaign, lead.id)
    assert (kept.name, kept.description) == ("Leads 2027", original["description"])

    again = admin.post(
        url,
        original
        | {"description": "Typed in tab B."}
        | {"revision": REVISION.search(page).group(1)},
    )
    assert again.status_code == 302
    db.session.expire_all()
    assert db.session.get(Campaign, lead.id).description == "Typed in tab B."


def test_two_details_saves_of_one_revision_at_once_save_one(admin, session, campaigns):
    lead = campaigns["lead"]
    url = f"/campaigns/{lead.id}/edit"
    form = details_of(lead) | _opened(admin, url)

    def save_first(other: Session) -> None:
        other.get(Campaign, lead.id).name = "Saved first"

    response = race(session, save_first, lambda: admin.post(url, form | {"name": "Saved second"}))

    assert response.status_code == 409
    db.session.expire_all()
    assert db.session.get(Campaign, lead.id).name == "Saved first"
