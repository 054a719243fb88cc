#!/usr/bin/env bash
# Time `strata apply` on the lab: from fresh nodes, side by side with the plain-ssh apply
# floor, and as a no-op on converged ones, side by side with `strata plan`.
#
#   sudo scripts/bench-apply.sh N     (N lab nodes, default 3; FRESH_RUNS=3, SERIAL_RUNS=3, RUNS=5)
#   WATCHERS=3 APPLY_ARGS="--confirm-timeout 120" sudo scripts/bench-apply.sh 30
#
# WATCHERS=W: the first W nodes are the only watchers (a group `watchers`, and
# monitoring.watchers_group: watchers) instead of every node. In the lab inventory every node
# watches every other, so each node's firewall has about 6 rules per node of the fleet (185
# at 30 nodes) and ufw adds one in 0.2-0.3 s: a fresh apply grows with N squared, for strata
# and the floor alike. With 3 watchers: 52 rules at 30 nodes.
#
# Brings the lab to N nodes (`strata-lab up --nodes N`). Before each fresh run every node is
# returned to its fresh state with `strata-lab reset` and has finished booting (not timed).
# Printed, min / median / max:
#   - `apply --yes` from fresh as the example is (SERIAL_RUNS runs; 0 skips it): the
#     validators group has serial: 1, so one node at a time, each behind its health gate;
#     expect it to grow with N;
#   - `apply --yes` from fresh with every node in one batch (serial N, and --parallel N above
#     10 nodes), interleaved run after run with
#   - the apply floor: a plain ssh per node, all at once, over a fresh connection each,
#     making the same changes (scripts/apply-floor.py: packages, users, directories, files,
#     ufw rules, enables and starts, handlers; no staging, validation, backups, lock, guard,
#     health gate or record), its ufw commands in one process of ufw's own code as strata
#     runs them, and the same floor with one `ufw` command a rule (a hand-written script);
#   - `apply --yes` as a no-op on the converged nodes, interleaved with `plan`.
# Connects only to the lab's own nodes (10.77.<i>.2).
# Functions below run through time_into (indirectly): shellcheck cannot see those calls.
# shellcheck disable=SC2317
set -euo pipefail
cd "$(dirname "$0")/.."

N=${1:-3}
FRESH_RUNS=${FRESH_RUNS:-3}
SERIAL_RUNS=${SERIAL_RUNS:-$FRESH_RUNS}
RUNS=${RUNS:-5}
[[ $N =~ ^([1-9][0-9]?|100)$ ]] || { echo "usage: $0 N   (1..100 lab nodes)" >&2; exit 1; }
# shellcheck source=scripts/lab-common.sh
source scripts/lab-common.sh
require_root

lab_up "$N"
load_lab_nodes
settle
if [[ ${#NAMES[@]} -ne $N ]]; then
    echo "error: $INV lists ${#NAMES[@]} hosts, expected $N" >&2
    exit 1
fi
TMP=$(mktemp -d -t strata-bench-apply.XXXXXX)
WATCHERS=${WATCHERS:-}
if [[ -n $WATCHERS ]]; then
    if ! [[ $WATCHERS =~ ^[1-9][0-9]*$ ]] || ((WATCHERS > N)); then
        echo "error: WATCHERS must be 1..$N" >&2
        exit 1
    fi
    W_INV=inventory/.bench-watchers.yaml
    awk -v w="$WATCHERS" '
        /^hosts:$/ { print "  watchers:\n    modules: []\n    vars: {}"; hosts = 1 }
        /^      monitoring:$/ && !hosts { print; print "        watchers_group: watchers"; next }
        hosts && /^  validator-[0-9]+:$/ { i = substr($1, 11) + 0 }
        hosts && /^    groups: \[validators\]$/ && i <= w { print "    groups: [validators, watchers]"; next }
        { print }' "$INV" >"$W_INV"
    INV=$W_INV
fi
ALL_INV=inventory/.bench-all-at-once.yaml
sed -E "s/^    serial: [0-9]+$/    serial: $N/" "$INV" >"$ALL_INV"
trap 'rm -rf "$TMP" "$ALL_INV" "${W_INV:-}" "$BENCH_RUN"' EXIT
strata --inventory "$INV" check >/dev/null
PAR=()
((N > 10)) && PAR=(--parallel "$N")
# APPLY_ARGS: more flags for every timed apply, e.g. "--confirm-timeout 120": with 30 nodes
# on 2 cores the nodes are so loaded that a new SSH connection can take longer than the
# default 30 s window, and the guards then restore their nodes (as designed).
read -r -a EXTRA <<<"${APPLY_ARGS:-}"
AX=("${PAR[@]}" "${EXTRA[@]}")
SSH_OPTS=(-i .lab/ssh/id_ed25519 -o IdentitiesOnly=yes -o BatchMode=yes
    -o UserKnownHostsFile=.lab/known_hosts -o StrictHostKeyChecking=yes
    -o ConnectTimeout=10 -o ControlMaster=no -o ControlPath=none -l root)
# Every node back to fresh, booted in batches (one `strata-lab reset` for all).
reset_all() { strata-lab reset "${NAMES[@]}" >/dev/null && settle; }
# The floor: every node's script at once, each over a fresh connection.
floor_once() { # floor_once DIR: the scripts in DIR (apply-floor.py's output)
    local i pids=() rc=0
    for i in "${!NAMES[@]}"; do
        [[ -f $1/${NAMES[$i]}.sh ]] || continue
        ssh "${SSH_OPTS[@]}" "${ADDRS[$i]}" sh -s <"$1/${NAMES[$i]}.sh" >/dev/null &
        pids+=($!)
    done
    for i in "${pids[@]}"; do wait "$i" || rc=1; done
    return "$rc"
}

echo "binary: $BIN"
echo "lab:    $N nodes (${NAMES[0]}..${NAMES[N - 1]}); $SERIAL_RUNS serial-1 and $FRESH_RUNS all-at-once fresh applies, $RUNS no-op applies and plans"
echo "fleet:  $(strata --inventory "$INV" render "${NAMES[N - 1]}" | grep -o '[0-9]* rules') in ${NAMES[N - 1]}'s firewall${WATCHERS:+ ($WATCHERS watchers)}"
echo "load:   $(load) (1, 5, 15 min) at start"

for r in $(seq 1 "$SERIAL_RUNS"); do
    echo "fresh run $r/$SERIAL_RUNS, serial 1: resetting $N nodes ..."
    reset_all
    time_into "$TMP/fresh" strata --inventory "$INV" apply --yes "${AX[@]}"
done

for r in $(seq 1 "$FRESH_RUNS"); do
    echo "fresh run $r/$FRESH_RUNS, all nodes at once and the floor: resetting $N nodes ..."
    reset_all
    if [[ $r -eq 1 ]]; then
        strata --inventory "$INV" plan --format json -o "$TMP/plan.json" "${PAR[@]}" >/dev/null || [[ $? -eq 2 ]]
        strata --inventory "$INV" render --out "$TMP/rendered" >/dev/null
        python3 scripts/apply-floor.py "$TMP/plan.json" "$TMP/rendered" "$TMP/floor" batch
        python3 scripts/apply-floor.py "$TMP/plan.json" "$TMP/rendered" "$TMP/floor-cli" cli
    fi
    # Which goes first rotates: a node settling after its boot slows whichever runs first.
    order=(strata floor floor-cli)
    for k in 0 1 2; do
        what=${order[$(((k + r) % 3))]}
        ((k == 0)) || reset_all
        case $what in
            strata) time_into "$TMP/all" strata --inventory "$ALL_INV" apply --yes "${AX[@]}" ;;
            floor) time_into "$TMP/floor_t" floor_once "$TMP/floor" ;;
            floor-cli) time_into "$TMP/floor_cli_t" floor_once "$TMP/floor-cli" ;;
        esac
    done
done
# The last fresh run may have ended with a floor (no record, and a state strata's plan
# refused once, not understood yet): back to fresh, then converge with strata.
if ((FRESH_RUNS > 0)) && [[ ${order[$(((2 + FRESH_RUNS) % 3))]} != strata ]]; then reset_all; fi
strata --inventory "$ALL_INV" apply --yes "${AX[@]}" >"$TMP/converge.out" 2>&1 || {
    tail -n 60 "$TMP/converge.out" >&2
    echo "error: the converging apply failed" >&2
    exit 1
}

# The nodes are now converged (and recorded): apply and plan have nothing to do.
if ! strata --inventory "$INV" plan --detailed-exitcode >/dev/null; then
    echo "error: the lab is not converged after apply; see \`strata --inventory $INV plan\`" >&2
    exit 1
fi
for _ in $(seq 1 "$RUNS"); do
    time_into "$TMP/noop" strata --inventory "$INV" apply --yes
    time_into "$TMP/plan" strata --inventory "$INV" plan
done
echo "load:   $(load) (1, 5, 15 min) at end"

stat_header
((SERIAL_RUNS > 0)) && stat_row "apply --yes from fresh, serial 1" "$TMP/fresh"
stat_row "apply --yes from fresh, serial $N ${AX[*]}" "$TMP/all"
stat_row "floor: plain ssh, same changes, all at once" "$TMP/floor_t"
stat_row "floor, its ufw rules one \`ufw\` run each" "$TMP/floor_cli_t"
stat_row "apply --yes, no-op" "$TMP/noop"
stat_row "plan, converged" "$TMP/plan"
echo
ratio "fresh apply (serial $N) / floor" "$TMP/all" "$TMP/floor_t"
ratio "fresh apply (serial $N) / floor, ufw one run a rule" "$TMP/all" "$TMP/floor_cli_t"
ratio "no-op apply / plan" "$TMP/noop" "$TMP/plan"
exit 0
