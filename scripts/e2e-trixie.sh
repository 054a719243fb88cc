#!/usr/bin/env bash
# The whole end-to-end suite on Debian 13 (trixie) lab nodes, too long for CI (which runs it
# on bookworm and only the trixie:: cases on trixie):
#
#   scripts/e2e-trixie.sh [trixie|mixed] [FILTER]   (default trixie, every case)
#
# `mixed`: validator-2 trixie, validator-1 and -3 bookworm (`strata-lab up --release mixed`).
# Cases that ask for a release of their own (the trixie:: ones) still get it. Prints the
# harness's summary line and how long the run took.
#
# Takes the lab lock (/tmp/strata-lab.lock) for the whole run; the e2e harness brings the
# lab up and, if it did, takes it down again. Connects only to the lab's own nodes.
set -euo pipefail
cd "$(dirname "$0")/.."

release=${1:-trixie}
case $release in
    trixie | mixed) ;;
    *) echo "usage: $0 [trixie|mixed] [FILTER]" >&2; exit 1 ;;
esac
export STRATA_E2E_RELEASE=$release
log=$(mktemp)
trap 'rm -f "$log"' EXIT
start=$(date +%s)
set +e
flock /tmp/strata-lab.lock cargo test --test e2e -- ${2:+"$2"} 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
set -e
echo "e2e-trixie ($release): $(grep -o 'test result: .*; [0-9]* filtered out' "$log" | tail -n 1) in $(( $(date +%s) - start ))s"
exit "$rc"
