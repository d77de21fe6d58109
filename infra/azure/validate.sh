#!/usr/bin/env bash
# Bicep parse gate: every .bicep under infra/azure must parse with pycep-parser (PyPI; the
# Bicep grammar checkov uses), main.parameters.json must set exactly the parameters main.bicep
# declares (every one without a default among them), and so must every local module's params.
# This is what the registries we reach offer offline: it catches syntax errors and parameter
# drift. It does not check resource types, API versions or property names against Azure's
# schemas (the bicep CLI and `az deployment group validate` do; neither can run here). Names
# each file that fails.
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
    # A local module: the params it is given are exactly ones the module declares, every one
    # without a default among them.
    for mod_name, mod in (tree.get("modules") or {}).items():
        if mod.get("type") != "local":
            continue
        target = f.parent / mod["detail"]["path"]
        if not target.exists():
            print(f"bicep gate: {f.name}: module {mod_name}: {target.name} does not exist", file=sys.stderr)
            failed += 1
            continue
        declared = BicepParser().parse(text=target.read_text()).get("parameters", {})
        given = (mod.get("config") or {}).get("params") or {}
        unknown = sorted(set(given) - set(declared))
        missing = sorted(p for p, d in declared.items() if p not in given and d.get("default") is None)
        if unknown or missing:
            print(f"bicep gate: {f.name}: module {mod_name}: unknown {unknown}, missing {missing}", file=sys.stderr)
            failed += 1
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
