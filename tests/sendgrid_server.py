"""A local stand-in for SendGrid's POST /v3/mail/send, for the real `sendgrid` client.

It validates the payload's shape like SendGrid does (400 with SendGrid-style
errors when it is wrong), answers 202 with X-Message-Id, counts deliveries per
custom_args message_id, and can be scripted: `server.script("429", "500")`
makes the next two answers fail, `server.delay = 0.2` slows every answer.
Run it alone (`python tests/sendgrid_server.py [PORT [DELAY_SECONDS]]`) for the benchmark.
"""

from __future__ import annotations

import json
import socket
import struct
import sys
import threading
import time
import uuid
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def payload_errors(payload: object) -> list[dict]:
    """What SendGrid would refuse in this body (the subset our client must get right)."""
    errors: list[dict] = []

    def err(message: str, field: str) -> None:
        errors.append({"message": message, "field": field, "help": None})

    if not isinstance(payload, dict):
        return [{"message": "Bad Request", "field": None, "help": None}]
    personalizations = payload.get("personalizations")
    if not isinstance(personalizations, list) or not personalizations:
        err("The personalizations field is required.", "personalizations")
    else:
        for i, p in enumerate(personalizations):
            to = p.get("to") if isinstance(p, dict) else None
            if not to or not all(isinstance(t, dict) and t.get("email") for t in to):
                err("The to array is required and needs an email.", f"personalizations.{i}.to")
            for key, value in ((p or {}).get("custom_args") or {}).items():
                if not isinstance(value, str):
                    err(f"custom_args values must be strings ({key}).", "custom_args")
    sender = payload.get("from")
    if not isinstance(sender, dict) or not sender.get("email"):
        err("The from object must be provided.", "from")
    if not payload.get("subject") and not all(
        isinstance(p, dict) and p.get("subject") for p in personalizations or [{}]
    ):
        err("The subject is required.", "subject")
    content = payload.get("content")
    types = [c.get("type") for c in content or [] if isinstance(c, dict)]
    if types[:1] != ["text/plain"] or "text/html" not in types:
        err("Content must hold text/plain first, then text/html.", "content")
    for c in content or []:
        if not isinstance(c, dict) or not c.get("value"):
            err("Content values must not be empty.", "content")
    for key, value in (payload.get("custom_args") or {}).items():
        if not isinstance(value, str):
            err(f"custom_args values must be strings ({key}).", "custom_args")
    headers = payload.get("headers") or {}
    if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
        err("Header values must be strings.", "headers")
    return errors


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 512  # hundreds of requests in flight connect at once (the default is 5)

    def handle_error(self, request, client_address) -> None:
        # A client killed between two requests on a kept connection resets it: not news.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class FakeSendGrid:
    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        self.lock = threading.Lock()
        self.deliveries: Counter[str] = Counter()  # custom_args message_id -> 202 answers
        self.requests: list[dict] = []  # every accepted payload
        self.answers: list[str] = []  # what was answered, in order ("202", "429", ...)
        self._script: list[str] = []
        self.delay = 0.0  # seconds before every answer (lets a SIGKILL land mid-send)
        self.hang_seconds = 30.0
        self.retry_after = "1"
        self.keep_requests = True
        self.in_flight = 0  # requests being answered right now
        # Answer this many 202s, then hold every later request unanswered (until
        # `release` is set): a kill then lands with a known set answered and in flight.
        self.answer_limit: int | None = None
        self.release = threading.Event()
        self.held: list[str] = []  # message ids of the requests held unanswered
        self.connections = 0  # TCP connections accepted (keep-alive: fewer than requests)
        server = self

        class Handler(BaseHTTPRequestHandler):
            # Keep-alive, like SendGrid: one connection carries many requests.
            protocol_version = "HTTP/1.1"
            # Headers and body go out in two writes: without this, Nagle's algorithm and
            # the client's delayed ACK can hold every answer that has a body for ~40 ms.
            disable_nagle_algorithm = True

            def log_message(self, *args) -> None:  # quiet
                pass

            def setup(self) -> None:
                super().setup()
                with server.lock:
                    server.connections += 1

            def _answer(self, status: int, body: dict | None, headers: dict | None = None):
                data = json.dumps(body).encode() if body is not None else b""
                self.send_response(status)
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                try:
                    self.end_headers()
                    if data:
                        self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client was killed mid-request (the fault tests do that)

            def do_GET(self) -> None:  # noqa: N802
                # /_stats: the counts, for a server running in another process (bench).
                with server.lock:
                    stats = {
                        "deliveries": sum(server.deliveries.values()),
                        "distinct": len(server.deliveries),
                        "duplicates": len(server.duplicates()),
                    }
                self._answer(200, stats)

            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                server.handle(self, raw)

        self.httpd = _Server((host, port), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    # -- control -----------------------------------------------------------------
    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeSendGrid:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def script(self, *answers: str) -> None:
        """Queue the next answers: "429", "500", "400", "401", "403", "413", "hang", "reset"."""
        with self.lock:
            self._script.extend(answers)

    def reset(self) -> None:
        with self.lock:
            self.deliveries.clear()
            self.requests.clear()
            self.answers.clear()
            self._script.clear()
            self.delay = 0.0
            self.connections = 0
            self.answer_limit = None
            self.held.clear()
            self.release.set()
            self.release = threading.Event()

    def duplicates(self) -> dict[str, int]:
        return {k: v for k, v in list(self.deliveries.items()) if v > 1}

    # -- one request ---------------------------------------------------------------
    def handle(self, handler, raw: bytes) -> None:
        if handler.path.rstrip("/") != "/v3/mail/send":
            handler._answer(404, {"errors": [{"message": "not found", "field": None}]})
            return
        if not handler.headers.get("Authorization", "").startswith("Bearer "):
            handler._answer(401, {"errors": [{"message": "authorization required"}]})
            return
        with self.lock:
            self.in_flight += 1
        try:
            self._handle_send(handler, raw)
        finally:
            with self.lock:
                self.in_flight -= 1

    def _handle_send(self, handler, raw: bytes) -> None:
        if self.delay:
            time.sleep(self.delay)
        with self.lock:
            scripted = self._script.pop(0) if self._script else None
        if scripted is not None:
            with self.lock:
                self.answers.append(scripted)
            self._scripted_answer(handler, scripted)
            return
        try:
            payload = json.loads(raw)
        except ValueError:
            payload = None
        errors = payload_errors(payload)
        if errors:
            with self.lock:
                self.answers.append("400")
            handler._answer(400, {"errors": errors})
            return
        message_id = payload.get("custom_args", {}).get("message_id") or "?"
        provider_id = uuid.uuid4().hex[:22]
        with self.lock:
            held = self.answer_limit is not None and len(self.answers) >= self.answer_limit
            if held:
                self.held.append(message_id)
        if held:
            self.release.wait(self.hang_seconds)
            return
        with self.lock:
            self.deliveries[message_id] += 1
            self.answers.append("202")
            if self.keep_requests:
                self.requests.append(payload)
        handler._answer(202, None, {"X-Message-Id": provider_id})

    def _scripted_answer(self, handler, scripted: str) -> None:
        if scripted == "hang":
            time.sleep(self.hang_seconds)
            return
        if scripted == "reset":
            # The request was read; the connection is reset instead of answered (RST).
            handler.connection.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
            )
            handler.connection.close()
            handler.close_connection = True
            return
        if scripted == "429":
            handler._answer(
                429,
                {"errors": [{"message": "too many requests", "field": None}]},
                {"Retry-After": self.retry_after},
            )
        elif scripted in {"500", "502", "503"}:
            handler._answer(int(scripted), {"errors": [{"message": "internal error"}]})
        elif scripted == "400":
            handler._answer(
                400,
                {
                    "errors": [
                        {
                            "message": "Does not contain a valid address.",
                            "field": "personalizations.0.to.0.email",
                            "help": None,
                        }
                    ]
                },
            )
        elif scripted in {"401", "403"}:
            handler._answer(
                int(scripted),
                {"errors": [{"message": "The provided authorization grant is invalid."}]},
            )
        elif scripted == "413":
            handler._answer(413, {"errors": [{"message": "Payload too large"}]})
        else:
            raise ValueError(f"unknown scripted answer {scripted!r}")


if __name__ == "__main__":
    fake = FakeSendGrid(port=int(sys.argv[1]) if len(sys.argv) > 1 else 0)
    fake.keep_requests = False
    fake.delay = float(sys.argv[2]) if len(sys.argv) > 2 else 0.0  # seconds per answer
    print(fake.url, flush=True)
    fake.httpd.serve_forever()
