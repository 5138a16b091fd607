"""API: Idempotency-Key on POST: replay, another body, at once, after a failure, 24 h."""

from __future__ import annotations

import threading
from datetime import timedelta

import sqlalchemy as sa

from crm_app.drip.api import idempotency, records
from crm_app.models import ApiToken, Contact, IdempotencyKey, utcnow
from tests.api_helpers import ApiClient, make_token

NEW_LEAD = {"email": "ivy@example.com", "contact_type": "lead", "first_name": "Ivy"}


def _count(session, model) -> int:
    session.expire_all()
    return session.scalar(sa.select(sa.func.count()).select_from(model))


def test_the_same_key_and_body_replays_the_first_answer(api, session, campaigns):
    first = api.post("/api/v1/contacts", NEW_LEAD, key="signup-1")
    second = api.post("/api/v1/contacts", NEW_LEAD, key="signup-1")

    assert first.status_code == second.status_code == 201
    assert second.get_data() == first.get_data()
    assert second.headers["Location"] == first.headers["Location"]
    assert second.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert _count(session, Contact) == 1


def test_the_same_key_with_another_body_is_a_422(api, session, campaigns):
    api.post("/api/v1/contacts", NEW_LEAD, key="signup-1")

    response = api.post("/api/v1/contacts", {**NEW_LEAD, "first_name": "Eve"}, key="signup-1")

    assert response.status_code == 422
    assert response.get_json()["type"].endswith(":idempotency-key-reused")
    assert _count(session, Contact) == 1


def test_without_a_key_each_post_runs(api, session, campaigns, make_contact):
    contact = make_contact("lead")
    url = f"/api/v1/contacts/{contact.id}/goals"

    api.post(url, {"name": "demo"})
    api.post(url, {"name": "demo"})

    assert session.scalar(sa.text("SELECT count(*) FROM contact_goals WHERE name='goal:demo'")) == 2


def test_keys_belong_to_their_token(app, api, session, campaigns):
    other = ApiClient(app.test_client(), make_token(name="other"))
    api.post("/api/v1/contacts", NEW_LEAD, key="k")

    response = other.post("/api/v1/contacts", {**NEW_LEAD, "email": "o@example.com"}, key="k")

    assert response.status_code == 201


def test_a_refused_request_frees_its_key_for_the_corrected_retry(api, session, campaigns):
    bad = api.post("/api/v1/contacts", {**NEW_LEAD, "timezone": "Nowhere"}, key="k")
    assert bad.status_code == 422

    fixed = api.post("/api/v1/contacts", NEW_LEAD, key="k")

    assert fixed.status_code == 201
    assert _count(session, IdempotencyKey) == 1


def test_a_second_request_with_the_key_while_the_first_runs_is_a_409(
    app, api, session, campaigns, monkeypatch
):
    started, release = threading.Event(), threading.Event()
    real_upsert = records.upsert_contact

    def slow_upsert(*args, **kwargs):
        started.set()
        assert release.wait(10)
        return real_upsert(*args, **kwargs)

    monkeypatch.setattr(records, "upsert_contact", slow_upsert)
    answers = {}
    thread = threading.Thread(
        target=lambda: answers.update(first=api.post("/api/v1/contacts", NEW_LEAD, key="k"))
    )
    thread.start()
    assert started.wait(10)

    second = api.post("/api/v1/contacts", NEW_LEAD, key="k")
    release.set()
    thread.join(10)

    assert second.status_code == 409
    assert second.get_json()["type"].endswith(":idempotency-key-in-use")
    assert answers["first"].status_code == 201
    assert _count(session, Contact) == 1
    replay = api.post("/api/v1/contacts", NEW_LEAD, key="k")
    assert replay.status_code == 201 and replay.get_data() == answers["first"].get_data()


def test_a_claim_left_by_a_crashed_request_is_taken_over_after_a_minute(api, session, campaigns):
    token = session.scalar(sa.select(ApiToken))
    body = api.client.application.json.dumps(NEW_LEAD).encode()
    print_ = idempotency.fingerprint("POST", "/api/v1/contacts", body)
    crashed = utcnow() - idempotency.LOCK_TIMEOUT - timedelta(seconds=1)
    idempotency.claim(session, token.id, "k", print_, now=crashed)

    response = api.post("/api/v1/contacts", data=body, key="k",
                        headers={"Content-Type": "application/json"})  # fmt: skip

    assert response.status_code == 201


def test_answers_are_kept_24_hours_then_purged(api, session, campaigns):
    api.post("/api/v1/contacts", NEW_LEAD, key="k")
    now = utcnow()

    assert idempotency.purge_expired(session, now=now + timedelta(hours=23)) == 0
    assert idempotency.purge_expired(session, now=now + timedelta(hours=25)) == 1
    session.commit()
    assert _count(session, IdempotencyKey) == 0


def test_a_key_older_than_24_hours_starts_afresh(api, session, campaigns):
    api.post("/api/v1/contacts", NEW_LEAD, key="k")
    session.execute(sa.update(IdempotencyKey).values(created_at=utcnow() - timedelta(hours=25)))
    session.commit()

    response = api.post("/api/v1/contacts", {**NEW_LEAD, "first_name": "Ivy B."}, key="k")

    assert response.status_code == 200  # ran again: an update of the contact it made


def test_a_bad_key_is_a_400(api, campaigns):
    response = api.post("/api/v1/contacts", NEW_LEAD, key="x" * 300)

    assert response.status_code == 400
    assert "Idempotency-Key" in response.get_json()["detail"]
