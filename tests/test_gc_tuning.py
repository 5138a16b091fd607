"""The web and worker processes set their startup objects aside from the garbage
collector (crm_app/gc_tuning.py): without it a full collection walks some 190,000
objects that live as long as the process (8.9 ms per 1,000-event webhook batch)."""

from __future__ import annotations

import os
import subprocess
import sys
from types import SimpleNamespace

import worker
from tests.conftest import ROOT


def test_the_gunicorn_entry_point_freezes_the_built_app(tmp_path):
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'drip.db'}",
        "DRIP_INSTANCE_PATH": str(tmp_path),
        "SECRET_KEY": "test-secret",
    }
    result = subprocess.run(
        [sys.executable, "-c", "import gc, wsgi; print(gc.get_freeze_count())"],
        cwd=ROOT, env=env, capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    assert int(result.stdout.split()[-1]) > 10_000


def test_the_worker_freezes_once_its_app_is_built_and_pushed(monkeypatch):
    steps: list[str] = []
    built = SimpleNamespace(
        app_context=lambda: SimpleNamespace(push=lambda: steps.append("context pushed"))
    )
    monkeypatch.setattr(worker, "create_app", lambda: steps.append("app built") or built)
    monkeypatch.setattr(worker, "freeze_startup_objects", lambda: steps.append("frozen"))
    monkeypatch.setattr(worker, "run", lambda *args, **kwargs: steps.append("working"))
    worker.main(["--burst"])
    assert steps == ["app built", "context pushed", "frozen", "working"]
