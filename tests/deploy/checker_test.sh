#!/usr/bin/env bash
# The checker itself: each deliberately broken variant of the dev overlay (broken/*/, a kustomize
# overlay with one mistake and the problem it must cause on its `# expect:` line) fails
# check_manifests.mjs with that problem, while the unbroken dev overlay, checked in the same run,
# has none. Skips (77) without kubectl or Node.js.
#
#   checker_test.sh TOOLS_DIR BROKER_BIN WORKER_BIN
set -euo pipefail
tools=$1 broker_bin=$2 worker_bin=$3
here="$(cd "$(dirname "$0")" && pwd)"
source "$here/deploy_checks.sh"
deploy_checks_init "$tools"

kubectl kustomize "$here/../../deploy/kubernetes/overlays/dev" >"$work/unbroken.yaml" || fail "the dev overlay does not render"
files=("$work/unbroken.yaml")
cases=()
for case_dir in "$here"/broken/*/; do
  name=$(basename "$case_dir")
  kubectl kustomize "$case_dir" >"$work/$name.yaml" || fail "broken case $name does not render"
  files+=("$work/$name.yaml")
  cases+=("$name")
done
((${#cases[@]} >= 10)) || fail "expected at least 10 broken cases, found ${#cases[@]}"

status=0
check_manifests "$broker_bin" "$worker_bin" "${files[@]}" >"$work/check.out" || status=$?
cat "$work/check.out"
((status == 1)) || fail "the checker exited $status on broken manifests, not 1"
if grep -q "^unbroken.yaml: " "$work/check.out"; then fail "the unbroken dev overlay has problems"; fi
for name in "${cases[@]}"; do
  expected=$(sed -n 's/^# expect: //p' "$here/broken/$name/kustomization.yaml")
  [[ -n $expected ]] || fail "broken case $name has no '# expect:' line"
  grep -qF "$name.yaml: $expected" "$work/check.out" || fail "broken case $name: no problem '$expected'"
done
echo "checker test: ok (${#cases[@]} broken cases caught)"
