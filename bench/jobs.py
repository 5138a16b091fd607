"""Jobs the benchmarks enqueue (workers import them by path: the repo root is on theirs)."""


def noop() -> None:
    """RQ's own per-job floor: what a job costs the worker before any of our code runs."""
