#!/usr/bin/env bash
# Time `strata apply` on the lab: from fresh nodes, and as a no-op on converged ones, plus
# `strata plan` on the same converged nodes.
#
#   sudo scripts/bench-apply.sh N     (N lab nodes, default 3; FRESH_RUNS=3, RUNS=5)
#
# Brings the lab to N nodes (`strata-lab up --nodes N`). Each fresh run first returns every
# node to its fresh state with `strata-lab reset` (not timed), then times `apply --yes`.
# The validators group has serial: 1, so a fresh apply changes one node at a time, each
# behind its health gate: expect the fresh figure to grow with N. Side by side, on the same
# fresh nodes: strata with every node in one batch (serial N), and the apply floor: a plain
# ssh per node, all at once, making the same changes (scripts/apply-floor.py: packages,
# users, directories, files, ufw rules, enables and starts, handlers; no staging, validation,
# backups, lock, guard, health gate or record). Connects only to the lab's own nodes
# (10.77.<i>.2).
set -euo pipefail
cd "$(dirname "$0")/.."

N=${1:-3}
FRESH_RUNS=${FRESH_RUNS:-3}
RUNS=${RUNS:-5}
[[ $N =~ ^([1-9][0-9]?|100)$ ]] || { echo "usage: $0 N   (1..100 lab nodes)" >&2; exit 1; }
# shellcheck source=scripts/lab-common.sh
source scripts/lab-common.sh
require_root

lab_up "$N"
load_lab_nodes
if [[ ${#NAMES[@]} -ne $N ]]; then
    echo "error: $INV lists ${#NAMES[@]} hosts, expected $N" >&2
    exit 1
fi
TMP=$(mktemp -d -t strata-bench-apply.XXXXXX)
ALL_INV=inventory/.bench-all-at-once.yaml
sed -E "s/^    serial: [0-9]+$/    serial: $N/" "$INV" >"$ALL_INV"
trap 'rm -rf "$TMP" "$ALL_INV"' EXIT
SSH_OPTS=(-i .lab/ssh/id_ed25519 -o IdentitiesOnly=yes -o BatchMode=yes
    -o UserKnownHostsFile=.lab/known_hosts -o StrictHostKeyChecking=yes
    -o ConnectTimeout=10 -o ControlMaster=no -o ControlPath=none -l root)
reset_all() {
    for name in "${NAMES[@]}"; do strata-lab reset "$name" >/dev/null; done
}
# The floor: every node's script at once, each over a fresh connection.
floor_once() {
    local i pids=() rc=0
    for i in "${!NAMES[@]}"; do
        [[ -f $TMP/floor/${NAMES[$i]}.sh ]] || continue
        ssh "${SSH_OPTS[@]}" "${ADDRS[$i]}" sh -s <"$TMP/floor/${NAMES[$i]}.sh" >/dev/null &
        pids+=($!)
    done
    for i in "${pids[@]}"; do wait "$i" || rc=1; done
    return $rc
}

echo "binary: $BIN"
echo "lab:    $N nodes (${NAMES[0]}..${NAMES[N - 1]}); $FRESH_RUNS fresh applies, $RUNS no-op applies and plans"

for r in $(seq 1 "$FRESH_RUNS"); do
    echo "fresh run $r/$FRESH_RUNS: resetting $N nodes ..."
    for name in "${NAMES[@]}"; do
        strata-lab reset "$name" >/dev/null
    done
    time_into "$TMP/fresh" strata --inventory "$INV" apply --yes
done

for r in $(seq 1 "$FRESH_RUNS"); do
    echo "fresh run $r/$FRESH_RUNS, all nodes at once and the floor: resetting $N nodes ..."
    reset_all
    if [[ $r -eq 1 ]]; then
        strata --inventory "$INV" plan --format json -o "$TMP/plan.json" >/dev/null || [[ $? -eq 2 ]]
        strata --inventory "$INV" render --out "$TMP/rendered" >/dev/null
        python3 scripts/apply-floor.py "$TMP/plan.json" "$TMP/rendered" "$TMP/floor"
    fi
    time_into "$TMP/floor_t" floor_once
    reset_all
    time_into "$TMP/all" strata --inventory "$ALL_INV" apply --yes
done

# The nodes are now converged (and recorded): apply and plan have nothing to do.
if ! strata --inventory "$INV" plan --detailed-exitcode >/dev/null; then
    echo "error: the lab is not converged after apply; see \`strata --inventory $INV plan\`" >&2
    exit 1
fi
for _ in $(seq 1 "$RUNS"); do
    time_into "$TMP/noop" strata --inventory "$INV" apply --yes
    time_into "$TMP/plan" strata --inventory "$INV" plan
done

row() { printf '%-40s %6s ms %6s ms %6s ms\n' "$1" "$(mean_ms "$2")" "$(min_ms "$2")" "$(max_ms "$2")"; }
printf '\n%-40s %9s %9s %9s\n' "" "mean" "min" "max"
row "apply --yes, from fresh ($FRESH_RUNS runs)" "$TMP/fresh"
row "apply --yes, from fresh, serial $N ($FRESH_RUNS runs)" "$TMP/all"
row "floor: plain ssh, same changes, all at once" "$TMP/floor_t"
row "apply --yes, no-op ($RUNS runs)" "$TMP/noop"
row "plan, converged ($RUNS runs)" "$TMP/plan"
