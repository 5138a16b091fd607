"""API: tokens (none, bad, revoked, read only), no cookies, the per-token rate limit,
and the OpenAPI document."""

from __future__ import annotations

from datetime import timedelta

import pytest
import redis as redis_lib
import sqlalchemy as sa
from openapi_spec_validator import validate

from crm_app.drip.api.tokens import authenticate, hash_secret, revoke_token
from crm_app.extensions import limiter
from crm_app.models import ApiToken, Contact, utcnow
from tests.api_helpers import ApiClient, make_token

PROBLEM = "application/problem+json"


def test_no_token_is_a_401_problem_that_says_how_to_send_one(api, campaigns):
    response = api.get("/api/v1/contacts", token=None)

    assert response.status_code == 401 and response.content_type == PROBLEM
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="api"'
    assert "Authorization: Bearer" in response.get_json()["detail"]


def test_an_unknown_or_revoked_token_is_a_401(api, session, campaigns):
    assert api.get("/api/v1/contacts", token="drip_not-a-token").status_code == 401
    token = session.scalar(sa.select(ApiToken))
    revoke_token(session, token, actor="test")
    session.commit()

    response = api.get("/api/v1/contacts")

    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]


def test_a_read_token_may_not_write_403(read_api, session, campaigns):
    response = read_api.post("/api/v1/contacts", {"email": "a@example.com", "contact_type": "lead"})

    assert response.status_code == 403 and response.content_type == PROBLEM
    assert response.get_json()["type"].endswith(":scope")
    assert "insufficient_scope" in response.headers["WWW-Authenticate"]
    assert session.scalar(sa.select(sa.func.count(Contact.id))) == 0


def test_only_a_hash_of_the_token_is_stored(app, session):
    secret = make_token()

    (token,) = session.scalars(sa.select(ApiToken)).all()
    assert token.token_hash == hash_secret(secret) and secret not in token.token_hash
    assert secret.startswith(token.token_prefix) and len(token.token_prefix) < 16


def test_last_used_is_written_at_most_once_a_minute(session):
    secret = make_token()
    now = utcnow()
    token = authenticate(session, secret, now=now)
    session.commit()
    assert token.last_used_at == now

    authenticate(session, secret, now=now + timedelta(seconds=30))
    assert not session.dirty  # nothing to write
    authenticate(session, secret, now=now + timedelta(seconds=61))
    session.commit()
    assert token.last_used_at == now + timedelta(seconds=61)


def test_a_logged_in_browser_session_is_not_a_token(admin, campaigns):
    # The admin's session cookie goes along; the API ignores it (and so needs no CSRF).
    response = admin.client.get("/api/v1/contacts")

    assert response.status_code == 401


def test_a_post_needs_no_csrf_token(api, campaigns):
    response = api.post("/api/v1/contacts", {"email": "a@example.com", "contact_type": "lead"})

    assert response.status_code == 201


@pytest.fixture
def limited(app, monkeypatch):
    monkeypatch.setitem(app.config, "API_RATE_LIMIT", "3 per minute")
    # Flask-Limiter keeps one storage per process: bind it to this app's Redis, whatever
    # app the process created last.
    limiter.init_app(app)
    limiter.reset()
    yield
    limiter.reset()


def test_each_token_has_its_own_rate_limit_429_problem(app, limited, campaigns, redis_url):
    first = ApiClient(app.test_client(), make_token(name="first"))
    second = ApiClient(app.test_client(), make_token(name="second"))

    answers = [first.get("/api/v1/campaigns") for _ in range(4)]

    assert [answer.status_code for answer in answers] == [200, 200, 200, 429]
    # Retry-After only with the 429: before it, it would tell the client to wait.
    assert all("Retry-After" not in answer.headers for answer in answers[:3])
    assert [answer.headers["X-RateLimit-Remaining"] for answer in answers[:3]] == ["2", "1", "0"]
    refused = first.get("/api/v1/contacts")  # one bucket for every endpoint
    assert refused.status_code == 429 and refused.content_type == PROBLEM
    assert refused.get_json()["type"].endswith(":rate-limit")
    assert int(refused.headers["Retry-After"]) > 0
    assert second.get("/api/v1/campaigns").status_code == 200  # another token's bucket
    keys = redis_lib.Redis.from_url(redis_url).keys("LIMITS*")
    assert keys  # counted in Redis, shared by every web process


def test_the_openapi_document_is_valid_openapi_3_1(app, campaigns):
    response = app.test_client().get("/api/v1/openapi.json")

    assert response.status_code == 200
    document = response.get_json()
    validate(document)  # raises on any error
    assert document["openapi"] == "3.1.0"
    assert document["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    operations = {
        (method.upper(), path)
        for path, item in document["paths"].items()
        for method in item
        if method != "parameters"
    }
    assert operations == {
        ("GET", "/api/v1/contacts"),
        ("POST", "/api/v1/contacts"),
        ("GET", "/api/v1/contacts/{contact_id}"),
        ("PATCH", "/api/v1/contacts/{contact_id}"),
        ("DELETE", "/api/v1/contacts/{contact_id}"),
        ("POST", "/api/v1/contacts/{contact_id}/enrollments"),
        ("POST", "/api/v1/enrollments/{enrollment_id}/stop"),
        ("POST", "/api/v1/contacts/{contact_id}/stop-all"),
        ("POST", "/api/v1/contacts/{contact_id}/type"),
        ("POST", "/api/v1/contacts/{contact_id}/goals"),
        ("GET", "/api/v1/campaigns"),
    }
    create = document["paths"]["/api/v1/contacts"]["post"]
    assert create["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ContactCreate"
    }
    assert "Idempotency-Key" in [p["name"] for p in create["parameters"]]
    problem = document["components"]["responses"]["UNPROCESSABLE_ENTITY"]["content"]
    assert list(problem) == [PROBLEM]
