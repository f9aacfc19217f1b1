#!/usr/bin/env bash
# Checks the deploy files by hand (not part of `make test`: it needs promtool and
# kubernetes-validate, which the build does not):
#   apt-get install prometheus          # promtool
#   pip install kubernetes-validate
#   bash scripts/check-deploy.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

command -v promtool >/dev/null || { echo "check-deploy: promtool missing (Debian: apt-get install prometheus)" >&2; exit 1; }
command -v kubernetes-validate >/dev/null || { echo "check-deploy: kubernetes-validate missing (pip install kubernetes-validate)" >&2; exit 1; }

promtool check rules deploy/prometheus/alerts.yml
promtool test rules deploy/prometheus/alerts.test.yml

k8s=deploy/k8s
kubernetes-validate --strict --quiet \
  "$k8s/configmap.yaml" "$k8s/gateway.yaml" "$k8s/worker.yaml" "$k8s/ingress.yaml" \
  "$k8s/networkpolicy.yaml" "$k8s/single-node-sqlite.yaml" "$k8s/secret.example.yaml"

# The sidecar file is a kustomize patch: validate the Deployments with it merged in.
merged=$(mktemp "${TMPDIR:-/tmp}/engram-sidecar.XXXXXX.yaml")
trap 'rm -f "$merged"' EXIT
python3 - "$k8s" "$merged" <<'PY'
import sys, yaml
k8s, out = sys.argv[1], sys.argv[2]
patches = {d["metadata"]["name"]: d for d in yaml.safe_load_all(open(f"{k8s}/redis-tls-sidecar.yaml"))}
merged = []
for name in ("gateway.yaml", "worker.yaml"):
    for doc in yaml.safe_load_all(open(f"{k8s}/{name}")):
        if doc["kind"] != "Deployment":
            continue
        patch = patches[doc["metadata"]["name"]]["spec"]["template"]["spec"]
        spec = doc["spec"]["template"]["spec"]
        spec.setdefault("initContainers", []).extend(patch["initContainers"])
        spec["volumes"].extend(patch["volumes"])
        merged.append(doc)
yaml.safe_dump_all(merged, open(out, "w"))
PY
kubernetes-validate --strict --quiet "$merged"
kubernetes-validate --strict --quiet -k 1.29.0 "$merged"
echo "check-deploy: alert rules, rule tests and manifests pass"
