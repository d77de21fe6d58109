#!/usr/bin/env bash
# Local PostgreSQL 15 cluster for `make run`: initialised once under .data/pg, listening on
# 127.0.0.1:55432, with a generated superuser password written (0600) to .data/pg-admin-url for
# the control plane. PostgreSQL refuses to run as root, so as root we run it as `postgres`.
set -euo pipefail

cmd=${1:-start}
root=$(cd "$(dirname "$0")/.." && pwd)
data_dir=${TENANT_CP_DATA_DIR:-$root/.data}
mkdir -p "$data_dir"
data_dir=$(cd "$data_dir" && pwd)
pgdata=$data_dir/pg
port=${PG_PORT:-55432}
bindir=${PG_BINDIR:-/usr/lib/postgresql/15/bin}

as_pg() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

ensure_binaries() {
  if [ ! -x "$bindir/initdb" ]; then
    echo "PostgreSQL 15 server not found in $bindir; installing postgresql-15" >&2
    if [ "$(id -u)" = 0 ]; then
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-15 >/dev/null
    else
      echo "error: install PostgreSQL 15 (apt-get install postgresql-15) and run again" >&2
      exit 1
    fi
  fi
}

init() {
  ensure_binaries
  if [ -f "$pgdata/PG_VERSION" ]; then return; fi
  echo "initialising PostgreSQL cluster in $pgdata" >&2
  mkdir -p "$pgdata"
  pw=$(head -c 24 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 32)
  pwfile=$(mktemp)
  printf '%s\n' "$pw" > "$pwfile"
  if [ "$(id -u)" = 0 ]; then chown postgres "$pgdata" "$pwfile"; fi
  chmod 700 "$pgdata"
  as_pg "$bindir/initdb" -D "$pgdata" -U postgres --pwfile="$pwfile" \
    --auth-local=scram-sha-256 --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 >/dev/null
  rm -f "$pwfile"
  umask 077
  printf 'postgresql://postgres:%s@127.0.0.1:%s/postgres\n' "$pw" "$port" > "$data_dir/pg-admin-url"
}

start() {
  init
  if as_pg "$bindir/pg_ctl" -D "$pgdata" status >/dev/null 2>&1; then
    echo "PostgreSQL already running on 127.0.0.1:$port" >&2; return
  fi
  as_pg "$bindir/pg_ctl" -D "$pgdata" -l "$pgdata/server.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $port -k $pgdata -c max_connections=200" start >/dev/null
  echo "PostgreSQL running on 127.0.0.1:$port (data: $pgdata, log: $pgdata/server.log)" >&2
}

stop() {
  if [ -f "$pgdata/PG_VERSION" ] && as_pg "$bindir/pg_ctl" -D "$pgdata" status >/dev/null 2>&1; then
    as_pg "$bindir/pg_ctl" -D "$pgdata" -m fast -w stop >/dev/null
    echo "PostgreSQL stopped" >&2
  else
    echo "PostgreSQL is not running" >&2
  fi
}

case "$cmd" in
  start) start ;;
  stop) stop ;;
  status) as_pg "$bindir/pg_ctl" -D "$pgdata" status ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
