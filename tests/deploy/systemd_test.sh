#!/usr/bin/env bash
# The systemd units of deploy/systemd as shipped (their ExecStart pointed at this build's binaries):
# `systemd-analyze verify` has nothing to say about them (an unknown or misspelled directive is only
# a warning there, so any output fails), they keep the deployment's promises (hardening, journal in
# a StateDirectory, keys by LoadCredential=, a stop timeout beyond the worker's drain timeout), and
# every flag they pass is in the binary's --help. Broken copies prove the checks can fail. Skips
# (77) without systemd-analyze.
#
#   systemd_test.sh BROKER_BIN WORKER_BIN
set -euo pipefail
broker_bin=$1 worker_bin=$2
units="$(cd "$(dirname "$0")/../../deploy/systemd" && pwd)"
fail() { echo "FAILED: $*" >&2; exit 1; }

if ! command -v systemd-analyze >/dev/null; then
  echo "SKIP: systemd-analyze is not installed (Debian package systemd)"
  exit 77
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT


# A unit file's value of KEY (the last one wins, as in systemd).
value_of() { sed -n "s/^$2=//p" "$1" | tail -n 1; }
seconds_of() {  # "45s", "45", "1min" -> seconds
  local value=$1
  case $value in
    *min) echo $(( ${value%min} * 60 )) ;;
    *s) echo "${value%s}" ;;
    *) echo "$value" ;;
  esac
}

# Prints the problems of unit FILE run by PROGRAM (whose --help is asked); nothing when it is sound.
unit_problems() {
  local file=$1 program=$2 name
  name=$(basename "$file")
  local required
  for required in NoNewPrivileges=yes ProtectSystem=strict KillMode=control-group KillSignal=SIGTERM \
                  User=fanout CapabilityBoundingSet= PrivateTmp=yes ProtectHome=yes; do
    grep -qx "$required" "$file" || echo "$name: no $required"
  done
  grep -q '^LoadCredential=' "$file" || echo "$name: keys not by LoadCredential="
  grep -q '^StateDirectory=' "$file" || echo "$name: no StateDirectory="
  local stop
  stop=$(seconds_of "$(value_of "$file" TimeoutStopSec)")
  [[ -n $stop ]] || echo "$name: no TimeoutStopSec="
  if [[ $program == *fanout-worker* ]]; then
    local drain
    drain=$(sed -n 's/^Environment=FANOUT_DRAIN_TIMEOUT=//p' "$file" | tail -n 1)
    drain=${drain:-30}
    ((stop > drain)) || echo "$name: TimeoutStopSec $stop s does not exceed the drain timeout $drain s"
  fi
  local help flag
  help=$("$program" --help | sed -n '/^Options:/,/^[^ O]/p')
  for flag in $(value_of "$file" ExecStart | grep -oE '(^| )--[a-z][a-z-]*' || true); do
    grep -qE "(^|[ ,])$flag( |$)" <<<"$help" && continue
    echo "$name: $(basename "$program") --help has no option $flag"
  done
}

# The units with ExecStart pointing at this build (systemd-analyze checks that it is executable).
install_units() {
  local into=$1 file
  mkdir -p "$into"
  for file in "$units"/*.service; do
    sed -e "s#^ExecStart=/usr/local/bin/fanout-broker #ExecStart=$broker_bin #" \
        -e "s#^ExecStart=/usr/local/bin/fanout-worker #ExecStart=$worker_bin #" "$file" >"$into/$(basename "$file")"
  done
}

verify() {  # prints what systemd-analyze says, fails on a non-zero exit too
  (cd "$1" && systemd-analyze verify ./fanout-broker.service ./fanout-worker@main.service 2>&1) || echo "(systemd-analyze failed)"
}

# ---- the units as shipped ----
install_units "$work/good"
grep -q "^ExecStart=$broker_bin " "$work/good/fanout-broker.service" || fail "fanout-broker.service has no ExecStart=/usr/local/bin/fanout-broker"
grep -q "^ExecStart=$worker_bin " "$work/good/fanout-worker@.service" || fail "fanout-worker@.service has no ExecStart=/usr/local/bin/fanout-worker"
said=$(verify "$work/good")
[[ -z $said ]] || fail "systemd-analyze verify: $said"
problems=$(unit_problems "$work/good/fanout-broker.service" "$broker_bin"; unit_problems "$work/good/fanout-worker@.service" "$worker_bin")
[[ -z $problems ]] || fail "$problems"

# ---- the checks can fail ----
install_units "$work/misspelled"
sed -i 's/^ProtectSystem=strict/ProtectSytem=strict/' "$work/misspelled/fanout-broker.service"
said=$(verify "$work/misspelled")
[[ $said == *"Unknown key"*ProtectSytem* ]] || fail "a misspelled directive went unnoticed: '$said'"
[[ $(unit_problems "$work/misspelled/fanout-broker.service" "$broker_bin") == *"no ProtectSystem=strict"* ]] ||
  fail "the policy did not notice ProtectSystem missing"

install_units "$work/short-stop"
sed -i 's/^TimeoutStopSec=.*/TimeoutStopSec=30s/' "$work/short-stop/fanout-worker@.service"
[[ $(unit_problems "$work/short-stop/fanout-worker@.service" "$worker_bin") == *"does not exceed the drain timeout 30 s"* ]] ||
  fail "a stop timeout equal to the drain timeout went unnoticed"

install_units "$work/bad-flag"
sed -i 's/ --broker-key / --broker-kee /' "$work/bad-flag/fanout-worker@.service"
[[ $(unit_problems "$work/bad-flag/fanout-worker@.service" "$worker_bin") == *"has no option --broker-kee"* ]] ||
  fail "a flag the worker does not take went unnoticed"

echo "systemd test: ok"
