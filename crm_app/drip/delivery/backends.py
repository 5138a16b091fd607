"""Delivery backends: SendGrid (the official client) and the local Outbox.

A backend sends one OutgoingEmail and returns the provider's message id, or
raises TransientSendError (retry later) or PermanentSendError (never retry).
A backend may be shared by several sending threads: SendGridBackend keeps one
keep-alive connection per thread.
"""

from __future__ import annotations

import email.utils
import http.client
import io
import json
import select
import socket
import threading
import time
import urllib.error
import urllib.parse
from dataclasses import dataclass, field
from typing import Any, Protocol

import python_http_client
import sendgrid
from python_http_client.exceptions import HTTPError, handle_error
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
    """429, 5xx, timeout, connection refused: try again later."""

    def __init__(self, detail: str, retry_after: float | None = None):
        super().__init__(detail)
        self.detail = detail
        self.retry_after = retry_after


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

    def send(self, outgoing: OutgoingEmail) -> str: ...


@dataclass
class OutboxBackend:
    """The default without SENDGRID_API_KEY: the message row itself is the outbox."""

    name: str = "outbox"

    def send(self, outgoing: OutgoingEmail) -> str:
        return f"outbox-{outgoing.message_id}"


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


# A kept connection idle longer than this is replaced rather than reused: servers and
# load balancers drop idle connections, and a request written into a half-closed one
# would fail with an unknown outcome.
KEEPALIVE_IDLE_SECONDS = 20.0


class _Connections(threading.local):
    """This thread's kept HTTP connection (one host), and when it was last used."""

    connection: http.client.HTTPConnection | None = None
    key: tuple[str, str] | None = None
    last_used: float = 0.0


class _Answer:
    """What python_http_client's Response reads from a urllib answer."""

    def __init__(self, status: int, body: bytes, headers: http.client.HTTPMessage):
        self.status, self.body, self.headers = status, body, headers

    def getcode(self) -> int:
        return self.status

    def read(self) -> bytes:
        return self.body

    def info(self) -> http.client.HTTPMessage:
        return self.headers


def _dropped(sock: socket.socket | None) -> bool:
    """True when an idle kept connection was closed by the server (readable = EOF or junk)."""
    if sock is None:
        return True
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


class KeepAliveClient(python_http_client.Client):
    """python_http_client's Client (so the official sendgrid client still builds the
    URL, headers and JSON body) that sends over one kept HTTP/1.1 connection per
    thread instead of a new connection per request. Timeouts and HTTP errors surface
    exactly as with urllib: TimeoutError / OSError, and python_http_client's HTTPError."""

    def __init__(self, *args: Any, connections: _Connections | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._connections = connections if connections is not None else _Connections()

    def _build_client(self, name: str | None = None) -> KeepAliveClient:
        url_path = self._url_path + [name] if name else self._url_path
        return KeepAliveClient(
            host=self.host,
            version=self._version,
            request_headers=self.request_headers,
            url_path=url_path,
            append_slash=self.append_slash,
            timeout=self.timeout,
            connections=self._connections,
        )

    def _connection(self, scheme: str, netloc: str, timeout: float | None):
        kept = self._connections
        key = (scheme, netloc)
        conn = kept.connection
        stale = time.monotonic() - kept.last_used > KEEPALIVE_IDLE_SECONDS
        if conn is not None and (kept.key != key or stale or _dropped(conn.sock)):
            conn.close()
            conn = None
        if conn is None:
            factory = (
                http.client.HTTPSConnection if scheme == "https" else http.client.HTTPConnection
            )
            conn = factory(netloc, timeout=timeout)
            kept.connection, kept.key = conn, key
        conn.timeout = timeout
        if conn.sock is not None:
            conn.sock.settimeout(timeout)
        return conn

    def close(self) -> None:
        if self._connections.connection is not None:
            self._connections.connection.close()
            self._connections.connection = None

    def __getattr__(self, name: str) -> Any:
        if name not in self.methods:
            return super().__getattr__(name)  # a URL segment, or .version(n)
        method = name.upper()

        def http_request(
            request_body: Any = None,
            query_params: dict | None = None,
            request_headers: dict | None = None,
            timeout: float | None = None,
            **_: Any,
        ) -> python_http_client.client.Response:
            # The body and headers exactly as python_http_client builds them, without
            # its per-request urllib opener (costly, and it cannot keep a connection).
            if request_headers:
                self._update_headers(request_headers)
            if request_body is None:
                data = None
            elif self.request_headers.get("Content-Type", "application/json") != "application/json":
                data = request_body.encode("utf-8")
            else:
                self.request_headers.setdefault("Content-Type", "application/json")
                data = json.dumps(request_body).encode("utf-8")
            url = self._build_url(query_params)
            answer = self._send(method, url, data, timeout or self.timeout)
            return python_http_client.client.Response(answer)

        return http_request

    def _send(self, method: str, url: str, data: bytes | None, timeout: float | None) -> _Answer:
        parts = urllib.parse.urlsplit(url)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        conn = self._connection(parts.scheme, parts.netloc, timeout)
        try:
            conn.request(method, path, body=data, headers=self.request_headers)
            response = conn.getresponse()
            body = response.read()
        except BaseException:
            # Whatever happened, this connection's state is unknown: never reuse it.
            self.close()
            raise
        self._connections.last_used = time.monotonic()
        if response.will_close:
            self.close()
        if response.status >= 400:
            # python_http_client's own error classes, built from a urllib HTTPError as it does.
            error = urllib.error.HTTPError(
                url, response.status, response.reason, response.headers, io.BytesIO(body)
            )
            exc = handle_error(error)
            exc.__cause__ = None
            raise exc
        return _Answer(response.status, body, response.headers)


@dataclass
class SendGridBackend:
    api_key: str
    host: str
    from_email: str
    from_name: str = ""
    reply_to: str | None = None
    timeout: float = 10.0
    name: str = "sendgrid"
    _client: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self._client = sendgrid.SendGridAPIClient(self.api_key, host=self.host)
        # Same host, headers and API version, but a kept connection per thread.
        plain = self._client.client
        self._client.client = KeepAliveClient(
            host=plain.host, request_headers=plain.request_headers, version=plain._version
        )

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

    def send(self, outgoing: OutgoingEmail) -> str:
        body = self.build_mail(outgoing).get()
        try:
            response = self._client.client.mail.send.post(request_body=body, timeout=self.timeout)
        except HTTPError as error:
            status = int(error.status_code)
            detail = sendgrid_error_text(error.body) or str(error.reason)
            if status == 429 or status >= 500:
                raise TransientSendError(
                    f"SendGrid answered {status}: {detail}", retry_after_seconds(error.headers)
                ) from None
            raise PermanentSendError(status, detail) from None
        except TimeoutError as error:
            raise TransientSendError(f"SendGrid did not answer in {self.timeout:g} s") from error
        except (urllib.error.URLError, ConnectionError, OSError) as error:
            reason = getattr(error, "reason", error)
            if isinstance(reason, TimeoutError | socket.timeout):
                raise TransientSendError(
                    f"SendGrid did not answer in {self.timeout:g} s"
                ) from error
            raise TransientSendError(f"Cannot reach SendGrid: {reason}") from error
        provider_id = _header(response.headers, "X-Message-Id")
        return provider_id or ""


def backend_from_settings(settings: Settings) -> Backend:
    """SendGrid when an API key is configured, else the local Outbox."""
    if not settings.sendgrid_api_key:
        return OutboxBackend()
    return SendGridBackend(
        api_key=settings.sendgrid_api_key,
        host=settings.sendgrid_api_host,
        from_email=settings.mail_from_email,
        from_name=settings.mail_from_name,
        reply_to=settings.mail_reply_to,
        timeout=settings.sendgrid_timeout,
    )
