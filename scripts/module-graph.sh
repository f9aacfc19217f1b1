#!/usr/bin/env bash
# Prints Engram's SwiftPM target graph (each target, the targets it depends on, its source lines)
# and fails when the layering is broken:
#   - a cycle, or an arrow that points up the layers (LAYERS below: lower may not use higher);
#   - a source file that imports an Engram module its target does not declare (SwiftPM lets a
#     transitive module be imported silently, which would hide a new arrow);
#   - Gateway, Worker or EngramCLI importing what they must not use (FORBIDDEN below), or reaching
#     the store or the key ring through the vault (`vault.store`, `vault.keyRing`);
#   - a target other than the CLI linking EngramTools (benchmark seeding, LoCoMo evaluation).
# Fast (no build): `make test` runs it first.
#
#   scripts/module-graph.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

manifest=$(swift package dump-package)
python3 - "$manifest" <<'PY'
import json, os, re, sys

# Rank of each layer: a target may depend only on targets of a lower rank.
LAYERS = {
    "CHiredis": 0,
    "EngramCore": 1,
    "EngramObservability": 2,
    "EngramStore": 3, "EngramQueue": 3, "EngramProviders": 3,
    "EngramApp": 4,
    "EngramTools": 5,
    "Gateway": 6, "Worker": 6, "EngramCLI": 6,
    "EngramTests": 7,
}
# Modules the thin executables must not import: the database and Redis drivers, the benchmark
# and evaluation tools, and for the worker the store. They reach memories through EngramApp.
FORBIDDEN = {
    "Gateway": {"EngramTools", "GRDB", "PostgresNIO", "CHiredis"},
    "Worker": {"EngramStore", "EngramTools", "GRDB", "PostgresNIO", "CHiredis"},
    "EngramCLI": {"GRDB", "PostgresNIO", "CHiredis"},
}
# Expressions that reach past the vault to the data (allowed inside EngramApp only).
BACKDOOR = re.compile(r"\bvault\.(store|keyRing)\b")

package = json.loads(sys.argv[1])
targets = {t["name"]: t for t in package["targets"]}
local = set(targets)
errors = []

def deps(name):
    out = []
    for d in targets[name].get("dependencies", []):
        for kind in ("byName", "target"):
            if kind in d and d[kind][0] in local:
                out.append(d[kind][0])
    return out

def folder(name):
    t = targets[name]
    if t.get("path"):
        return t["path"]
    return os.path.join("Tests" if t["type"] == "test" else "Sources", name)

def swift_files(name):
    for root, _, files in os.walk(folder(name)):
        for f in sorted(files):
            if f.endswith(".swift"):
                yield os.path.join(root, f)

def lines(name):
    total = 0
    for path in swift_files(name):
        with open(path, encoding="utf-8") as fh:
            total += sum(1 for _ in fh)
    return total

graph = {name: deps(name) for name in targets}

# Cycles (depth-first search with colours).
state = {}
def visit(node, path):
    state[node] = "open"
    for nxt in graph[node]:
        if state.get(nxt) == "open":
            errors.append("cycle: " + " -> ".join(path[path.index(nxt):] + [node, nxt]) if nxt in path else f"cycle through {node} -> {nxt}")
        elif nxt not in state:
            visit(nxt, path + [node])
    state[node] = "done"
for name in graph:
    if name not in state:
        visit(name, [])

for name, ds in graph.items():
    if name not in LAYERS:
        errors.append(f"{name}: not in scripts/module-graph.sh LAYERS; give it a layer")
        continue
    for d in ds:
        if d in LAYERS and LAYERS[d] >= LAYERS[name]:
            errors.append(f"{name} -> {d}: points up or across the layers")
        if d == "EngramTools" and name not in ("EngramCLI",):
            errors.append(f"{name} -> EngramTools: only the CLI links benchmark and evaluation code")

imports = re.compile(r"^\s*(?:@\w+\s+)*import\s+(?:(?:struct|class|enum|protocol|func|var|let|typealias)\s+)?(\w+)", re.M)
for name in targets:
    declared = set(graph[name])
    for path in swift_files(name):
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
        for module in imports.findall(text):
            if module in local and module != name and module not in declared:
                errors.append(f"{path}: imports {module}, which {name} does not declare in Package.swift")
            if module in FORBIDDEN.get(name, ()):
                errors.append(f"{path}: {name} must not import {module}")
        if name in FORBIDDEN:
            for number, line in enumerate(text.splitlines(), 1):
                code = line.split("//", 1)[0]
                if BACKDOOR.search(code):
                    errors.append(f"{path}:{number}: reaches past the vault ({BACKDOOR.search(code).group(0)}): add the operation to EngramApp")

order = sorted(targets, key=lambda n: (LAYERS.get(n, 99), n))
width = max(len(n) for n in order)
total = 0
print(f"{'target':<{width}}  {'lines':>6}  depends on")
for name in order:
    count = lines(name) if targets[name]["type"] != "system" else 0
    total += count
    print(f"{name:<{width}}  {count:>6}  {', '.join(sorted(graph[name], key=lambda n: (LAYERS.get(n, 99), n))) or '-'}")
print(f"{'total':<{width}}  {total:>6}")

if errors:
    print("\nmodule graph: FAILED", file=sys.stderr)
    for e in errors:
        print("  " + e, file=sys.stderr)
    sys.exit(1)
print("module graph: ok (no cycle, every arrow points down, every import declared, the executables' rules hold)")
PY
