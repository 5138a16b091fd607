"""Security headers on every response: CSP, framing, sniffing, referrer, caching, HSTS.

A small after_request rather than flask-talisman: we need one policy for our pages and
a looser one for the mounted rq-dashboard (its inline script, by nonce, and its
underscore templates, which compile with eval), no-store on every page that is not a
static file, and HSTS only over HTTPS when configured; Talisman would also force HTTPS
redirects and rewrite our session-cookie settings, which config.py already owns.

The policy allows no inline script and no eval on our pages: every script is a file under
static/. Inline styles stay allowed: an email preview is an iframe srcdoc, which inherits
this page's policy, and email HTML is styled inline; a style cannot run script.
"""

from __future__ import annotations

import secrets

from flask import Flask, Response, current_app, g, request
from werkzeug.middleware.proxy_fix import ProxyFix

from crm_app.config import settings_of

_COMMON_DIRECTIVES = (
    "default-src 'self'",
    "style-src 'self' 'unsafe-inline'",
    # Email previews may show the images an email links to.
    "img-src 'self' data: https:",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
)
APP_POLICY = "; ".join(("script-src 'self'", *_COMMON_DIRECTIVES))
RQ_DASHBOARD_BLUEPRINT = "rq_dashboard"

STATIC_HEADERS = {
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=(), usb=()",
    "Cross-Origin-Opener-Policy": "same-origin",
}


def csp_nonce() -> str:
    """This response's script nonce (templates: {{ csp_nonce() }}), made on first use."""
    if "csp_nonce" not in g:
        g.csp_nonce = secrets.token_urlsafe(18)
    return g.csp_nonce


def _rq_dashboard_policy() -> str:
    # rq-dashboard 0.9.0 runs one inline script per page and compiles underscore templates
    # (new Function): the nonce admits only the script our copy of its base.html marks.
    script = "script-src 'self' 'unsafe-eval'"
    if "csp_nonce" in g:
        script += f" 'nonce-{g.csp_nonce}'"
    return "; ".join((script, *_COMMON_DIRECTIVES))


def _set_security_headers(response: Response) -> Response:
    policy = _rq_dashboard_policy() if request.blueprint == RQ_DASHBOARD_BLUEPRINT else APP_POLICY
    response.headers["Content-Security-Policy"] = policy
    for name, value in STATIC_HEADERS.items():
        response.headers.setdefault(name, value)
    # Pages carry contacts and sessions: never kept by the browser or a shared cache.
    # Static files (the only cacheable responses) keep Flask's own caching headers.
    if not (request.endpoint or "").endswith("static") and "Cache-Control" not in response.headers:
        response.headers["Cache-Control"] = "no-store"
    hsts_seconds = settings_of(current_app).hsts_seconds
    if hsts_seconds and request.is_secure:  # RFC 6797: never over plain HTTP
        response.headers["Strict-Transport-Security"] = f"max-age={hsts_seconds}; includeSubDomains"
    return response


def init_security_headers(app: Flask) -> None:
    proxies = settings_of(app).trusted_proxy_count
    if proxies:
        # Client address (login throttle, /health networks) and scheme (HSTS, secure
        # cookies) from the X-Forwarded-* headers of the proxies we were told to trust.
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=proxies, x_proto=proxies, x_host=proxies, x_port=proxies
        )
    app.jinja_env.globals["csp_nonce"] = csp_nonce
    app.after_request(_set_security_headers)
