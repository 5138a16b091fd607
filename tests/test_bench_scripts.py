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
