"""Every API error as application/problem+json (RFC 9457): type, title, status, detail,
and `errors` (field -> messages) for refused input."""

from __future__ import annotations

import time
from http import HTTPStatus

import marshmallow as ma
from flask import Response, json, request
from flask_smorest import Api
from flask_smorest.utils import prepare_response
from werkzeug.exceptions import HTTPException

from crm_app.drip.audience.errors import (
    EnrollmentConflict,
    EnrollmentError,
    RestartNeedsConfirmation,
)
from crm_app.extensions import limiter

API_PREFIX = "/api/v1"
PROBLEM_JSON = "application/problem+json"
# Problem types the API defines (RFC 9457 3.1.1: a URI that names the problem; tag URIs
# are not meant to be dereferenced). Other errors are "about:blank": the status says it all.
PROBLEM_TYPES = {
    "validation": "tag:drip-crm,2026:problem:validation",
    "conflict": "tag:drip-crm,2026:problem:conflict",
    "idempotency-key-reused": "tag:drip-crm,2026:problem:idempotency-key-reused",
    "idempotency-key-in-use": "tag:drip-crm,2026:problem:idempotency-key-in-use",
    "token": "tag:drip-crm,2026:problem:token",
    "scope": "tag:drip-crm,2026:problem:scope",
    "rate-limit": "tag:drip-crm,2026:problem:rate-limit",
}


def is_api_request() -> bool:
    return request.path == API_PREFIX or request.path.startswith(API_PREFIX + "/")


def problem(
    status: int,
    detail: str = "",
    *,
    kind: str | None = None,
    errors: dict[str, list[str]] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    body = {
        "type": PROBLEM_TYPES[kind] if kind else "about:blank",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail or HTTPStatus(status).description,
        "instance": request.path,
    }
    if errors:
        body["errors"] = errors
    response = Response(json.dumps(body), status=status, mimetype=PROBLEM_JSON)
    response.headers.update(headers or {})
    return response


def _flatten(messages, prefix: str = "") -> dict[str, list[str]]:
    """webargs' nested messages ({"json": {"email": [...]}}) -> {"email": [...]}."""
    if isinstance(messages, list):
        return {prefix or "body": [str(m) for m in messages]}
    flat: dict[str, list[str]] = {}
    for key, value in messages.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        flat.update(_flatten(value, name))
    return flat


def field_errors(errors: dict[str, str | list[str]]) -> dict[str, list[str]]:
    """The core's refusals (field -> message) in the problem's shape."""
    return {k: v if isinstance(v, list) else [v] for k, v in errors.items()}


def problem_for(error: HTTPException) -> Response:
    """An HTTPException (abort, webargs' 422, Flask-Limiter's 429, 413...) as a problem."""
    data = getattr(error, "data", None) or {}
    headers = dict(data.get("headers") or {})
    if error.code == 429:
        if (breached := limiter.current_limit) is not None:  # when the window resets
            headers["Retry-After"] = str(max(1, int(breached.reset_at - time.time())))
        return problem(
            429,
            f"Rate limit exceeded ({error.description}). Retry after the Retry-After seconds.",
            kind="rate-limit",
            headers=headers,
        )
    if "messages" in data:  # webargs refused the request's shape
        errors = {}
        for location_messages in data["messages"].values():
            errors.update(_flatten(location_messages))
        return problem(
            error.code, "The request has invalid fields.", kind="validation", errors=errors
        )
    return problem(error.code or 500, error.description or "", headers=headers)


class ProblemSchema(ma.Schema):
    """RFC 9457 problem details (documents the error answers)."""

    type = ma.fields.String(metadata={"description": "A URI naming the problem"})
    title = ma.fields.String(metadata={"description": "The HTTP status phrase"})
    status = ma.fields.Integer()
    detail = ma.fields.String(metadata={"description": "What went wrong, for a person"})
    instance = ma.fields.String(metadata={"description": "The request path"})
    errors = ma.fields.Dict(
        keys=ma.fields.String(),
        values=ma.fields.List(ma.fields.String()),
        metadata={"description": "Messages per refused field"},
    )


class DripApi(Api):
    """flask-smorest's Api, with its errors documented as problem+json and no error
    handler of its own (it would answer the HTML pages' errors in JSON too)."""

    ERROR_SCHEMA = ProblemSchema

    def _register_error_handlers(self) -> None:
        pass  # crm_app/web/api/__init__.py registers ours, for API requests only

    def _register_responses(self) -> None:
        for status in HTTPStatus:
            response = {"description": status.phrase}
            if status >= 400:
                response["schema"] = self.ERROR_SCHEMA
            prepare_response(response, self.spec, PROBLEM_JSON)
            self.spec.components.response(status.name, response, lazy=True)
        response = {"description": "Default error response", "schema": self.ERROR_SCHEMA}
        prepare_response(response, self.spec, PROBLEM_JSON)
        self.spec.components.response("DEFAULT_ERROR", response, lazy=True)


def refused(invalid) -> Response:
    """The core refused the input (a FieldErrors): 422 with a message per field."""
    return problem(
        422,
        "The request has invalid fields.",
        kind="validation",
        errors=field_errors(invalid.errors),
    )


def rule_refused(refusal: EnrollmentError) -> Response:
    """An enrolment rule said no: 409 when the state is the reason (already enrolled,
    already ended, or a restart that would repeat emails and was not confirmed with
    `"restart": true`), else 422."""
    if isinstance(refusal, EnrollmentConflict | RestartNeedsConfirmation):
        return problem(409, str(refusal), kind="conflict")
    return problem(422, str(refusal), kind="validation")
