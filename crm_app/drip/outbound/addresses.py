"""Who a webhook may call (SSRF): never this machine or its networks, unless allowed.

An admin types the URL, but the server makes the call: a URL pointing at loopback, a
private network, link-local (cloud metadata at 169.254.169.254), multicast or
reserved space would let the CRM be used to reach what only it can reach. The URL is
checked when it is saved and again at every send, on the addresses the connection
actually uses (`CheckedTransport` connects only to the addresses it checked, so a DNS
answer that changes between check and connect cannot slip through).
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from urllib.parse import urlsplit

import httpcore
import httpx

Resolver = Callable[[str, int], list[str]]
# When the request in progress on this thread must be over (time.monotonic()), or None.
_deadline: ContextVar[float | None] = ContextVar("webhook_deadline", default=None)


class UnsafeTarget(httpcore.ConnectError):
    """The host resolves to an address webhooks may not call (a ConnectError, so httpx
    reports it as one)."""


def system_resolver(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(info[4][0] for info in infos))


def address_problem(address: str) -> str | None:
    """Why a webhook may not call this IP address, or None."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    for label, matches in (
        ("a loopback address", ip.is_loopback),
        ("a link-local address", ip.is_link_local),
        ("a multicast address", ip.is_multicast),
        ("an unspecified address", ip.is_unspecified),
        ("a private address", ip.is_private),
        ("a reserved address", ip.is_reserved),
        # Shared (carrier NAT), documentation and other non-public ranges.
        ("not a public address", not ip.is_global),
    ):
        if matches:
            return f"{ip}, {label}"
    return None


def checked_addresses(
    host: str, port: int, *, allow_private: bool, resolve: Resolver = system_resolver
) -> list[str]:
    """The addresses of `host`, all of them allowed; raises UnsafeTarget otherwise (one
    bad address refuses the host: a DNS answer may mix them to get through)."""
    try:
        addresses = resolve(host, port)
    except (OSError, UnicodeError) as unresolved:
        raise UnsafeTarget(f"{host} does not resolve ({unresolved})") from None
    if not addresses:
        raise UnsafeTarget(f"{host} does not resolve")
    if not allow_private:
        for address in addresses:
            problem = address_problem(address)
            if problem:
                raise UnsafeTarget(
                    f"{host} resolves to {problem}: webhooks may only call public addresses"
                )
    return addresses


def url_problem(
    url: str, *, allow_private: bool, resolve: Resolver = system_resolver
) -> str | None:
    """Why a webhook may not be sent to `url`, or None (for the endpoint form)."""
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as invalid:
        return f"Not a valid URL: {invalid}."
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "Enter a full http:// or https:// URL."
    if parts.username or parts.password:
        return "Leave credentials out of the URL: the signature proves who is calling."
    try:
        checked_addresses(parts.hostname, port, allow_private=allow_private, resolve=resolve)
    except UnsafeTarget as refused:
        return f"Refused: {refused}."
    return None


@contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """The requests made inside get `seconds` in all, not per read: httpx's timeout is
    per socket operation, so a receiver trickling a byte every few seconds would hold
    the sending thread for hours (and outlive the lease, so the sweep sent it again)."""
    token = _deadline.set(time.monotonic() + seconds)
    try:
        yield
    finally:
        _deadline.reset(token)


def _within_deadline(timeout: float | None, expired: type[Exception]) -> float | None:
    """`timeout`, shortened to what is left before the deadline; raises when none is."""
    end = _deadline.get()
    if end is None:
        return timeout
    left = end - time.monotonic()
    if left <= 0:
        raise expired("the receiver took longer than the webhook timeout in all")
    return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    """A connection whose every read and write stops at the current deadline."""

    def __init__(self, stream: httpcore.NetworkStream):
        self._stream = stream

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, _within_deadline(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, _within_deadline(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(self, ssl_context, server_hostname=None, timeout=None):
        timeout = _within_deadline(timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(self._stream.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str):
        return self._stream.get_extra_info(info)


class _CheckedBackend(httpcore.SyncBackend):
    """Connects only to addresses that passed the check (TLS still verifies the name)."""

    def __init__(self, *, allow_private: bool, resolve: Resolver):
        self.allow_private = allow_private
        self.resolve = resolve

    def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        last_error: Exception | None = None
        for address in checked_addresses(
            host, port, allow_private=self.allow_private, resolve=self.resolve
        ):
            try:
                connect_timeout = _within_deadline(timeout, httpcore.ConnectTimeout)
                stream = super().connect_tcp(
                    address, port, connect_timeout, local_address, socket_options
                )
                return _DeadlineStream(stream)
            except httpcore.ConnectError as error:
                last_error = error
        raise last_error or UnsafeTarget(f"{host} does not resolve")


class CheckedTransport(httpx.HTTPTransport):
    """httpx's transport with the address check in its connection pool, and no proxy
    from the environment (a proxy would make the check meaningless)."""

    def __init__(self, *, allow_private: bool, resolve: Resolver = system_resolver):
        super().__init__(trust_env=False)
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            network_backend=_CheckedBackend(allow_private=allow_private, resolve=resolve),
        )
