#!/usr/bin/env bash
# Installs what the deployment checks run on Node (tests/deploy/package.json and its lock file:
# kubernetes-models, @kubernetes-models/keda, js-yaml, typescript) into DIR/node_modules, from the
# npm registry, once: a second run with the same lock file does nothing and needs no network.
# Concurrent runs (ctest -j) wait for each other.
#
#   scripts/install-deploy-tools.sh DIR
# Exit codes: 0 installed (or already there), 77 node or npm missing (the tests then skip), 1 failure.
set -euo pipefail
dir=$1
manifest_dir="$(cd "$(dirname "$0")/../tests/deploy" && pwd)"

for tool in node npm; do
  if ! command -v "$tool" >/dev/null; then
    echo "SKIP: $tool is not installed (the Kubernetes manifest checks run on Node.js 18 or later)"
    exit 77
  fi
done

mkdir -p "$dir"
exec 9>"$dir/.install.lock"
flock 9
stamp=$(cat "$manifest_dir/package.json" "$manifest_dir/package-lock.json" | sha256sum | cut -d' ' -f1)
if [[ -f $dir/.installed && $(cat "$dir/.installed") == "$stamp" && -d $dir/node_modules ]]; then
  exit 0
fi
rm -f "$dir/.installed"
cp "$manifest_dir/package.json" "$manifest_dir/package-lock.json" "$dir/"
echo "install-deploy-tools: npm ci in $dir"
(cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
echo "$stamp" >"$dir/.installed"
