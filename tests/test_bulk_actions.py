"""Bulk actions on contacts: the enrolment core's rules and timeline rows for each
contact, chunks committed one by one, a confirmation that says how many, and a
background job with a progress page for large selections."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from rq import SimpleWorker

from crm_app.drip.audience import bulk_actions
from crm_app.drip.audience.bulk_actions import BulkAction, Selection, run_bulk_action
from crm_app.drip.audience.suppression import suppress
from crm_app.extensions import db
from crm_app.models import Activity, Campaign, Contact, Enrollment
from crm_app.queue import get_queue, get_redis


def run(session, action: BulkAction, selection: Selection, **kwargs):
    result = None
    for progress in run_bulk_action(
        session, action, selection, actor="user:admin@example.com", stop_reason="bulk test",
        **kwargs,
    ):  # fmt: skip
        session.commit()
        result = progress
    return result


def ticked(*contacts: Contact) -> Selection:
    return Selection(contact_ids=tuple(c.id for c in contacts))


def active_campaigns(contact_id: int) -> set[str]:
    db.session.expire_all()
    return {
        e.campaign.name
        for e in db.session.scalars(
            sa.select(Enrollment).where(
                Enrollment.contact_id == contact_id, Enrollment.status == "active"
            )
        )
    }


def timeline(contact_id: int) -> list[tuple[str, str]]:
    return list(
        db.session.execute(
            sa.select(Activity.kind, Activity.detail)
            .where(Activity.contact_id == contact_id)
            .order_by(Activity.id)
        )
    )


# --- the core ---


def test_bulk_enrol_applies_the_enrolment_rules_to_each_contact(session, campaigns, make_contact):
    fresh = make_contact("lead", first_name="Fresh", last_name="One")
    already = make_contact("prospect", first_name="Al", last_name="Ready")
    blocked = make_contact("lead", first_name="Sup", last_name="Pressed", email="sup@example.com")
    suppress(session, "sup@example.com", reason="manual", source="test", actor="test")
    session.commit()

    result = run(
        session,
        BulkAction("enroll", campaign_id=campaigns["prospect"].id),
        ticked(fresh, already, blocked),
    )

    assert (result.done, result.refused) == (1, 2)
    assert "Al Ready is already enrolled in Prospect." in result.examples
    assert any("Sup Pressed cannot be enrolled" in text for text in result.examples)
    assert active_campaigns(fresh.id) == {"Lead", "Prospect"}
    assert active_campaigns(blocked.id) == set()  # stopped by the suppression, not enrolled
    assert ("enrolled", "Enrolled in Prospect (in a bulk action)") in timeline(fresh.id)


def test_bulk_stop_in_one_campaign_or_in_every_campaign(session, campaigns, make_contact):
    one = make_contact("lead")
    other = make_contact("client")
    result = run(session, BulkAction("stop", campaign_id=campaigns["lead"].id), ticked(one, other))
    assert (result.done, result.refused) == (1, 1)
    assert active_campaigns(one.id) == set() and active_campaigns(other.id) == {"Client"}
    assert ("stopped", "Stopped Lead: bulk test") in timeline(one.id)

    result = run(session, BulkAction("stop"), ticked(one, other))
    assert (result.done, result.refused) == (1, 1)  # `one` had nothing left to stop
    assert active_campaigns(other.id) == set()


def test_bulk_type_change_switches_campaigns_as_an_edit_does(session, campaigns, make_contact):
    lead = make_contact("lead")
    client = make_contact("client")
    result = run(session, BulkAction("change_type", new_type="client"), ticked(lead, client))
    assert (result.done, result.refused) == (1, 1)
    assert active_campaigns(lead.id) == {"Client"}
    kinds = [kind for kind, _ in timeline(lead.id)]
    assert kinds[-3:] == ["type_changed", "stopped", "enrolled"]


def test_bulk_delete_removes_contacts_and_their_enrolments(session, make_contact):
    gone, kept = make_contact(), make_contact()
    result = run(session, BulkAction("delete"), ticked(gone))
    assert result.done == 1
    assert session.get(Contact, gone.id) is None and session.get(Contact, kept.id) is not None
    assert session.scalar(sa.select(sa.func.count()).where(Enrollment.contact_id == gone.id)) == 0


def test_all_that_match_is_processed_in_committed_chunks(session, campaigns, make_contact):
    matching = [make_contact("lead", company="Acme") for _ in range(5)]
    outsider = make_contact("lead", company="Globex")
    selection = Selection(all_matching=True, query="acme")
    seen = []
    for result in run_bulk_action(
        session, BulkAction("change_type", new_type="client"), selection,
        actor="test", stop_reason="x", chunk_size=2,
    ):  # fmt: skip
        session.commit()  # what the caller does after each chunk
        seen.append(result.processed)
    assert seen == [2, 4, 5]
    assert all(active_campaigns(c.id) == {"Client"} for c in matching)
    assert active_campaigns(outsider.id) == {"Lead"}


def test_all_that_match_deletes_every_match_even_as_rows_disappear(session, make_contact):
    for _ in range(5):
        make_contact(company="Acme")
    make_contact(company="Globex")
    run(session, BulkAction("delete"), Selection(all_matching=True, query="acme"), chunk_size=2)
    assert session.scalar(sa.select(sa.func.count(Contact.id))) == 1


# --- the pages ---


def test_the_confirmation_says_how_many_and_changes_nothing(admin, campaigns, make_contact):
    contacts = [make_contact("lead", company="Acme") for _ in range(3)]
    response = admin.post(
        "/contacts/bulk/confirm",
        {"scope": "matching", "q": "acme", "action": "enroll"},
    )
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "Enrol 3 contacts?" in page and ">Enrol 3 contacts</button>" in page
    assert all(active_campaigns(c.id) == {"Lead"} for c in contacts)


def test_a_ticked_id_beyond_the_databases_integers_names_no_contact(admin, campaigns, make_contact):
    # Was a 500 on PostgreSQL ("integer out of range"): such an id names no row.
    contact = make_contact("lead")
    ticked = [str(contact.id), "2147483648", "99999999999999999999", "-3", "x"]
    response = admin.post("/contacts/bulk/confirm", {"contact_ids": ticked, "action": "enroll"})
    assert response.status_code == 200
    assert "Enrol 1 contact?" in response.get_data(as_text=True)


def test_the_confirming_button_keeps_a_campaign_name_with_a_question_mark(
    admin, session, campaigns, make_contact
):
    campaign = campaigns["client"]
    campaign.name = "Ready? Go"
    session.commit()
    make_contact("lead", company="Acme")
    page = admin.post(
        "/contacts/bulk/confirm",
        {"scope": "matching", "q": "acme", "action": "enroll", "campaign_id": campaign.id},
    ).get_data(as_text=True)
    assert ">Enrol 1 contact in Ready? Go</button>" in page


@pytest.mark.parametrize(
    ("form", "field", "message"),
    [
        ({"scope": "selected", "action": "delete"}, "scope", "Tick at least one contact"),
        ({"scope": "matching", "q": "nobody-matches", "action": "delete"}, "scope",
         "No contact matches"),
        ({"scope": "matching", "action": ""}, "action", "Choose what to do"),
    ],
)  # fmt: skip
def test_an_incomplete_choice_is_refused_next_to_its_field(
    admin, make_contact, form, field, message
):
    contact = make_contact()
    response = admin.post("/contacts/bulk/confirm", {**form, "contact_ids": []})
    page = response.get_data(as_text=True)
    assert response.status_code == 422
    assert f'id="error-{field}"' in page and message in page
    assert "data-focus-on-load" in page  # the error summary takes the focus
    assert db.session.get(Contact, contact.id) is not None


def test_a_refused_choice_keeps_the_ticked_rows(admin, make_contact):
    contact = make_contact()
    response = admin.post("/contacts/bulk/confirm", {"contact_ids": [str(contact.id)]})
    assert response.status_code == 422
    assert f'value="{contact.id}" aria-label="Select {contact.full_name}" checked' in (
        response.get_data(as_text=True)
    )


def test_apply_without_a_campaign_asks_for_it(admin, make_contact):
    contact = make_contact()
    response = admin.post(
        "/contacts/bulk/apply",
        {"scope": "selected", "contact_ids": [str(contact.id)], "action": "enroll"},
    )
    assert response.status_code == 422
    assert "Choose the campaign to enrol them in." in response.get_data(as_text=True)


@pytest.mark.parametrize(
    ("deleted", "action", "field", "message"),
    [
        (True, "delete", "scope", "Tick at least one contact"),
        (False, "teleport", "action", "Choose what to do"),
    ],
)
def test_apply_with_nothing_left_to_confirm_is_the_list_with_its_message(
    admin, session, make_contact, deleted, action, field, message
):
    """Contacts deleted in another tab, or a tampered action: the confirmation page could
    not be shown again, and the refusal was a 500."""
    contact, other = make_contact(), make_contact()
    if deleted:
        db.session.delete(db.session.get(Contact, contact.id))
        db.session.commit()

    response = admin.post(
        "/contacts/bulk/apply",
        {"scope": "selected", "contact_ids": [str(contact.id)], "action": action},
    )

    page = response.get_data(as_text=True)
    assert response.status_code == 422
    assert f'id="error-{field}"' in page and message in page
    assert db.session.get(Contact, other.id) is not None


def test_apply_ticked_rows_without_javascript(admin, campaigns, make_contact):
    one, two, untouched = make_contact("lead"), make_contact("lead"), make_contact("lead")
    response = admin.post(
        "/contacts/bulk/apply",
        {
            "scope": "selected",
            "contact_ids": [str(one.id), str(two.id)],
            "action": "stop",
            "campaign_id": str(campaigns["lead"].id),
            "q": "person",
        },
    )
    assert response.status_code == 302 and response.headers["Location"] == "/contacts/?q=person"
    assert active_campaigns(one.id) == active_campaigns(two.id) == set()
    assert active_campaigns(untouched.id) == {"Lead"}
    page = admin.get("/contacts/?q=person").get_data(as_text=True)
    assert "Stopped: 2 contacts." in page


def test_a_bulk_action_without_csrf_is_refused(admin, make_contact):
    contact = make_contact()
    response = admin.post(
        "/contacts/bulk/apply",
        {"scope": "selected", "contact_ids": [str(contact.id)], "action": "delete"},
        csrf=False,
    )
    assert response.status_code == 400
    assert db.session.get(Contact, contact.id) is not None


def test_a_large_selection_runs_as_a_job_with_a_progress_page(
    admin, app, campaigns, make_contact, monkeypatch
):
    monkeypatch.setattr(bulk_actions, "INLINE_LIMIT", 2)
    monkeypatch.setattr("crm_app.web.contacts_bulk.INLINE_LIMIT", 2)
    ids = [make_contact("lead", company="Acme").id for _ in range(3)]
    response = admin.post(
        "/contacts/bulk/apply",
        {"scope": "matching", "q": "acme", "action": "change_type", "new_type": "client"},
    )
    assert response.status_code == 302
    progress_url = response.headers["Location"]
    assert progress_url.startswith("/contacts/bulk/jobs/")
    waiting = admin.get(progress_url).get_data(as_text=True)
    assert "in progress" in waiting and 'http-equiv="refresh"' in waiting  # polls without JS
    assert "Started: changing the type of 3 contacts to client." in waiting  # not a question
    assert all(active_campaigns(contact_id) == {"Lead"} for contact_id in ids)

    SimpleWorker([get_queue(app)], connection=get_redis(app)).work(burst=True)

    done = admin.get(progress_url).get_data(as_text=True)
    assert "Changed to client: 3 contacts." in done and "refresh" not in done
    assert all(active_campaigns(contact_id) == {"Client"} for contact_id in ids)


@pytest.mark.parametrize(
    ("action", "campaign_name", "expected"),
    [
        (BulkAction("enroll", campaign_id=1), "Lead", "Started: enrolling 1,000 contacts in Lead."),
        (BulkAction("stop"), None, "Started: stopping every campaign for 1,000 contacts."),
        (
            BulkAction("change_type", new_type="client"),
            None,
            "Started: changing the type of 1,000 contacts to client.",
        ),
        (BulkAction("delete"), None, "Started: deleting 1,000 contacts."),
    ],
)
def test_a_started_job_is_said_as_a_statement(action, campaign_name, expected):
    campaign = Campaign(name=campaign_name) if campaign_name else None
    assert bulk_actions.started(action, 1000, campaign) == expected


def test_an_unknown_job_is_not_found(admin):
    assert admin.get("/contacts/bulk/jobs/no-such-job").status_code == 404
    # Ids RQ refuses to read (it raised ValueError: a 500).
    for job_id in ("a.b.c", "a%00b", "%ff%fe"):
        assert admin.get(f"/contacts/bulk/jobs/{job_id}").status_code == 404
