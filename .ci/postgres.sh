#!/usr/bin/env bash
# A throwaway PostgreSQL server on loopback for the sweep tests that share a study between workers.
# Sourced by .ci/run: `pg_start` starts it on a free port and exports DLRUN_TEST_POSTGRES_URL; `pg_stop` stops it and
# removes its files.
# Installs Debian's postgresql package when the server binaries are missing (CI runs as root).

pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1; }

as_postgres() {  # initdb and the server refuse to run as root
  if [ "$(id -u)" = 0 ]; then su postgres -s /bin/sh -c "$*"; else sh -c "$*"; fi
}

pg_start() {
  local port
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  if [ -z "$(pg_bin)" ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  fi
  PG_BIN=$(pg_bin)
  PG_DIR=$(mktemp -d /tmp/dlrun-pg.XXXXXX)
  if [ "$(id -u)" = 0 ]; then chown postgres "$PG_DIR"; fi
  as_postgres "$PG_BIN/initdb -D $PG_DIR/data -A trust -U postgres" >/dev/null
  as_postgres "$PG_BIN/pg_ctl -D $PG_DIR/data -l $PG_DIR/server.log -w -o \"-p $port -k $PG_DIR -c listen_addresses=127.0.0.1\" start" >/dev/null
  as_postgres "$PG_BIN/createdb -h 127.0.0.1 -p $port -U postgres dlrun_test"
  export DLRUN_TEST_POSTGRES_URL="postgresql://postgres@127.0.0.1:$port/dlrun_test"
}

pg_stop() {
  if [ -n "${PG_DIR:-}" ] && [ -d "$PG_DIR" ]; then
    as_postgres "$PG_BIN/pg_ctl -D $PG_DIR/data -m fast -w stop" >/dev/null 2>&1 || true
    rm -rf "$PG_DIR"
  fi
}
