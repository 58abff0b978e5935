# deploy_checks.sh, sourced by the manifest tests: the scratch directory, the Node tools and one
# way to run check_manifests.mjs.
#
#   deploy_checks_init TOOLS_DIR    skips (exit 77) without kubectl, node or npm; installs the Node
#                                   packages into TOOLS_DIR (cached); $work, removed on exit
#   check_manifests BROKER WORKER FILE...   the checker with this build's binaries
#   fail MESSAGE                    prints it, exits 1

fail() {
  echo "FAILED: $*" >&2
  exit 1
}

deploy_checks_init() {
  deploy_tools=$1
  if ! command -v kubectl >/dev/null; then
    echo "SKIP: kubectl is not installed (it renders the kustomize overlays offline)"
    exit 77
  fi
  local status=0
  "$(dirname "${BASH_SOURCE[0]}")/../../scripts/install-deploy-tools.sh" "$deploy_tools" || status=$?
  if ((status == 77)); then exit 77; fi
  ((status == 0)) || fail "could not install the Node packages into $deploy_tools"
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
}

check_manifests() {
  local broker_bin=$1 worker_bin=$2
  shift 2
  node "$(dirname "${BASH_SOURCE[0]}")/check_manifests.mjs" --tools "$deploy_tools" \
    --program fanout-broker="$broker_bin" --program fanout-worker="$worker_bin" \
    "$@"
}
