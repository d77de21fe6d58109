#!/usr/bin/env bash
# T-SQL parse gate: every .sql under a sqlserver/ folder must pass Microsoft's parser (ScriptDom,
# via the PyPI package maxdop). Names each file that fails.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
mapfile -t files < <(find "$root" -path "$root/target" -prune -o -path '*/sqlserver/*' -name '*.sql' -print | sort)
# The statements the SQL Server engine builds at run time (CREATE DATABASE, CREATE USER with a
# password full of quoting hazards, DENY CONNECT...) go through the same parser.
generated="$root/target/tsql-generated/sqlserver"
rm -rf "$generated"
if ! ${CARGO:-cargo} run -q -p tcp-tests --bin tsql-statements -- "$generated" >/dev/null; then
  echo "tsql gate: could not write the engine's and catalog's generated statements" >&2
  exit 1
fi
mapfile -t -O ${#files[@]} files < <(find "$generated" -name '*.sql' | sort)
if [ ${#files[@]} -eq 0 ]; then
  echo "tsql gate: no T-SQL files yet"
  exit 0
fi
# maxdop is a native binary installed into Python's scripts directory, which a fresh shell's PATH
# (or a pyenv shim not yet rehashed) may not show.
maxdop=$(command -v maxdop || true)
scripts=$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))' 2>/dev/null || true)
[ -z "$maxdop" ] && [ -x "$scripts/maxdop" ] && maxdop=$scripts/maxdop
if [ -z "$maxdop" ]; then
  echo "tsql gate: maxdop not found; run infra/deps.sh (pip install maxdop==0.1.3)" >&2
  exit 1
fi
failed=0
for f in "${files[@]}"; do
  if ! out=$("$maxdop" --parser-version 2022 "$f" 2>&1 >/dev/null); then
    echo "tsql gate: ${f#$root/}: $out" >&2
    failed=$((failed + 1))
  fi
done
# Azure SQL Database runs the engine's statements (the shared ones and its own azure_*): each
# also through the newest grammar, 2025 (Azure SQL Database is versionless and tracks it).
mapfile -t azure < <(find "$generated/engine" -name '*.sql' 2>/dev/null | sort)
for f in "${azure[@]}"; do
  if ! out=$("$maxdop" --parser-version 2025 "$f" 2>&1 >/dev/null); then
    echo "tsql gate (2025, Azure SQL Database): ${f#$root/}: $out" >&2
    failed=$((failed + 1))
  fi
done
echo "tsql gate: ${#files[@]} files (SQL Server 2022), ${#azure[@]} of them again as Azure SQL Database (2025), $failed failed"
[ "$failed" -eq 0 ]
