#!/usr/bin/env bash
# A long run of the drift fuzzer (tests/e2e/fuzz_cases.rs) on the lab's 3 nodes:
#
#   scripts/fuzz-drift.sh [ROUNDS] [SEED]     (default 50 rounds, a fresh seed)
#
# Each round makes 1-5 random hand edits per node (from a catalogue of 41 kinds) and
# checks: the plan lists exactly the edited resources (or refuses the node as the edit
# requires), apply repairs them, the next plan exits 0, nothing outside the managed paths
# changed, no strata temp file is left. The seed is printed first; a failing round says
# its round number and seed (STRATA_FUZZ_SEED=SEED reproduces it). Prints the rounds run.
#
# Takes the lab lock (/tmp/strata-lab.lock) for the whole run; the e2e harness brings the
# lab up and, if it did, takes it down again. Connects only to the lab's own nodes.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${1:-50}
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || { echo "usage: $0 [ROUNDS] [SEED]" >&2; exit 1; }
export STRATA_FUZZ_ROUNDS=$ROUNDS
if [[ $# -ge 2 ]]; then
    [[ $2 =~ ^[0-9]+$ ]] || { echo "error: SEED must be a number" >&2; exit 1; }
    export STRATA_FUZZ_SEED=$2
fi
log=$(mktemp)
trap 'rm -f "$log"' EXIT
start=$(date +%s)
set +e
flock /tmp/strata-lab.lock cargo test --test e2e -- --exact \
    edge::drift_fuzzer_random_hand_edits_planned_exactly_and_repaired 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
set -e
done=$(grep -c '^    round [0-9]* ok' "$log" || true)
echo "fuzz-drift: $done of $ROUNDS rounds passed in $(( $(date +%s) - start ))s ($(grep -o 'seed [0-9]*' "$log" | head -n 1))"
exit "$rc"
