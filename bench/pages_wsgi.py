"""gunicorn entry point for bench/pages_bench.py: the app as `make run` serves it (wsgi.py)
plus two reference routes.

The bare route answers from Flask without a session, a query or a template: the
ceiling the pages are compared with, on the same server and the same settings. The
logged-in route only checks the login (the session cookie, its user read from the
database): the floor every page stands on before it reads or renders anything.
"""

import os

from flask_login import login_required

from wsgi import app


@app.get("/bench/bare")
def bare() -> str:
    return "ok"


@app.get("/bench/logged-in")
@login_required
def logged_in() -> str:
    return "ok"


@app.get("/bench/pid")
def pid() -> str:
    """Which worker process holds this connection (the benchmarks spread theirs evenly)."""
    return str(os.getpid())
