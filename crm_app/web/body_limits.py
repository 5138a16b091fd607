"""How big a request body may be, per route, enforced before the body is read.

Werkzeug reads a form post whole into memory and Flask has no limit by default: a 50 MB
POST to /login was read (and hashed against) in full. Every request gets the global
MAX_CONTENT_LENGTH; form posts the smaller MAX_FORM_BYTES; a view may set its own with
@body_limit. The limit is put on the request before anything touches request.form or
request.data (CSRF reads the form in its own before_request hook, registered after
ours), so Werkzeug refuses by Content-Length without reading a byte, and a chunked body
is refused once it passes the limit.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from flask import Flask, current_app, jsonify, render_template, request
from werkzeug.exceptions import RequestEntityTooLarge

from crm_app.config import settings_of
from crm_app.web.htmx import htmx_alert

View = TypeVar("View", bound=Callable)


def body_limit(limit: int | str) -> Callable[[View], View]:
    """The most this view reads: bytes, or the name of the Settings field that says."""

    def mark(view: View) -> View:
        view.body_limit = limit  # type: ignore[attr-defined]
        return view

    return mark


def _limit_for_request() -> int | None:
    settings = settings_of(current_app)
    view = current_app.view_functions.get(request.endpoint or "")
    declared = getattr(view, "body_limit", None)
    if isinstance(declared, str):
        return getattr(settings, declared)
    if declared is not None:
        return declared
    if request.mimetype == "application/x-www-form-urlencoded":
        return settings.max_form_bytes
    return None  # uploads and JSON: the global MAX_CONTENT_LENGTH


def _apply_body_limit() -> None:
    limit = _limit_for_request()
    if limit is not None:
        request.max_content_length = min(limit, settings_of(current_app).max_content_length)
    if _is_chunked():
        _read_chunked_body_within_limit()


def _is_chunked() -> bool:
    # gunicorn marks every request wsgi.input_terminated, bodiless GETs included.
    return (
        request.content_length is None
        and "chunked" in request.headers.get("Transfer-Encoding", "").lower()
        and bool(request.environ.get("wsgi.input_terminated"))
    )


def _read_chunked_body_within_limit() -> None:
    """A chunked body has no Content-Length: Werkzeug stops reading it at the limit, but
    hands over what it read as if it were the whole body (a form cut short would be saved
    cut short). Read it here, at most the limit, then ask for one byte more: past the
    limit that raises RequestEntityTooLarge. The form parser and the view use this copy."""
    request.get_data()
    request.stream.read(1)


def too_large(error: RequestEntityTooLarge):
    """The app's answer to a body over its limit (a blueprint may say it its own way)."""
    limit = request.max_content_length
    message = (
        f"The request is too large ({_megabytes(limit)} at most here). Nothing was saved."
        if limit
        else "The request is too large. Nothing was saved."
    )
    if request.blueprint == "webhooks" or request.accept_mimetypes.best == "application/json":
        return jsonify(error=message, max_bytes=limit), 413
    if request.htmx:
        return htmx_alert(message, 413)
    return render_template("errors/413.html", message=message), 413


def _megabytes(size: int) -> str:
    if size >= 1_000_000:
        return f"{size / 1_000_000:g} MB"
    return f"{size / 1000:g} KB"


def init_body_limits(app: Flask) -> None:
    """Register before any extension that reads the body (CSRFProtect, Flask-Limiter)."""
    app.before_request(_apply_body_limit)
    app.register_error_handler(RequestEntityTooLarge, too_large)
