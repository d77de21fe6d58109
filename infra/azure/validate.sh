#!/usr/bin/env bash
# Bicep parse gate: every .bicep under infra/azure must parse with pycep-parser (PyPI; the
# Bicep grammar checkov uses), and main.parameters.json must set exactly parameters main.bicep
# declares, every one without a default among them. This is what the registries we reach
# offer offline: it catches syntax errors and parameter drift. It does not check resource types,
# API versions or property names against Azure's schemas (the bicep CLI and `az deployment group
# validate` do; neither can run here). Names each file that fails.
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
python3 - "$root/infra/azure" <<'PY'
import json, pathlib, sys
from pycep import BicepParser

folder = pathlib.Path(sys.argv[1])
failed = 0
files = sorted(folder.glob("*.bicep"))
for f in files:
    try:
        tree = BicepParser().parse(text=f.read_text())
    except Exception as e:  # the parser's own exceptions name the line and token
        print(f"bicep gate: {f.relative_to(folder.parent.parent)}: {str(e).splitlines()[0]}", file=sys.stderr)
        failed += 1
        continue
    params_file = f.with_suffix(".parameters.json")
    if params_file.exists():
        declared = tree.get("parameters", {})
        given = json.loads(params_file.read_text()).get("parameters", {})
        unknown = sorted(set(given) - set(declared))
        missing = sorted(
            p for p, d in declared.items()
            if p not in given and d.get("default") is None
        )
        if unknown or missing:
            print(f"bicep gate: {params_file.name}: unknown {unknown}, missing {missing}", file=sys.stderr)
            failed += 1
print(f"bicep gate: {len(files)} files, {failed} failed")
sys.exit(1 if failed else 0)
PY
