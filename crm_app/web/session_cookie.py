"""The login session's cookie, signed again at most once every SESSION_REFRESH_SECONDS.

A permanent session's cookie carries the time it was signed and is refused
PERMANENT_SESSION_LIFETIME after it, so the lifetime is an idle timeout: every answer
that sends the cookie again moves the expiry on. Flask signs and sends it on every
answer, about 0.2 ms of CPU a request that changes nothing. An unchanged session is
sent again only once its cookie is that old, which moves the idle timeout by at most as
much; a session that changed (login, logout, a flash message) is sent at once.
"""

from __future__ import annotations

import time

from flask import Flask, Request
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface, SessionMixin
from itsdangerous import BadSignature

from crm_app.config import settings_of


class SignedAtSession(SecureCookieSession):
    """A cookie session that knows when its cookie was signed (None: a new session)."""

    signed_at: float | None = None


class ThrottledRefreshSessionInterface(SecureCookieSessionInterface):
    session_class = SignedAtSession

    def open_session(self, app: Flask, request: Request) -> SignedAtSession | None:
        # Flask's own, plus the cookie's signing time that `loads` checks anyway.
        serializer = self.get_signing_serializer(app)
        if serializer is None:
            return None
        cookie = request.cookies.get(self.get_cookie_name(app))
        if not cookie:
            return self.session_class()
        max_age = int(app.permanent_session_lifetime.total_seconds())
        try:
            data, signed_at = serializer.loads(cookie, max_age=max_age, return_timestamp=True)
        except BadSignature:
            return self.session_class()
        session = self.session_class(data)
        session.signed_at = signed_at.timestamp()
        return session

    def should_set_cookie(self, app: Flask, session: SessionMixin) -> bool:
        if session.modified:
            return True
        if not (session.permanent and app.config["SESSION_REFRESH_EACH_REQUEST"]):
            return False
        signed_at = getattr(session, "signed_at", None)
        refresh_after = settings_of(app).session_refresh_seconds
        return signed_at is None or time.time() - signed_at >= refresh_after


def init_session_cookie(app: Flask) -> None:
    app.session_interface = ThrottledRefreshSessionInterface()
