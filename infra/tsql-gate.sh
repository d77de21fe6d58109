#!/usr/bin/env bash
# T-SQL parse gate: every .sql under a sqlserver/ folder must pass Microsoft's parser (ScriptDom,
# via the PyPI package maxdop). Names each file that fails.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
mapfile -t files < <(find "$root" -path "$root/target" -prune -o -path '*/sqlserver/*' -name '*.sql' -print | sort)
if [ ${#files[@]} -eq 0 ]; then
  echo "tsql gate: no T-SQL files yet"
  exit 0
fi
failed=0
for f in "${files[@]}"; do
  if ! out=$(maxdop --parser-version 2022 "$f" 2>&1 >/dev/null); then
    echo "tsql gate: ${f#$root/}: $out" >&2
    failed=$((failed + 1))
  fi
done
echo "tsql gate: ${#files[@]} files, $failed failed"
[ "$failed" -eq 0 ]
