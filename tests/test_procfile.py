"""The Procfile (honcho, foreman, Procfile platforms) runs the README's three processes,
and every module or file it names exists."""

from __future__ import annotations

import ast
import importlib.util
import os
import re
import subprocess

import pytest

from tests.conftest import ROOT

# The line format honcho and foreman accept; anything else (comments) is ignored.
PROCFILE_LINE = re.compile(r"^([A-Za-z0-9_-]+):\s*(.+)$")
README_PROCESS_ROW = re.compile(r"^\| (\w+) \| `([^`]+)` \|")


def procfile() -> dict[str, str]:
    lines = (ROOT / "Procfile").read_text().splitlines()
    return {m[1]: m[2] for m in map(PROCFILE_LINE.match, lines) if m}


def readme_processes() -> dict[str, str]:
    section = (ROOT / "README.md").read_text().split("## The processes", 1)[1]
    section = section.split("\n## ", 1)[0]
    return {m[1]: m[2] for m in map(README_PROCESS_ROW.match, section.splitlines()) if m}


def argv(command: str, **env: str) -> list[str]:
    """The command's arguments as the shell these tools run it with expands them."""
    result = subprocess.run(
        ["sh", "-c", f"set -- {command}; printf '%s\\n' \"$@\""],
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.splitlines()


def defines(path, name: str) -> bool:
    tree = ast.parse(path.read_text())
    return any(
        isinstance(node, ast.Assign) and any(getattr(t, "id", None) == name for t in node.targets)
        for node in tree.body
    )


def runs_as_main(path) -> bool:
    return 'if __name__ == "__main__":' in path.read_text()


def test_procfile_has_the_readmes_three_processes_with_their_commands():
    processes, documented = procfile(), readme_processes()
    assert set(processes) == set(documented) == {"web", "worker", "scheduler"}
    for name, command in documented.items():
        assert argv(processes[name])[: len(command.split())] == command.split(), name


def test_web_binds_all_interfaces_on_port_and_concurrency_from_the_environment():
    assert argv(procfile()["web"]) == [
        "gunicorn",
        "wsgi:app",
        "--bind",
        "0.0.0.0:5000",
        "--workers",
        "2",
        "--threads",
        "4",
    ]
    configured = argv(procfile()["web"], PORT="8000", WEB_CONCURRENCY="3", WEB_THREADS="8")
    assert configured[3:] == ["0.0.0.0:8000", "--workers", "3", "--threads", "8"]


@pytest.mark.parametrize("name", ["web", "worker", "scheduler"])
def test_each_command_names_a_module_or_file_that_exists(name):
    program, *args = argv(procfile()[name])
    if program == "gunicorn":
        assert importlib.util.find_spec("gunicorn"), "gunicorn is not installed"
        module, attribute = args[0].split(":")
        path = ROOT / f"{module}.py"
        assert path.is_file() and defines(path, attribute), f"{args[0]}: no such app"
    elif args[0] == "-m":
        spec = importlib.util.find_spec(args[1])
        assert spec and spec.origin, f"no module {args[1]}"
        assert runs_as_main(ROOT / spec.origin), f"{args[1]} does nothing when run with -m"
    else:
        assert program == "python"
        assert (ROOT / args[0]).is_file() and runs_as_main(ROOT / args[0]), args[0]
