"""A local webhook receiver that checks every request the way a customer's would, with
the Standard Webhooks library (`Webhook(secret).verify(body, headers)`).

`receiver.script(500, 200)` sets the next answers; `receiver.delay` slows every answer
(lets a SIGKILL land mid-send). It keeps every verified event by webhook-id, and the
requests whose signature failed.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError


class WebhookReceiver:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.reset()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
                with receiver.lock:
                    receiver.in_flight += 1
                try:
                    status = receiver._handle(body, dict(self.headers.items()))
                finally:
                    with receiver.lock:
                        receiver.in_flight -= 1
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def reset(self) -> None:
        """Forget everything (a test starts from here)."""
        self.secret: str | None = None
        self.events: dict[str, list[dict]] = defaultdict(list)  # webhook-id -> bodies
        self.answers: list[int] = []  # status answered to each request, in order
        self.refused: list[str] = []  # why a request's signature did not verify
        self.in_flight = 0
        self.delay = 0.0
        self._script: list[int] = []

    def _handle(self, body: str, headers: dict) -> int:
        if self.delay:
            time.sleep(self.delay)
        with self.lock:
            status = self._script.pop(0) if self._script else 200
            self.answers.append(status)
        try:
            payload = Webhook(self.secret).verify(body, headers)
        except WebhookVerificationError as refused:
            with self.lock:
                self.refused.append(str(refused))
            return 401
        if 200 <= status < 300:
            with self.lock:
                self.events[headers["webhook-id"]].append(payload)
        return status

    def script(self, *statuses: int) -> None:
        with self.lock:
            self._script = list(statuses)

    def of_type(self, event_type: str) -> list[dict]:
        with self.lock:
            return [e for bodies in self.events.values() for e in bodies if e["type"] == event_type]

    def start(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
