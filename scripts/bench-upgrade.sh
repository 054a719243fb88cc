#!/usr/bin/env bash
# Time a rolling validator upgrade on the lab, side by side with a plain apply of the same
# nodes that restarts every validator too (a unit setting changed, no new release).
#
#   sudo scripts/bench-upgrade.sh N     (N lab nodes, default 3; RUNS=2 rounds: 2 upgrades and 2 plain applies each)
#
# On a copy of this repo: converge the lab on release 0.9.3 (modules/validator/lab-releases, pushed over
# SSH, as the lab inventory says), then alternately upgrade 0.9.3 -> 0.9.4 and back, and
# apply a RestartSec change and back. Both are serial 1, no canary or soak: each node is
# restarted and passes its health gate (the upgrade's also checks the reported version)
# before the next starts. Connects only to the lab's own nodes (10.77.<i>.2).
set -euo pipefail
cd "$(dirname "$0")/.."

N=${1:-3}
RUNS=${RUNS:-2}
[[ $N =~ ^([1-9][0-9]?|100)$ ]] || { echo "usage: $0 N   (1..100 lab nodes)" >&2; exit 1; }
# shellcheck source=scripts/lab-common.sh
source scripts/lab-common.sh
require_root

lab_up "$N"
load_lab_nodes
settle
REPO=$(mktemp -d -t strata-bench-upgrade.XXXXXX)
TMP=$(mktemp -d -t strata-bench-upgrade-times.XXXXXX)
trap 'rm -rf "$REPO" "$TMP" "$BENCH_RUN"' EXIT
# The repo copy: everything strata reads, and the lab's key and known_hosts.
cp -a inventory base-config nodes modules .lab "$REPO"/
st() { strata --repo "$REPO" --inventory "$INV" "$@"; }
V3=$(sha256sum modules/validator/lab-releases/monad-validator-0.9.3 | cut -d' ' -f1)
V4=$(sha256sum modules/validator/lab-releases/monad-validator-0.9.4 | cut -d' ' -f1)
pin() { # version sha
    sed -i -E "s/^    version: \"[^\"]+\"/    version: \"$1\"/; s/^      sha256: \"[0-9a-f]{64}\"/      sha256: \"$2\"/" "$REPO/base-config/vars.yaml"
}
restart_sec() { sed -i -E "s/^    restart_sec: [0-9]+/    restart_sec: $1/" "$REPO/base-config/vars.yaml"; }

echo "binary: $BIN"
echo "lab:    $N nodes; converging on release 0.9.3 ..."
echo "load:   $(load) (1, 5, 15 min) at start"
pin 0.9.3 "$V3"
st apply --yes >"$TMP/converge.out" 2>&1 || { tail -n 40 "$TMP/converge.out" >&2; echo "error: the converging apply failed" >&2; exit 1; }
st plan --detailed-exitcode >/dev/null || { echo "error: not converged" >&2; exit 1; }
for _ in $(seq 1 "$RUNS"); do
    # Interleaved, so that both see the same load.
    pin 0.9.4 "$V4"; time_into "$TMP/upgrade" st apply --yes
    restart_sec 7; time_into "$TMP/plain" st apply --yes
    pin 0.9.3 "$V3"; time_into "$TMP/upgrade" st apply --yes
    restart_sec 10; time_into "$TMP/plain" st apply --yes
done

echo "load:   $(load) (1, 5, 15 min) at end"

stat_header
stat_row "rolling upgrade 0.9.3 <-> 0.9.4, $N nodes, serial 1, no soak" "$TMP/upgrade"
stat_row "plain apply restarting every validator, serial 1" "$TMP/plain"
echo
ratio "upgrade / plain apply" "$TMP/upgrade" "$TMP/plain"
