"""`make bench` runs every bench/*_bench.py and stops at the first that fails: each must
at least import, and the one that needs no database must run."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"


@pytest.mark.parametrize("script", sorted(p.stem for p in BENCH.glob("*_bench.py")))
def test_each_benchmark_imports(script):
    importlib.import_module(f"bench.{script}")


def test_the_render_benchmark_runs(monkeypatch, capsys):
    render_bench = importlib.import_module("bench.render_bench")
    monkeypatch.setattr(sys, "argv", ["render_bench.py", "--rounds", "1"])
    render_bench.main()
    assert "emails/s" in capsys.readouterr().out


def test_the_delivery_benchmarks_sendgrid_counts_what_the_real_client_sends(tmp_path):
    """The bench's light stand-in answers the `sendgrid` client like the tests' one: 202
    for a valid email, 400 for a malformed body, and `/_stats` counts duplicates."""
    import json
    import subprocess
    import urllib.request

    import sendgrid

    server = subprocess.Popen(
        [sys.executable, str(BENCH / "fake_sendgrid.py"), "0", "0"], stdout=subprocess.PIPE
    )
    try:
        url = server.stdout.readline().decode().strip()
        client = sendgrid.SendGridAPIClient(api_key="SG.test", host=url)
        body = {
            "personalizations": [{"to": [{"email": "ann@example.com"}]}],
            "from": {"email": "team@example.com"},
            "subject": "Hello",
            "content": [
                {"type": "text/plain", "value": "Hi"},
                {"type": "text/html", "value": "<p>Hi</p>"},
            ],
            "custom_args": {"message_id": "42"},
        }
        for _ in range(2):
            answer = client.client.mail.send.post(request_body=body)
            assert answer.status_code == 202 and answer.headers["X-Message-Id"]
        with pytest.raises(Exception) as refused:
            client.client.mail.send.post(request_body={"subject": "no recipient"})
        assert getattr(refused.value, "status_code", None) == 400
        stats = json.loads(urllib.request.urlopen(url + "/_stats").read())
        assert stats == {"deliveries": 2, "distinct": 1, "duplicates": 1}
    finally:
        server.terminate()
        server.wait(10)


def test_the_pages_benchmark_prints_the_cpu_a_request_may_use_to_meet_each_aim(monkeypatch, capsys):
    """2 cores, 8 clients. The bare route: 2,000 requests/s, so half of it leaves
    2 / 1,000 = 2 ms of CPU a request. The page: 200/s (mean wait 8 / 200 = 40 ms),
    p99 80 ms (twice the mean): p99 50 ms comes at 8 * 2 / 0.05 = 320/s, which leaves
    2 / 320 = 6.25 ms."""
    pages_bench = importlib.import_module("bench.pages_bench")
    monkeypatch.setattr(pages_bench.os, "cpu_count", lambda: 2)
    bare = pages_bench.Figures("bare", 2000, 1.0, [2.0] * 2000, 0, busy_seconds=1.6)
    page = pages_bench.Figures("the page", 200, 1.0, [40.0] * 190 + [80.0] * 10, 0, 1.9)
    assert pages_bench.cpu_budgets(page, bare, clients=8) == pytest.approx((6.25, 2.0))

    pages_bench.report([bare], [page], clients=8)
    line = next(row for row in capsys.readouterr().out.splitlines() if "the page" in row)
    assert "9.50" in line  # 1.9 s of CPU over 200 requests
    assert "p99 over 50 ms: <= 6.25 CPU ms" in line
    assert "under 50% of bare: <= 2.00" in line


def test_the_pages_benchmark_prints_how_far_the_machine_drifted_during_the_run(capsys):
    """The bare route is measured again after the pages: 1,800 requests/s against 2,000
    at the start is the machine 10 % slower, whatever the code did."""
    pages_bench = importlib.import_module("bench.pages_bench")
    bare = pages_bench.Figures("bare", 2000, 1.0, [2.0] * 2000, 0, busy_seconds=1.6)
    again = pages_bench.Figures("bare", 1800, 1.0, [2.2] * 1800, 0, busy_seconds=1.6)
    page = pages_bench.Figures("the page", 200, 1.0, [40.0] * 200, 0, 1.9)

    pages_bench.report([bare], [page], clients=8, bare_again=again)
    out = capsys.readouterr().out
    assert "the bare route again after the pages: 1800.0 requests/s, 10% slower" in out
    assert "10% faster" in pages_bench.machine_drift(
        again, pages_bench.Figures("bare", 1980, 1.0, [2.0] * 1980, 0, busy_seconds=1.6)
    )
