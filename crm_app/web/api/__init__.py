"""The REST API under /api/v1: token auth, JSON in and out, problem+json errors, and an
OpenAPI 3.1 document at /api/v1/openapi.json written from the schemas that validate
the requests (flask-smorest)."""

from __future__ import annotations

import json
import typing
from collections.abc import Callable
from http import HTTPStatus

import flask
from flask import Flask
from flask_smorest import Blueprint
from webargs.flaskparser import FlaskParser
from werkzeug.exceptions import HTTPException

from crm_app.extensions import csrf, limiter
from crm_app.web.api.auth import check_request, finish_request, rate_limit, rate_limit_key
from crm_app.web.api.problems import API_PREFIX, DripApi, is_api_request, problem_for


class JsonParser(FlaskParser):
    """webargs' parser, with a body nested too deeply for Python's JSON decoder (a
    RecursionError, which was a 500) answered as the 400 of any other malformed body."""

    def _raw_load_json(self, req: flask.Request) -> typing.Any:
        try:
            return super()._raw_load_json(req)
        except RecursionError:
            error = json.JSONDecodeError("Nested too deeply", "", 0)
            return self._handle_invalid_json_error(error, req)


bp = Blueprint("api", __name__, url_prefix=API_PREFIX, description="Drip CRM REST API")
bp.ARGUMENTS_PARSER = JsonParser()  # every view's body and query go through it
bp.before_request(check_request)
bp.after_request(finish_request)
# One bucket per token across every endpoint.
limiter.shared_limit(rate_limit, scope="api", key_func=rate_limit_key)(bp)

# Statuses the API answers itself; each gets a handler on the blueprint, which Flask
# prefers over the app's (HTML) handlers of the same code.
API_ERROR_CODES = (400, 401, 403, 404, 405, 409, 413, 415, 422, 429, 500)
for _code in API_ERROR_CODES:
    bp.register_error_handler(_code, problem_for)


IDEMPOTENCY_KEY_PARAMETER = {
    "in": "header",
    "name": "Idempotency-Key",
    "required": False,
    "schema": {"type": "string", "minLength": 1, "maxLength": 255},
    "description": "Makes a retry safe: the same key with the same body replays the "
    "first answer (for 24 hours); with another body it is a 422.",
}
idempotent = bp.doc(parameters=[IDEMPOTENCY_KEY_PARAMETER])


def documented(*codes: int) -> Callable:
    """Document these error answers (problem+json) on a view."""

    def decorate(view: Callable) -> Callable:
        for code in codes:
            view = bp.alt_response(code, response=HTTPStatus(code).name)(view)
        return view

    return decorate


def _api_or_default(error: HTTPException):
    """App-level: an unknown URL or method under /api is answered as a problem too; other
    requests keep Flask's default answer."""
    return problem_for(error) if is_api_request() else error


def register_api(app: Flask) -> None:
    from crm_app.web.api import campaigns, contacts, enrollments  # noqa: F401 (routes)

    app.config.setdefault("API_TITLE", "Drip CRM")
    app.config.setdefault("API_VERSION", "v1")
    app.config.setdefault("OPENAPI_VERSION", "3.1.0")
    app.config.setdefault("OPENAPI_URL_PREFIX", API_PREFIX)
    app.config.setdefault("OPENAPI_JSON_PATH", "openapi.json")
    app.config.setdefault(
        "API_SPEC_OPTIONS",
        {
            "security": [{"bearerAuth": []}],
            "info": {"description": "Token-authenticated access to contacts and enrolments."},
        },
    )
    api = DripApi(app)
    api.spec.components.security_scheme(
        "bearerAuth", {"type": "http", "scheme": "bearer", "description": "An API token"}
    )
    api.register_blueprint(bp)
    csrf.exempt(bp)
    app.register_error_handler(HTTPException, _api_or_default)
    app.extensions["drip_api"] = api
