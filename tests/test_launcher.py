"""`make run` as an operator meets it: `flask health` from a second shell finds the
embedded Redis, and SIGTERM to make's whole process group stops everything cleanly
(no traceback, no redis-server left behind).

Slow (it starts the real web, worker and scheduler): one test does both."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest

from tests.conftest import ROOT

BANNER_END = "Press Ctrl-C to stop."


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = f"/proc/{pid}/stat"
    return not os.path.exists(stat) or open(stat).read().rsplit(")", 1)[1].split()[0] != "Z"


@pytest.fixture
def run_env(tmp_path):
    """`make run`'s environment on an instance directory of its own: SQLite, no
    REDIS_URL (so the embedded Redis), a free port."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"REDIS_URL", "DATABASE_URL", "TEST_DATABASE_URL", "TEST_REDIS_URL"}
    }
    env.update(
        DRIP_INSTANCE_PATH=str(tmp_path / "instance"),
        PORT=str(free_port()),
        SECRET_KEY="launcher-test",
        RQ_QUEUE="launcher_test",
    )
    return env


def test_health_finds_the_embedded_redis_and_sigterm_to_the_group_stops_cleanly(tmp_path, run_env):
    make = shutil.which("make")
    if make is None:
        pytest.skip("make is not installed")
    # The Makefile's own recipe line, without its pip-install prerequisite.
    makefile = tmp_path / "Makefile"
    makefile.write_text(f"run:\n\t{sys.executable} -m crm_app.launcher\n")
    out, err = tmp_path / "run.log", tmp_path / "stderr.log"
    # `make run | tee run.log`: the reader of our output is in the same process group,
    # so the same SIGTERM ends it and every later print meets a broken pipe.
    shell = subprocess.Popen(
        ["sh", "-c", f"'{make}' -f '{makefile}' run | cat > '{out}'"],
        cwd=ROOT, env=run_env, stderr=err.open("w"),
        start_new_session=True,  # one process group, as a terminal job
    )  # fmt: skip
    instance = tmp_path / "instance"
    try:
        deadline = time.monotonic() + 180
        while BANNER_END not in (out.read_text() if out.exists() else ""):
            assert shell.poll() is None, err.read_text()
            assert time.monotonic() < deadline, err.read_text()
            time.sleep(0.2)

        # A second shell, REDIS_URL unset: health reads instance/redis.url.
        health = subprocess.run(
            [sys.executable, "-m", "flask", "--app", "wsgi", "health"],
            cwd=ROOT, env=run_env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert "REDIS_URL is not set" not in health.stdout
        assert re.search(r"^ok\s+redis\s+reachable", health.stdout, re.M), health.stdout
        launcher_pid, redis_pid = map(int, (instance / "run.pid").read_text().split())
        assert alive(redis_pid)
    finally:
        os.killpg(shell.pid, signal.SIGTERM)  # `kill -TERM -<pgid>`
        shell.wait(timeout=90)
    launcher_gone = time.monotonic() + 60
    while alive(launcher_pid) and time.monotonic() < launcher_gone:
        time.sleep(0.2)
    assert not alive(launcher_pid)
    errors = err.read_text()
    assert "Traceback" not in errors, errors
    deadline = time.monotonic() + 10
    while alive(redis_pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(redis_pid), "the embedded redis-server was left running"
    assert not (instance / "redis.url").exists()


def test_a_pid_file_naming_a_process_that_is_not_a_launcher_does_not_block_a_start(
    tmp_path, monkeypatch
):
    """After a reboot or a kill -9 the pid in run.pid may be reused by another process:
    make run said "already running" for ever, until someone deleted the file."""
    from crm_app import launcher

    pid_file = tmp_path / "run.pid"
    monkeypatch.setattr(launcher, "PID_FILE", pid_file)
    monkeypatch.setattr(launcher, "INSTANCE_PATH", tmp_path)
    pid_file.write_text(f"{os.getpid()} \n")  # alive, but pytest, not a launcher
    launcher._check_not_running()
    assert not pid_file.exists()

    # A live launcher (its command line names the module) still refuses a second one.
    other = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)", "crm_app.launcher"]
    )
    try:
        pid_file.write_text(f"{other.pid} \n")
        with pytest.raises(SystemExit, match="already running"):
            launcher._check_not_running()
    finally:
        other.kill()
        other.wait()
