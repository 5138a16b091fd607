"""How views answer htmx and plain requests: the one place that speaks the HX-* protocol.

A form works without JavaScript first (POST, flash, redirect, GET); with htmx the
same view answers with the fragment to swap, or asks htmx to load another page.
"""

from __future__ import annotations

from collections.abc import Callable

from flask import Response, flash, redirect, render_template, request
from flask.typing import ResponseReturnValue
from htmx_flask import make_response as htmx_response


def wants_fragment(target: str | None = None) -> bool:
    """An htmx request, aimed at the element with id `target` when one is given: it
    swaps a fragment, so a whole page would land inside the page."""
    return bool(request.htmx) and (target is None or request.htmx.target == target)


def render_fragment_or_page(
    fragment: str, page: str, *, target: str | None = None, **context
) -> str:
    """`fragment` alone for htmx (see wants_fragment), else the `page` that includes it."""
    return render_template(fragment if wants_fragment(target) else page, **context)


def hx_redirect(url: str, status: int = 204) -> Response:
    """Make htmx load `url` as a whole page: a 302 would be followed by the XHR and its
    page swapped into the fragment's place."""
    return htmx_response("", status, redirect=url)


def htmx_alert(message: str, status: int, *, link: tuple[str, str] | None = None) -> Response:
    """An error for an htmx request, never swapped into the fragment the request targeted
    (which would be lost or half replaced): static/js/app.js shows it next to the action
    (X-Action-Error); without that script it lands in the page's alert area. `link`:
    (text, url) of a way out, such as signing in again."""
    alert = render_template("errors/_alert.html", message=message, link=link)
    response = htmx_response(alert, status, retarget="#htmx-alerts", reswap="innerHTML")
    response.headers["X-Action-Error"] = "1"
    return response


def action_response(
    redirect_to: str,
    message: str,
    category: str = "success",
    *,
    fragment: Callable[[], ResponseReturnValue] | None = None,
) -> ResponseReturnValue:
    """How a form action ends once its change is committed (or refused).

    htmx with a `fragment`: the fragment, which shows `message` itself. Otherwise the
    message is flashed for the next page, which htmx loads through HX-Redirect and a
    plain form through a redirect (POST/redirect/GET).
    """
    if fragment is not None and request.htmx:
        return fragment()
    flash(message, category)
    if request.htmx:
        return hx_redirect(redirect_to)
    return redirect(redirect_to)
