"""Delivery backends: SendGrid (the official client) and the local Outbox.

A backend sends one OutgoingEmail (`await backend.asend(...)`, many at once from one
event loop; `send_one` from synchronous code) and returns the provider's message id,
or raises TransientSendError (nothing went out, or a 429/5xx: retry later),
PermanentSendError (never retry) or UnknownOutcomeError (the request left and no
answer came: in doubt, never retried by itself).
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp
import orjson
import sendgrid
from sendgrid.helpers.mail import (
    Category,
    Content,
    CustomArg,
    From,
    Header,
    Mail,
    ReplyTo,
    To,
)

from crm_app.config import Settings

# A 401/403 means the API key is wrong or revoked: health turns red.
AUTH_STATUSES = frozenset({401, 403})


@dataclass(frozen=True)
class OutgoingEmail:
    message_id: int
    to_email: str
    to_name: str
    subject: str
    html: str
    text: str
    headers: dict[str, str]
    custom_args: dict[str, str]
    category: str = ""
    # Who the email speaks as (the contact's owner or the workspace); the address is
    # always the configured, verified sender. Empty: the backend's configured name.
    from_name: str = ""
    # Where replies go (a per-message address when replies are parsed). Empty: the
    # backend's configured Reply-To, if any.
    reply_to: str = ""


class TransientSendError(Exception):
    """429, 5xx, or the request never left (connection refused, DNS): try again later."""

    def __init__(self, detail: str, retry_after: float | None = None, status: int | None = None):
        super().__init__(detail)
        self.detail = detail
        self.retry_after = retry_after
        self.status = status

    @property
    def is_rate_limit(self) -> bool:
        return self.status == 429


class PermanentSendError(Exception):
    """The provider refused this email for good (any 4xx but 429: 400, 401, 403, 413...)."""

    def __init__(self, status: int, detail: str):
        super().__init__(f"{status}: {detail}")
        self.status = status
        self.detail = detail

    @property
    def is_auth_failure(self) -> bool:
        return self.status in AUTH_STATUSES


class Backend(Protocol):
    name: str

    async def asend(self, outgoing: OutgoingEmail) -> str: ...

    async def aclose(self) -> None: ...


@dataclass
class OutboxBackend:
    """The default without SENDGRID_API_KEY: the message row itself is the outbox."""

    name: str = "outbox"

    async def asend(self, outgoing: OutgoingEmail) -> str:
        return f"outbox-{outgoing.message_id}"

    async def aclose(self) -> None:
        return None


def _header(headers: Any, name: str) -> str | None:
    if headers is None:
        return None
    try:
        value = headers.get(name)
    except AttributeError:
        value = dict(headers).get(name)
    return value


def retry_after_seconds(headers: Any, now: float | None = None) -> float | None:
    """Seconds to wait from Retry-After (seconds or HTTP date) or X-RateLimit-Reset (epoch)."""
    now = time.time() if now is None else now
    value = _header(headers, "Retry-After")
    if value:
        value = value.strip()
        if value.isdigit():
            return float(value)
        try:
            when = email.utils.parsedate_to_datetime(value)
            return max(0.0, when.timestamp() - now)
        except (TypeError, ValueError):
            pass
    reset = _header(headers, "X-RateLimit-Reset")
    if reset and reset.strip().isdigit():
        return max(0.0, float(reset) - now)
    return None


def sendgrid_error_text(body: bytes | str | None) -> str:
    """SendGrid's `{"errors": [{"message", "field"}]}` as one readable line."""
    if body is None:
        return ""
    raw = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    try:
        data = json.loads(raw)
        parts = []
        for err in data.get("errors", []):
            message = err.get("message", "")
            where = err.get("field")
            parts.append(f"{message} ({where})" if where else message)
        if parts:
            return "; ".join(parts)
    except (ValueError, AttributeError):
        pass
    return raw.strip()[:1000]


class UnknownOutcomeError(Exception):
    """The request left, and no answer came back (a timeout, a reset, a closed
    connection): SendGrid may have accepted it. Never retried by itself: in doubt."""

    def __init__(self, detail: str):
        super().__init__(detail)
        self.detail = detail


# aiohttp closes a pooled connection idle this long, before servers and load balancers
# drop it: a request written into a half-closed connection has an unknown outcome.
KEEPALIVE_IDLE_SECONDS = 15.0


@dataclass
class SendGridBackend:
    """The official client builds the request (URL, headers, the `Mail` body); aiohttp
    sends it, many at once from one event loop over a pool of kept connections (the
    official client's urllib transport sends one request per thread at a time)."""

    api_key: str
    host: str
    from_email: str
    from_name: str = ""
    reply_to: str | None = None
    timeout: float = 10.0
    max_connections: int = 200
    name: str = "sendgrid"
    # False until SendGrid answered 2xx (and again after a 401/403): the pipeline then
    # sends one request at a time, so a revoked key fails one email, not hundreds.
    answered_ok: bool = False
    _url: str = field(default="", repr=False)
    _headers: dict[str, str] = field(default_factory=dict, repr=False)
    _session: Any = field(default=None, repr=False)
    _session_loop: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        official = sendgrid.SendGridAPIClient(self.api_key, host=self.host).client
        self._url = official.mail.send._build_url(None)
        self._headers = dict(official.request_headers) | {"Content-Type": "application/json"}

    def build_mail(self, outgoing: OutgoingEmail) -> Mail:
        mail = Mail(
            from_email=From(self.from_email, outgoing.from_name or self.from_name or None),
            to_emails=To(outgoing.to_email, outgoing.to_name or None),
            subject=outgoing.subject,
        )
        # text/plain must come before text/html (SendGrid rejects the other order).
        mail.add_content(Content("text/plain", outgoing.text))
        mail.add_content(Content("text/html", outgoing.html))
        if outgoing.reply_to or self.reply_to:
            mail.reply_to = ReplyTo(outgoing.reply_to or self.reply_to)
        for key, value in outgoing.custom_args.items():
            mail.add_custom_arg(CustomArg(key, str(value)))
        for key, value in outgoing.headers.items():
            mail.add_header(Header(key, value))
        if outgoing.category:
            mail.add_category(Category(outgoing.category))
        return mail

    def _new_session(self, limit: int) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(
            limit=limit, keepalive_timeout=KEEPALIVE_IDLE_SECONDS, ttl_dns_cache=300
        )
        # `connect` covers waiting for a pooled connection and opening one: nothing has
        # left yet, so its timeout is safe to retry; `sock_read` is the wait for the answer.
        timeout = aiohttp.ClientTimeout(
            total=None, connect=self.timeout, sock_connect=self.timeout, sock_read=self.timeout
        )
        return aiohttp.ClientSession(connector=connector, timeout=timeout, trust_env=False)

    def _loop_session(self) -> aiohttp.ClientSession:
        """This event loop's session (a delivery job runs one loop; a session is bound to it)."""
        loop = asyncio.get_running_loop()
        if self._session is None or self._session.closed or self._session_loop is not loop:
            self._session = self._new_session(self.max_connections)
            self._session_loop = loop
        return self._session

    async def asend(self, outgoing: OutgoingEmail, session: Any = None) -> str:
        """Send one email; returns SendGrid's message id. Raises TransientSendError (nothing
        was sent, or SendGrid said 429/5xx), PermanentSendError (4xx) or UnknownOutcomeError
        (the request left and no answer came: it may have gone out)."""
        body = orjson.dumps(self.build_mail(outgoing).get())
        session = session or self._loop_session()
        try:
            async with session.post(self._url, data=body, headers=self._headers) as response:
                status = response.status
                answer = await response.read()
                headers = response.headers
        except aiohttp.ConnectionTimeoutError as error:
            raise TransientSendError(
                f"Cannot reach SendGrid: no connection in {self.timeout:g} s"
            ) from error
        except aiohttp.ClientConnectorError as error:
            # Refused, DNS, unreachable: the request never left.
            raise TransientSendError(f"Cannot reach SendGrid: {error.os_error}") from error
        except (TimeoutError, aiohttp.ServerTimeoutError) as error:
            raise UnknownOutcomeError(
                f"SendGrid did not answer in {self.timeout:g} s (it may have sent it)"
            ) from error
        except (aiohttp.ClientError, OSError) as error:
            raise UnknownOutcomeError(
                f"the connection to SendGrid broke before its answer (it may have sent it): "
                f"{error.__class__.__name__}: {error}"
            ) from error
        if status == 429 or status >= 500:
            detail = sendgrid_error_text(answer) or str(status)
            raise TransientSendError(
                f"SendGrid answered {status}: {detail}", retry_after_seconds(headers), status
            )
        if status >= 400:
            raise PermanentSendError(status, sendgrid_error_text(answer) or str(status))
        return headers.get("X-Message-Id") or ""

    async def aclose(self) -> None:
        """Close the kept connections (a backend no batch uses any more, or the exit)."""
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = self._session_loop = None


def send_one(backend: Backend, outgoing: OutgoingEmail) -> str:
    """One email, from synchronous code (a test send): its own thread, event loop and
    connection, so it works whether or not the caller runs an event loop itself."""
    outcome: dict[str, Any] = {}

    async def run() -> None:
        if isinstance(backend, SendGridBackend):
            async with backend._new_session(1) as session:
                outcome["id"] = await backend.asend(outgoing, session=session)
        else:
            outcome["id"] = await backend.asend(outgoing)

    def in_thread() -> None:
        try:
            asyncio.run(run())
        except BaseException as error:  # handed to the caller's thread
            outcome["error"] = error

    thread = threading.Thread(target=in_thread, name="drip-send-one", daemon=True)
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["id"]


def sends_to_outbox(settings: Settings) -> bool:
    """Whether emails are kept in the local Outbox (no SendGrid API key is configured)."""
    return not settings.sendgrid_api_key


def backend_from_settings(settings: Settings) -> Backend:
    """SendGrid when an API key is configured, else the local Outbox."""
    if sends_to_outbox(settings):
        return OutboxBackend()
    return SendGridBackend(
        api_key=settings.sendgrid_api_key,
        host=settings.sendgrid_api_host,
        from_email=settings.mail_from_email,
        from_name=settings.mail_from_name,
        reply_to=settings.mail_reply_to,
        timeout=settings.sendgrid_timeout,
        max_connections=settings.delivery_concurrency,
    )
