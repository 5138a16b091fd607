"""Delivery backends: SendGrid (the official client) and the local Outbox.

A backend sends one OutgoingEmail and returns the provider's message id, or
raises TransientSendError (retry later) or PermanentSendError (never retry).
"""

from __future__ import annotations

import email.utils
import json
import socket
import time
import urllib.error
from dataclasses import dataclass, field
from typing import Any, Protocol

import sendgrid
from python_http_client.exceptions import HTTPError
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

    def build_mail(self, outgoing: OutgoingEmail) -> Mail:
        mail = Mail(
            from_email=From(self.from_email, self.from_name or None),
            to_emails=To(outgoing.to_email, outgoing.to_name or None),
            subject=outgoing.subject,
        )
        # text/plain must come before text/html (SendGrid rejects the other order).
        mail.add_content(Content("text/plain", outgoing.text))
        mail.add_content(Content("text/html", outgoing.html))
        if self.reply_to:
            mail.reply_to = ReplyTo(self.reply_to)
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


def backend_from_config(config: Any) -> Backend:
    """SendGrid when an API key is configured, else the local Outbox."""
    api_key = config.get("SENDGRID_API_KEY")
    if not api_key:
        return OutboxBackend()
    return SendGridBackend(
        api_key=api_key,
        host=config.get("SENDGRID_API_HOST") or "https://api.sendgrid.com",
        from_email=config.get("MAIL_FROM_EMAIL") or "hello@example.com",
        from_name=config.get("MAIL_FROM_NAME") or "",
        reply_to=config.get("MAIL_REPLY_TO") or None,
        timeout=float(config.get("SENDGRID_TIMEOUT", 10.0)),
    )
