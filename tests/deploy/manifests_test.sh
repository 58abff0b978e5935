#!/usr/bin/env bash
# The Kubernetes manifests as shipped: every overlay of deploy/kubernetes (and the base with each
# autoscaling component) renders with `kubectl kustomize`, and what it renders passes
# check_manifests.mjs: Kubernetes and KEDA schemas, the strict pass (no unknown field) and the
# policy (probes, resources, non-root, Secret modes, grace > drain, the broker a StatefulSet, every
# argument accepted by the built binaries' --help). Skips (77) without kubectl or Node.js.
#
#   manifests_test.sh TOOLS_DIR BROKER_BIN WORKER_BIN
set -euo pipefail
tools=$1 broker_bin=$2 worker_bin=$3
here="$(cd "$(dirname "$0")" && pwd)"
source "$here/deploy_checks.sh"
deploy_checks_init "$tools"

kubernetes="$here/../../deploy/kubernetes"
rendered=()
for overlay in "$kubernetes"/overlays/*/; do
  name=overlay-$(basename "$overlay")
  kubectl kustomize "$overlay" >"$work/$name.yaml" || fail "kubectl kustomize $overlay failed"
  rendered+=("$work/$name.yaml")
done
# Each component on the base alone, so that the one the production overlay does not use (the HPA)
# is checked too.
for component in "$kubernetes"/components/*/; do
  name=component-$(basename "$component")
  mkdir "$work/$name"
  cat >"$work/$name/kustomization.yaml" <<KUSTOMIZATION
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources: [$(realpath --relative-to="$work/$name" "$kubernetes/base")]
components: [$(realpath --relative-to="$work/$name" "$component")]
KUSTOMIZATION
  kubectl kustomize "$work/$name" >"$work/$name.yaml" || fail "kubectl kustomize of the base with $component failed"
  rendered+=("$work/$name.yaml")
done
((${#rendered[@]} >= 4)) || fail "expected two overlays and two components, rendered ${rendered[*]}"

check_manifests "$broker_bin" "$worker_bin" "${rendered[@]}" >"$work/check.out" || {
  cat "$work/check.out"
  fail "the manifests do not pass check_manifests.mjs"
}
cat "$work/check.out"
# Every kind the deployment promises is there (and was checked).
for kind in StatefulSet Deployment Service PodDisruptionBudget NetworkPolicy ScaledObject HorizontalPodAutoscaler; do
  grep -qx "kind: $kind" "${rendered[@]}" || fail "no $kind rendered"
done
echo "manifests test: ok"
