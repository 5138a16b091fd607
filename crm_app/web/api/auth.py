"""Who is calling the API, how often, and what a POST with an Idempotency-Key may do.

The API reads only the Authorization header: a session cookie is never looked at, so
a browser cannot be tricked into calling it (which is why it needs no CSRF token).
Views never commit: `finish_request` commits a successful change together with the
Idempotency-Key's answer, or rolls a refused one back.
"""

from __future__ import annotations

from flask import Response, current_app, request

from crm_app.config import settings_of
from crm_app.drip.api import idempotency
from crm_app.drip.api.tokens import authenticate
from crm_app.extensions import db
from crm_app.models import ApiToken
from crm_app.web.api.problems import problem
from crm_app.web.nul_guard import refuse_nul

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Per-request state lives in the WSGI environ, which belongs to one request whatever
# app context it runs in.
TOKEN_KEY, CLAIM_KEY, REPLAYED_KEY = "drip.api_token", "drip.idempotency_row", "drip.replayed"
REPLAYED_HEADER = "Idempotent-Replayed"
# Answer headers kept with an Idempotency-Key, to be replayed with its body.
KEPT_HEADERS = ("Location",)


def _bearer() -> str:
    scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
    return credentials.strip() if scheme.lower() == "bearer" else ""


def current_token() -> ApiToken | None:
    """The request's live token (looked up once per request)."""
    if TOKEN_KEY not in request.environ:
        token = authenticate(db.session, _bearer())
        if token is not None and db.session.is_modified(token):
            db.session.commit()  # last_used_at, at most once a minute per token
        request.environ[TOKEN_KEY] = token
    return request.environ[TOKEN_KEY]


def rate_limit_key() -> str:
    """Per token; a request without a valid token counts against its address."""
    token = current_token()
    return f"api-token:{token.id}" if token is not None else f"api-anonymous:{request.remote_addr}"


def rate_limit() -> str:
    return settings_of(current_app).api_rate_limit


def check_request() -> Response | None:
    """The blueprint's before_request: body size, token, scope, a body that is not JSON,
    NUL, Idempotency-Key."""
    request.max_content_length = settings_of(current_app).api_max_body_bytes
    token = current_token()
    if token is None:
        bad = bool(request.headers.get("Authorization"))
        return problem(
            401,
            "The token is unknown or revoked."
            if bad
            else "Send an API token: "
            '"Authorization: Bearer <token>" (admins create tokens under Integrations).',
            kind="token",
            headers={
                "WWW-Authenticate": 'Bearer realm="api"'
                + (', error="invalid_token"' if bad else "")
            },
        )
    if request.method in WRITE_METHODS and not token.can_write:
        return problem(
            403,
            f'The token "{token.name}" is read only: this call needs a read and write token.',
            kind="scope",
            headers={"WWW-Authenticate": 'Bearer realm="api", error="insufficient_scope"'},
        )
    if request.method in WRITE_METHODS and not request.is_json and request.get_data():
        # The views read JSON only: any other body was ignored, so a PATCH sent as a
        # form (curl -d) answered 200 and changed nothing.
        return problem(
            415,
            f'Send the body as JSON, with "Content-Type: application/json" '
            f'(not "{request.mimetype or "none"}").',
            kind="validation",
        )
    refused = refuse_nul()
    if refused is not None:
        return refused
    if request.method == "POST" and "Idempotency-Key" in request.headers:
        return _claim_key(token, request.headers["Idempotency-Key"])
    return None


def _claim_key(token: ApiToken, key: str) -> Response | None:
    if reason := idempotency.key_problem(key):
        return problem(400, reason, kind="validation")
    print_ = idempotency.fingerprint(request.method, request.path, request.get_data())
    claim = idempotency.claim(db.session, token.id, key, print_)
    if claim.replay is not None:
        request.environ[REPLAYED_KEY] = True
        kept = claim.replay
        response = Response(kept.response_body, status=kept.response_status)
        response.headers.update(kept.response_headers or {})
        response.headers[REPLAYED_HEADER] = "true"
        return response
    if claim.conflict == "mismatch":
        return problem(
            422,
            "This Idempotency-Key was used with another request: send a new key for a new request.",
            kind="idempotency-key-reused",
        )
    if claim.conflict == "in_progress":
        return problem(
            409,
            "A request with this Idempotency-Key is still running: retry in a moment.",
            kind="idempotency-key-in-use",
            headers={"Retry-After": "1"},
        )
    request.environ[CLAIM_KEY] = claim.row_id
    return None


def finish_request(response: Response) -> Response:
    """The blueprint's after_request: commit a write that succeeded (with its key's
    answer), roll back one that did not (and free its key for a retry)."""
    if request.method not in WRITE_METHODS or request.environ.get(REPLAYED_KEY):
        return response
    row_id = request.environ.pop(CLAIM_KEY, None)
    if response.status_code >= 400:
        db.session.rollback()
        if row_id is not None:
            idempotency.release(db.session, row_id)
        return response
    try:
        if row_id is not None:
            headers = {"Content-Type": response.content_type}
            headers.update({h: response.headers[h] for h in KEPT_HEADERS if h in response.headers})
            body = response.get_data(as_text=True)
            idempotency.keep_answer(db.session, row_id, response.status_code, body, headers)
        db.session.commit()
    except Exception:
        db.session.rollback()
        if row_id is not None:
            idempotency.release(db.session, row_id)
        raise
    return response
