#!/usr/bin/env bash
# `make fuzz`: schemathesis (PyPI) against a release build of the control plane, driven by the
# server's own document at /v1/openapi.json. Fails on any finding: a 5xx, a status, content type,
# header or body that the document does not declare.
#
# Each run is throwaway and isolated: a PostgreSQL cluster of its own (infra/pg-local.sh with a
# temporary data directory and a free port) and a temporary control-plane data directory, so the
# tenants schemathesis onboards never meet those of `make run`, and nothing is left behind.
# FUZZ_MAX_EXAMPLES (default 100) bounds the cases per operation; FUZZ_KEEP=1 keeps the data.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

venv=$root/.data/schemathesis
schemathesis_version=${SCHEMATHESIS_VERSION:-4.32.5}
if [ ! -x "$venv/bin/schemathesis" ] ||
  ! "$venv/bin/schemathesis" --version 2>/dev/null | grep -q "$schemathesis_version"; then
  echo "installing schemathesis $schemathesis_version into $venv" >&2
  python=$(command -v python3.11 || command -v python3)
  "$python" -m venv "$venv"
  "$venv/bin/pip" install -q "schemathesis==$schemathesis_version"
fi
# CPython 3.11.7 raises "SystemError: AST constructor recursion depth mismatch" when hypothesis
# parses schemathesis' largest module to describe a filter lambda (only for its repr): describe
# such a lambda generically instead of aborting the operation.
site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')
cat >"$site/fuzz_lambda_repr.py" <<'PY'
import hypothesis.internal.lambda_sources as sources

_describe = sources._lambda_description


def _safe(f, *args, **kwargs):
    try:
        return _describe(f, *args, **kwargs)
    except SystemError:
        return "lambda: ..."


sources._lambda_description = _safe
PY
echo "import fuzz_lambda_repr" >"$site/fuzz_lambda_repr.pth"

cargo build -q --release -p server -p tenantctl

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

mkdir -p "$root/.data"
work=$root/.data/fuzz-$$
mkdir -p "$work"
# PostgreSQL runs as `postgres` when we are root: it must reach its data directory.
chmod 755 "$work"
pg_port=$(free_port)
server_pid=
cleanup() {
  status=$?
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  TENANT_CP_DATA_DIR=$work PG_PORT=$pg_port infra/pg-local.sh stop >/dev/null 2>&1 || true
  if [ "${FUZZ_KEEP:-0}" != 1 ]; then rm -rf "$work"; else echo "kept $work" >&2; fi
  exit "$status"
}
trap cleanup EXIT INT TERM

TENANT_CP_DATA_DIR=$work PG_PORT=$pg_port infra/pg-local.sh start

port=$(free_port)
base=http://127.0.0.1:$port
# The catalog and the tenant databases live on the throwaway cluster (its admin URL is in
# $work/pg-admin-url, the server's default); local token auth is what the admin token below needs.
# Rate limits are off: a 429 would stand in for the answers the checks expect (the limits are
# tested in tests/tests/limits.rs; the document declares 429 on every route). Draining servers is
# left out (tests/tests/fleet.rs covers it): draining the run's only server would make every later
# onboarding a (documented) 503 and leave the other routes without tenants to work on. That 503,
# and the one for placement labels no server carries, are allowed by infra/schemathesis.toml.
env TENANT_CP_LISTEN="127.0.0.1:$port" \
  TENANT_CP_DATA_DIR="$work" \
  TENANT_CP_AUTH_MODE=local \
  TENANT_CP_RATE_LIMIT_PER_IP=0 \
  TENANT_CP_RATE_LIMIT_PER_SUBJECT=0 \
  TENANT_CP_NODE_ID=fuzz \
  TENANT_CP_LOG="${TENANT_CP_LOG:-warn}" \
  ./target/release/tenant-control-plane >"$work/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 300); do
  if curl -fsS "$base/readyz" >/dev/null 2>&1; then break; fi
  if ! kill -0 "$server_pid" 2>/dev/null; then
    echo "the control plane exited; its log:" >&2; cat "$work/server.log" >&2; exit 1
  fi
  sleep 0.2
done
curl -fsS "$base/readyz" >/dev/null

token=$(./target/release/tenantctl --data-dir "$work" token --role admin --subject fuzz --ttl-secs 3600)

started=$(date +%s)
set +e
# From the throwaway directory: schemathesis keeps its state in ./.schemathesis.
(cd "$work" && "$venv/bin/schemathesis" --config-file "$root/infra/schemathesis.toml" run "$base/v1/openapi.json" \
  --header "Authorization: Bearer $token" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance,negative_data_rejection,unsupported_method,allow_header_conformance,missing_required_header,ignored_auth \
  --max-examples "${FUZZ_MAX_EXAMPLES:-100}" \
  --phases examples,coverage,fuzzing,stateful \
  --exclude-operation-id drain_server \
  --workers 2 \
  --request-timeout 60 \
  --seed "${FUZZ_SEED:-1}" \
  --generation-database none \
  --no-color \
  "$@")
result=$?
set -e
echo "schemathesis $("$venv/bin/schemathesis" --version | awk '{print $NF}'): exit $result after $(($(date +%s) - started)) s" >&2
if [ "$result" != 0 ]; then
  # The server's own account of what failed (its log carries no secret), since the run's
  # directory is removed: the request ids in schemathesis' report find the lines.
  echo "the server log's errors (last 40):" >&2
  grep -E "ERROR|WARN" "$work/server.log" | tail -40 >&2 || true
fi
if grep -q "panicked" "$work/server.log"; then
  echo "the server log has a panic:" >&2; grep -A5 "panicked" "$work/server.log" >&2; result=1
fi
exit "$result"
