#!/usr/bin/env bash
# `make test`: the whole suite twice, (a) SQLite + embedded Redis, (b) PostgreSQL
# + Redis. Both runs always happen; the exit code is non-zero if either failed.
# Extra arguments go to pytest (make test PYTEST_ARGS="-k scheduler").
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY="${VENV:-.venv}/bin/python"

# The browser tests drive Debian's chromium.
if [ ! -x /usr/bin/chromium ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "== installing chromium (apt-get)"
        apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium
    else
        echo "== WARNING: /usr/bin/chromium is missing and we are not root:" \
             "run 'sudo apt-get install -y chromium' for the browser tests" >&2
    fi
fi

echo "== run 1/2: SQLite + embedded Redis"
env -u TEST_DATABASE_URL -u TEST_REDIS_URL "$PY" -m pytest "$@"
sqlite_rc=$?

echo "== run 2/2: PostgreSQL + Redis"
if bash scripts/services.sh; then
    TEST_DATABASE_URL="postgresql+psycopg://postgres@127.0.0.1:5432/test" \
    TEST_REDIS_URL="redis://127.0.0.1:6379" \
        "$PY" -m pytest "$@"
    postgres_rc=$?
else
    echo "PostgreSQL/Redis could not be started" >&2
    postgres_rc=1
fi

echo
status() { [ "$1" = 0 ] && echo "passed" || echo "FAILED (exit $1)"; }
echo "== SQLite + embedded Redis:  $(status $sqlite_rc)"
echo "== PostgreSQL + Redis:       $(status $postgres_rc)"
[ "$sqlite_rc" = 0 ] && [ "$postgres_rc" = 0 ]
