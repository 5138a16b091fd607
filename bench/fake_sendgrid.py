"""The benchmark's SendGrid: POST /v3/mail/send on one asyncio event loop.

The tests' stand-in (tests/sendgrid_server.py) runs a thread per connection so that
a test can script answers, hold requests and reset connections. Under the delivery
benchmark it shares the machine's two cores with the workers, PostgreSQL and Redis,
and its threads cost about a fifth of what a message costs the workers: a figure
about our workers then measured the stand-in too. This one answers the same way
(the payload checked by the tests' `payload_errors`, 400 when it is wrong, 202 with
X-Message-Id, keep-alive, latency as a timer, not a sleeping thread) and counts
deliveries per message id, so `/_stats` still reports duplicates.

    python bench/fake_sendgrid.py [PORT [DELAY_SECONDS]]   # prints its URL
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections import Counter
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.sendgrid_server import payload_errors  # noqa: E402

REASONS = {200: "OK", 202: "Accepted", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found"}


class Counts:
    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.deliveries: Counter[str] = Counter()

    def stats(self) -> dict:
        return {
            "deliveries": sum(self.deliveries.values()),
            "distinct": len(self.deliveries),
            "duplicates": sum(1 for n in self.deliveries.values() if n > 1),
        }


def response(status: int, body: dict | None, headers: dict[str, str] | None = None) -> bytes:
    data = orjson.dumps(body) if body is not None else b""
    head = [f"HTTP/1.1 {status} {REASONS.get(status, 'Error')}"]
    head += [f"{key}: {value}" for key, value in (headers or {}).items()]
    head += ["Content-Type: application/json", f"Content-Length: {len(data)}", "", ""]
    return "\r\n".join(head).encode("latin-1") + data


class SendGridProtocol(asyncio.Protocol):
    """One client connection: requests read one after another (HTTP/1.1, no pipelining
    from aiohttp), each answered after the configured delay."""

    def __init__(self, counts: Counts) -> None:
        self.counts = counts
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def connection_lost(self, exc) -> None:
        self.transport = None

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while (request := self._next_request()) is not None:
            answer = self._answer(*request)
            if self.counts.delay:
                asyncio.get_running_loop().call_later(self.counts.delay, self._write, answer)
            else:
                self._write(answer)

    def _next_request(self) -> tuple[str, str, dict[str, str], bytes] | None:
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return None
        request_line, *lines = self.buffer[:end].decode("latin-1").split("\r\n")
        headers = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length") or 0)
        if len(self.buffer) < end + 4 + length:
            return None
        body = bytes(self.buffer[end + 4 : end + 4 + length])
        del self.buffer[: end + 4 + length]
        method, path = request_line.split(" ")[:2]
        return method, path, headers, body

    def _answer(self, method: str, path: str, headers: dict[str, str], body: bytes) -> bytes:
        if method == "GET" and path == "/_stats":
            return response(200, self.counts.stats())
        if path.rstrip("/") != "/v3/mail/send":
            return response(404, {"errors": [{"message": "not found", "field": None}]})
        if not headers.get("authorization", "").startswith("Bearer "):
            return response(401, {"errors": [{"message": "authorization required"}]})
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError:
            payload = None
        errors = payload_errors(payload)
        if errors:
            return response(400, {"errors": errors})
        self.counts.deliveries[payload.get("custom_args", {}).get("message_id") or "?"] += 1
        return response(202, None, {"X-Message-Id": uuid.uuid4().hex[:22]})

    def _write(self, answer: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(answer)


async def serve(port: int, delay: float) -> None:
    counts = Counts(delay)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SendGridProtocol(counts), "127.0.0.1", port, backlog=1024
    )
    host, bound = server.sockets[0].getsockname()[:2]
    print(f"http://{host}:{bound}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(
        serve(
            int(sys.argv[1]) if len(sys.argv) > 1 else 0,
            float(sys.argv[2]) if len(sys.argv) > 2 else 0.0,
        )
    )
