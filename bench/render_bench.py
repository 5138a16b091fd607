"""Email rendering: microseconds per email through the sandbox and its per-email budget.

Renders every step of the four default campaigns (subject, HTML and text, one budget
per email, as the workers do) for the sample contact, R rounds, best of 5. No database.

    python bench/render_bench.py                 # 200 rounds x 23 emails, best of 5
    python bench/render_bench.py --rounds 50
"""

from __future__ import annotations

import argparse
import sys
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from crm_app.drip.campaigns.rendering import (  # noqa: E402
    SAMPLE_CONTACT,
    WorkspaceSender,
    build_context,
    render_email,
    sender_context,
)


def default_steps() -> list[tuple[str, str, str]]:
    steps = []
    for path in sorted((ROOT / "crm_app" / "default_campaigns").glob("*.toml")):
        for step in tomllib.loads(path.read_text())["steps"]:
            steps.append((step["subject"], step["body_html"], step["body_text"]))
    return steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args()
    workspace = WorkspaceSender(
        name="Sam", signature="", email="sam@example.com", company="Acme", website=""
    )
    sender = sender_context(None, workspace)
    context = build_context(SAMPLE_CONTACT, sender)
    steps = default_steps()
    for step in steps:  # compile once (cached), as a worker does after its first email
        render_email(*step, context)
    timings = []
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(args.rounds):
            for step in steps:
                render_email(*step, context)
        timings.append(time.perf_counter() - started)
    emails = args.rounds * len(steps)
    best = min(timings)
    print(f"rendered {emails:,} emails ({len(steps)} default steps) x 5 runs")
    print(f"best run: {best * 1e6 / emails:.1f} us per email, {emails / best:,.0f} emails/s")


if __name__ == "__main__":
    main()
