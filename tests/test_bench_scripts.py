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
