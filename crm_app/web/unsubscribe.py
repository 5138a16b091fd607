"""Public unsubscribe pages: no login; the signed token is the authorisation."""

from __future__ import annotations

from flask import Blueprint, render_template

from crm_app.drip.audience.unsubscribe import (
    InvalidUnsubscribeToken,
    is_suppressed,
    read_unsubscribe_token,
    unsubscribe,
)
from crm_app.extensions import csrf, db

bp = Blueprint("unsubscribe", __name__)


def _read(token: str):
    try:
        return read_unsubscribe_token(token), None
    except InvalidUnsubscribeToken as invalid:
        return None, str(invalid)


@bp.get("/unsubscribe/<token>")
def confirm(token: str):
    data, error = _read(token)
    if error:
        return render_template("unsubscribe/invalid.html", error=error), 400
    if is_suppressed(db.session, data[1]):  # the link opened again after unsubscribing
        return render_template("unsubscribe/done.html", email=data[1], already=True)
    return render_template("unsubscribe/confirm.html", email=data[1], token=token)


# Mail clients POST "List-Unsubscribe=One-Click" with no cookie or CSRF token (RFC 8058).
@bp.post("/unsubscribe/<token>")
@csrf.exempt
def one_click(token: str):
    data, error = _read(token)
    if error:
        return render_template("unsubscribe/invalid.html", error=error), 400
    result = unsubscribe(db.session, data[1], source="unsubscribe link")
    db.session.commit()
    return render_template("unsubscribe/done.html", email=result.email, already=result.already)
