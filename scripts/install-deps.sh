#!/usr/bin/env bash
# Installs the Debian packages fanout needs to build, test and benchmark, when any is missing.
# Safe to run again: it does nothing (and needs no network) when everything is there.
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config   # toolchain
  capnproto libcapnp-dev                         # wire schema and codegen
  libzmq3-dev cppzmq-dev                         # transport (broker and workers)
  libspdlog-dev libcli11-dev nlohmann-json3-dev  # logging, command lines, JSON output
  doctest-dev                                    # tests
  libcpp-httplib-dev prometheus-cpp-dev          # the --metrics endpoint (HTTP server, metric types)
  prometheus                                     # promtool: checks the scraped metrics in a test
  chromium                                       # headless: renders the broker's status page in a test
  python3 python3-yaml                           # benchmark peers; the cluster rehearsal reads manifests
  iproute2 util-linux                            # network namespaces (multi-host tests, rehearsal), setpriv
  parallel                                       # GNU parallel: the fanout run compatibility suite
  clang libclang-rt-14-dev                       # libFuzzer (make test-fuzz: tests/fuzz)
  mmdebstrap umoci runc                          # the container image (make image) and its runc test
  systemd                                        # systemd-analyze verify of the systemd units
)
# Node.js for the Kubernetes manifest checks (scripts/install-deploy-tools.sh adds its npm
# packages): Debian's, unless a node is already on the PATH.
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  packages+=(nodejs npm)
fi

missing=()
for package in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$package")
  fi
done
((${#missing[@]} == 0)) && exit 0

sudo=()
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null || { echo "install-deps: missing ${missing[*]}; run as root or install sudo" >&2; exit 1; }
  sudo=(sudo)
fi
echo "install-deps: installing ${missing[*]}"
"${sudo[@]}" apt-get update -q
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
