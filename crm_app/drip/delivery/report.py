"""What a delivery batch reports, and the stop signal its sends share while it runs."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from crm_app.drip.delivery.provider_health import clear_backend_auth_failure

PHASES = ("load", "render", "claim", "send", "record")


@dataclass
class DeliveryReport:
    sent: list[int] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    retrying: list[int] = field(default_factory=list)
    in_doubt: list[int] = field(default_factory=list)
    not_claimed: list[int] = field(default_factory=list)  # someone else has it, or it is done
    auth_failure: bool = False
    # Where the time went, summed over messages (and threads): load, render, claim, send, record.
    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(PHASES, 0.0))

    def as_dict(self) -> dict[str, Any]:
        return {
            k: (len(v) if isinstance(v, list) else v)
            for k, v in self.__dict__.items()
            if k != "seconds"
        } | {"seconds": {k: round(v, 4) for k, v in self.seconds.items()}}

    def merge(self, other: DeliveryReport) -> None:
        for key, value in other.__dict__.items():
            if isinstance(value, list):
                getattr(self, key).extend(value)
        self.auth_failure = self.auth_failure or other.auth_failure
        for phase, spent in other.seconds.items():
            self.seconds[phase] = self.seconds.get(phase, 0.0) + spent

    def timed(self, phase: str, since: float) -> float:
        """Add the time since `since` to `phase`; returns now, for the next phase."""
        now = time.perf_counter()
        self.seconds[phase] += now - since
        return now


class BatchControl:
    """What the sends of one batch share: the stop signal (a 401/403, a
    timeout, a shutdown) and whether the provider's auth-failure flag still stands."""

    def __init__(self, auth_flag_set: bool):
        self._lock = threading.Lock()
        self.stop = threading.Event()
        self._auth_flag_set = auth_flag_set

    def sent(self, session) -> None:
        """A send succeeded: a 401/403 recorded earlier no longer holds (health turns green)."""
        if not self._auth_flag_set:
            return
        with self._lock:
            if not self._auth_flag_set:
                return
            clear_backend_auth_failure(session)
            session.commit()
            self._auth_flag_set = False
