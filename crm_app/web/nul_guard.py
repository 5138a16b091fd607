"""Input holding a NUL character is refused, clearly, before any view runs.

PostgreSQL's text cannot hold a NUL: a form field, a search or an API body with one made
the statement fail, a 500 with nothing said. One hook covers every page; the API's
before_request calls `refuse_nul` itself, after its own body limit and token check. The
webhooks (SendGrid's data, signed as sent) keep theirs, each NUL replaced
(crm_app/drip/common/nul.py). A JSON body with a lone surrogate, which no text can hold,
is refused the same way.
"""

from __future__ import annotations

from flask import Flask, render_template, request
from flask.typing import ResponseReturnValue

from crm_app.drip.common.nul import (
    holds_nul,
    json_body_holds_lone_surrogate,
    json_body_holds_nul,
)
from crm_app.web.api.problems import is_api_request, problem
from crm_app.web.htmx import htmx_alert

MESSAGE = (
    "What you sent holds a NUL character (\\0, often pasted from another program), "
    "which cannot be stored. Nothing was saved: remove it and try again."
)
SURROGATE_MESSAGE = (
    "What you sent holds a lone surrogate (a \\ud800 to \\udfff escape without its "
    "other half), which is not text and cannot be stored. Nothing was saved: "
    "send valid Unicode and try again."
)


def _holds_nul() -> bool:
    if any(holds_nul(key) or holds_nul(request.args.getlist(key)) for key in request.args):
        return True
    if request.is_json:
        return json_body_holds_nul(request.get_data())
    if request.mimetype in ("application/x-www-form-urlencoded", "multipart/form-data"):
        form_nul = any(
            holds_nul(key) or holds_nul(request.form.getlist(key)) for key in request.form
        )
        return form_nul or any(holds_nul(f.filename or "") for f in request.files.values())
    return False


def _refusal() -> str | None:
    if _holds_nul():
        return MESSAGE
    if request.is_json and json_body_holds_lone_surrogate(request.get_data()):
        return SURROGATE_MESSAGE
    return None


def refuse_nul() -> ResponseReturnValue | None:
    """The answer to a request holding a NUL or a lone surrogate (a page, an alert or a
    problem), or None."""
    message = _refusal()
    if message is None:
        return None
    if is_api_request():
        return problem(400, message)
    if request.htmx:
        return htmx_alert(message, 400)
    return render_template("errors/400.html", message=message), 400


def _refuse_nul_in_pages() -> ResponseReturnValue | None:
    # The API checks in its own before_request, after its body limit and its token.
    if request.blueprint == "webhooks" or is_api_request():
        return None
    return refuse_nul()


def init_nul_guard(app: Flask) -> None:
    """After the body limits (a body is read only within them), before any view."""
    app.before_request(_refuse_nul_in_pages)
