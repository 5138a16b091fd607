"""`make run`: migrate, seed, ensure an admin, then run web + worker + scheduler.

With no REDIS_URL, one embedded redis-server (unix socket under instance/) is
started first and shared by every child; with no DATABASE_URL the app uses
SQLite under instance/. Ctrl-C or SIGTERM stops the children, then Redis. If
one child dies, the others are stopped too: a half-running app (say, web
without a worker) would look healthy while no email goes out.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from dotenv import load_dotenv

from crm_app.config import INSTANCE_PATH, PROJECT_ROOT
from crm_app.embedded_redis import (
    remove_url_file,
    start_embedded_redis,
    stop_embedded_redis,
    write_url_file,
)

PID_FILE = INSTANCE_PATH / "run.pid"
STOP_TIMEOUT_SECONDS = 20  # a worker finishes its current job on SIGTERM


class Shutdown(Exception):
    """Raised by the signal handler to leave whatever the launcher is doing."""


@dataclass
class Child:
    name: str
    process: subprocess.Popen


def _show(text: str) -> None:
    """Print, and keep going if nobody reads our output any more: with `make run | tee
    log`, SIGTERM to make's process group ends tee too, and a BrokenPipeError here
    would abort the shutdown (a traceback, and Redis left running)."""
    try:
        print(text, flush=True)
    except OSError:  # BrokenPipeError, EIO from a closed terminal
        # Later prints, and the interpreter's last flush, go nowhere instead of failing.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def say(message: str) -> None:
    _show(f"[drip] {message}")


def _die_with_parent() -> None:
    """In the child: get SIGTERM if the launcher is killed, so nothing is orphaned."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _start(name: str, argv: list[str], env: dict[str, str]) -> Child:
    # A session of its own: Ctrl-C reaches only the launcher, which then stops
    # each child once and in order (a second SIGINT would cold-kill an RQ worker).
    process = subprocess.Popen(
        argv,
        cwd=PROJECT_ROOT,
        env=env,
        start_new_session=True,
        preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
    )
    return Child(name, process)


def _stop(child: Child) -> None:
    if child.process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(child.process.pid, signal.SIGTERM)
    try:
        child.process.wait(timeout=STOP_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        say(f"{child.name} did not stop within {STOP_TIMEOUT_SECONDS} s; killing it")
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.process.pid, signal.SIGKILL)
        child.process.wait()


def _flask(args: list[str], env: dict[str, str]) -> str:
    """Run one `flask` command to completion; its output is echoed and returned."""
    result = subprocess.run(
        [sys.executable, "-m", "flask", *args],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    if result.returncode != 0:
        sys.stdout.write(result.stdout)
        raise SystemExit(f"[drip] `flask {' '.join(args)}` failed (exit {result.returncode})")
    return result.stdout


def _port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def _wait_for_port(port: int, children: list[Child], timeout: float = 60) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(c.process.poll() is not None for c in children):
            return False
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return True
        time.sleep(0.2)
    return False


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError, IndexError):  # a zombie has exited already
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    return True


def _is_launcher(pid: int) -> bool:
    """After a reboot or a kill -9, the pid in run.pid may be some other process's now:
    that one must not block every later start."""
    try:
        return b"crm_app.launcher" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return not Path("/proc/self").exists()  # no /proc (macOS): trust the pid
    except OSError:
        return True


def _check_not_running() -> None:
    """Refuse a second launcher on the same instance/; clear up after a killed one."""
    if not PID_FILE.exists():
        return
    pids = [int(p) for p in PID_FILE.read_text().split() if p.isdigit()]
    if pids and _pid_alive(pids[0]) and _is_launcher(pids[0]):
        raise SystemExit(f"[drip] already running (launcher pid {pids[0]}); stop it first.")
    # A launcher killed with SIGKILL leaves its embedded Redis behind (children
    # get SIGTERM through PDEATHSIG, Redis is started elsewhere): stop it.
    for pid in pids[1:]:
        cmdline = Path(f"/proc/{pid}/cmdline")
        if cmdline.exists() and b"redis-server" in cmdline.read_bytes():
            say(f"stopping the embedded Redis left by a previous run (pid {pid})")
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            # Wait: on exit it removes its socket file, which would be the new one's.
            deadline = time.monotonic() + 10
            while _pid_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.1)
    PID_FILE.unlink(missing_ok=True)
    remove_url_file(INSTANCE_PATH)


def _admin_line(ensure_admin_output: str) -> str:
    for line in ensure_admin_output.splitlines():
        if "password:" in line:
            return line.replace("Created the first admin: ", "") + "   (shown only this once)"
    return (
        "an admin already exists (its password was printed on the first run; "
        "add another with `flask create-user EMAIL --role admin`)"
    )


def _start_processes(env: dict[str, str], port: int) -> list[Child]:
    """The worker, the scheduler and the web server, in that order."""
    web_argv = [
        sys.executable,
        "-m",
        "gunicorn",
        "wsgi:app",
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        os.environ.get("WEB_CONCURRENCY", "2"),
        "--threads",
        os.environ.get("WEB_THREADS", "4"),
    ]
    return [
        _start("worker", [sys.executable, "worker.py"], env),
        _start("scheduler", [sys.executable, "-m", "crm_app.scheduler"], env),
        _start("web", web_argv, env),
    ]


def _banner(port: int, admin: str, children: list[Child], embedded_redis: bool) -> str:
    database = (
        "SQLite (instance/drip.db)" if not os.environ.get("DATABASE_URL") else "$DATABASE_URL"
    )
    redis = "embedded" if embedded_redis else "$REDIS_URL"
    names = ", ".join(f"{c.name} (pid {c.process.pid})" for c in children)
    return (
        "\n"
        f"  Drip CRM is running at http://127.0.0.1:{port}\n"
        f"  Admin login: {admin}\n"
        f"  Processes: {names}; database: {database}; Redis: {redis}\n"
        "  Press Ctrl-C to stop.\n"
    )


def _supervise(children: list[Child]) -> int:
    """Wait for a signal (Shutdown) or for a child to die; returns the exit code."""
    while True:
        for child in children:
            code = child.process.poll()
            if code is not None:
                say(f"the {child.name} process exited (code {code}); stopping the others")
                return 1
        time.sleep(0.5)


def _stop_all(children: list[Child], redis_process: subprocess.Popen | None) -> None:
    # Ignore further Ctrl-C while stopping: a half-stopped app is worse.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        if children:
            say("stopping " + ", ".join(c.name for c in reversed(children)))
        for child in reversed(children):  # web first: no new work while workers finish
            _stop(child)
    finally:  # whatever happened above, Redis does not outlive the launcher
        if redis_process is not None:
            remove_url_file(INSTANCE_PATH)
            stop_embedded_redis(redis_process)
        PID_FILE.unlink(missing_ok=True)
    say("stopped")


def _prepare(env: dict[str, str]) -> str:
    """Migrate, seed and make sure an admin exists; returns the admin line to print."""
    say("migrating the database (flask db upgrade)")
    _flask(["db", "upgrade"], env)
    say("loading the default campaigns (flask seed)")
    sys.stdout.write(_flask(["seed"], env))
    return _admin_line(_flask(["ensure-admin"], env))


def _port(raw: str) -> int:
    """PORT, or 5000 when unset; a bad value stops the run with a clear message."""
    if not raw.strip():
        return 5000
    try:
        port = int(raw)
    except ValueError:
        port = 0
    if not 1 <= port <= 65535:
        raise SystemExit(f"[drip] PORT={raw!r} is not a port number (1-65535)")
    return port


def main() -> int:
    load_dotenv(PROJECT_ROOT / ".env")
    port = _port(os.environ.get("PORT", ""))
    env = dict(os.environ, FLASK_APP="crm_app:create_app", PYTHONUNBUFFERED="1")
    # Unsubscribe links in the emails must point at this server's real port.
    env.setdefault("PUBLIC_BASE_URL", f"http://127.0.0.1:{port}")

    stopping = False

    def request_stop(signum: int, frame: object) -> None:
        # Once only: a second signal (Ctrl-C pressed twice, a supervisor's repeated
        # SIGTERM) raised while the first Shutdown unwinds would skip the clean-up.
        nonlocal stopping
        if stopping:
            return
        stopping = True
        raise Shutdown(signal.Signals(signum).name)

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, request_stop)

    # Files under instance/ (database, Redis log and socket, pid file) are ours alone;
    # the children inherit the umask.
    os.umask(0o077)
    INSTANCE_PATH.mkdir(parents=True, exist_ok=True)
    _check_not_running()
    if _port_in_use(port):
        raise SystemExit(f"[drip] port {port} is already in use; set PORT=... to use another.")

    redis_process: subprocess.Popen | None = None
    children: list[Child] = []
    exit_code = 0
    try:
        if not env.get("REDIS_URL"):
            redis_process, env["REDIS_URL"] = start_embedded_redis(INSTANCE_PATH)
            write_url_file(INSTANCE_PATH, env["REDIS_URL"])  # for `flask health` & co.
            say(f"embedded Redis started: {env['REDIS_URL']}")
        PID_FILE.write_text(f"{os.getpid()} {redis_process.pid if redis_process else ''}\n")
        admin = _prepare(env)
        children = _start_processes(env, port)
        if _wait_for_port(port, children):
            _show(_banner(port, admin, children, redis_process is not None))
        exit_code = _supervise(children)
    except Shutdown:
        pass
    finally:
        _stop_all(children, redis_process)
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
