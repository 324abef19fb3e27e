#!/usr/bin/env bash
# Checks the workspace's declared rust-version against every resolved dependency of the
# published crates (normal and build dependencies, all features): the declared MSRV must be
# at least the highest rust-version any of them declares. Reads `cargo metadata`; needs
# python3 (skipped with a warning without it).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v python3 >/dev/null 2>&1; then
  echo "check-msrv: python3 is missing, skipping the MSRV check" >&2
  exit 0
fi
host="$(rustc -vV | sed -n 's/^host: //p')"
# Offline, for this host's platform (other platforms' crates need not be downloaded).
cargo metadata --format-version 1 --all-features --locked --offline --filter-platform "$host" | python3 -c '
import json, sys

def version(text):
    parts = [int(p) for p in (text or "0").split(".")]
    return tuple(parts + [0] * (3 - len(parts)))

meta = json.load(sys.stdin)
packages = {p["id"]: p for p in meta["packages"]}
nodes = {n["id"]: n for n in meta["resolve"]["nodes"]}
members = [packages[i] for i in meta["workspace_members"]]
published = [p for p in members if p.get("publish") != []]
declared = {p["name"]: p.get("rust_version") for p in published}

seen, stack = set(), [p["id"] for p in published]
while stack:
    node = nodes[stack.pop()]
    if node["id"] in seen:
        continue
    seen.add(node["id"])
    for dep in node["deps"]:
        kinds = [k["kind"] for k in dep["dep_kinds"]]
        if any(kind in (None, "build") for kind in kinds):
            stack.append(dep["pkg"])

needed = max((version(packages[i].get("rust_version")), packages[i]["name"] + " " + packages[i]["version"])
             for i in seen if packages[i].get("rust_version") and packages[i]["id"] not in meta["workspace_members"])
need_text = ".".join(str(x) for x in needed[0])
print(f"msrv: {len(seen)} crates resolved; the highest rust-version among dependencies is {need_text} ({needed[1]})")
failed = False
for name, rust_version in sorted(declared.items()):
    if rust_version is None or version(rust_version) < needed[0]:
        print(f"msrv: {name} declares rust-version {rust_version}, but {needed[1]} needs {need_text}", file=sys.stderr)
        failed = True
sys.exit(1 if failed else 0)
'
