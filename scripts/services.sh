#!/usr/bin/env bash
# Make sure the local PostgreSQL (127.0.0.1:5432, database "test") and Redis
# (127.0.0.1:6379) used by the second test run and the benchmarks are up,
# starting each with the machine's own command when it is down.
set -uo pipefail

wait_for() {  # wait_for DESCRIPTION COMMAND...: up to 30 s
    local what=$1; shift
    for _ in $(seq 1 60); do "$@" >/dev/null 2>&1 && return 0; sleep 0.5; done
    echo "services: $what did not come up" >&2
    return 1
}

# Two `make test` started at once must not both start PostgreSQL (the second
# pg_ctlcluster fails), nor both create database "test": the second waits here.
lock="${TMPDIR:-/tmp}/drip-services.lock"
if command -v flock >/dev/null && { : >>"$lock"; } 2>/dev/null; then
    exec 9>>"$lock"
    flock -w 120 9 || echo "services: still locked after 120 s ($lock); going on" >&2
fi

if ! pg_isready -h 127.0.0.1 -p 5432 >/dev/null 2>&1; then
    if ! command -v pg_ctlcluster >/dev/null || [ -z "$(ls /etc/postgresql 2>/dev/null)" ]; then
        echo "services: PostgreSQL is not installed (apt-get install postgresql)" >&2
        exit 1
    fi
    version=$(ls /etc/postgresql | sort -V | tail -n 1)
    echo "services: starting PostgreSQL $version"
    pg_ctlcluster --skip-systemctl-redirect "$version" main start || exit 1
    wait_for PostgreSQL pg_isready -h 127.0.0.1 -p 5432 || exit 1
fi
# The suite connects to database "test" and creates its own database from there.
if ! psql -h 127.0.0.1 -U postgres -d test -Atc 'select 1' >/dev/null 2>&1; then
    echo "services: creating database test"
    psql -h 127.0.0.1 -U postgres -d postgres -c 'CREATE DATABASE test' >/dev/null || exit 1
fi

if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
    if ! command -v redis-server >/dev/null; then
        echo "services: redis-server is not installed (apt-get install redis-server)" >&2
        exit 1
    fi
    echo "services: starting Redis on 127.0.0.1:6379"
    redis-server --daemonize yes --port 6379 --bind 127.0.0.1 --save "" || exit 1
    wait_for Redis redis-cli -h 127.0.0.1 -p 6379 ping || exit 1
fi
