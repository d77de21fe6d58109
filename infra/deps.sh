#!/usr/bin/env bash
# Installs what `make run` / `make test` need when it is missing: the PostgreSQL 15 server
# binaries (Debian package), cargo-nextest, and the T-SQL parser gate (PyPI `maxdop`) once
# T-SQL files exist. Idempotent and quiet when everything is there.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
sudo_if() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

if [ ! -x /usr/lib/postgresql/15/bin/initdb ]; then
  echo "installing postgresql-15" >&2
  sudo_if apt-get update -qq
  DEBIAN_FRONTEND=noninteractive sudo_if apt-get install -y -qq postgresql-15 >/dev/null
fi
if ! id postgres >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  echo "error: the postgres system user is missing; reinstall postgresql-15" >&2; exit 1
fi
if ! cargo nextest --version >/dev/null 2>&1; then
  echo "installing cargo-nextest" >&2
  cargo install --locked cargo-nextest >/dev/null
fi
if find "$root" -path "$root/target" -prune -o -path '*/sqlserver/*' -name '*.sql' -print -quit | grep -q .; then
  scripts=$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')
  if ! command -v maxdop >/dev/null 2>&1 && [ ! -x "$scripts/maxdop" ]; then
    echo "installing maxdop (T-SQL parser gate)" >&2
    python3 -m pip install -q maxdop==0.1.3
  fi
fi
# The Bicep parse gate (infra/azure/validate.sh): pycep-parser, the Bicep grammar checkov uses.
if [ -d "$root/infra/azure" ] && ! python3 -c 'import pycep' >/dev/null 2>&1; then
  echo "installing pycep-parser (Bicep parse gate)" >&2
  python3 -m pip install -q pycep-parser==0.7.1
fi
