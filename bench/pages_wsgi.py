"""gunicorn entry point for bench/pages_bench.py: the app as `make run` serves it (wsgi.py)
plus one bare route.

The bare route answers from Flask without a session, a query or a template: the
ceiling the pages are compared with, on the same server and the same settings.
"""

import os

from wsgi import app


@app.get("/bench/bare")
def bare() -> str:
    return "ok"


@app.get("/bench/pid")
def pid() -> str:
    """Which worker process holds this connection (the benchmarks spread theirs evenly)."""
    return str(os.getpid())
