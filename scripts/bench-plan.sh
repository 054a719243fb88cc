#!/usr/bin/env bash
# How close is `strata plan` to the floor of what any agentless tool must pay?
#
#   sudo scripts/bench-plan.sh N        (N lab nodes, default 3; RUNS=5 runs each)
#
# Brings the lab to N nodes (`strata-lab up --nodes N`: running nodes are left alone, nodes
# beyond N are stopped), then prints side by side min / median / max of RUNS runs, strata and
# its floor interleaved (run after run) so that both see the same load on a shared machine:
#   (a) `strata --inventory inventory/lab.yaml plan` (render, one SSH round trip per node
#       to gather live state, diff, report);
#   (b) the floor: for every node at once, a fresh `ssh` connection (the lab's key and
#       known_hosts, BatchMode, no connection sharing) running `cat` of the files strata
#       manages on that node (their paths from `strata render --out`);
#   (c) warm: `strata plan` with `ssh.persist: 300` (masters kept from the previous run);
#   (d) its floor: the same `cat` over a kept master per node (`ssh -S`);
#   (e) the same reads as strata, warm: strata's own probe script (`strata probe-script`)
#       over a kept master per node;
#   (f) the same reads, fresh: that probe script over a fresh plain `ssh` per node, so (a)/(f)
#       is what strata itself adds to the reads it needs (render, diff, report, processes);
# and the ratios of the medians (a)/(b), (a)/(f), (c)/(d), (c)/(e). Above 10 nodes, (a) and (c) also with
# `--parallel N` (plan gathers 10 nodes at once by default; the floors have no bound).
# Connects only to the lab's own nodes (10.77.<i>.2).
# Functions below run through time_into (indirectly): shellcheck cannot see those calls.
# shellcheck disable=SC2317
set -euo pipefail
cd "$(dirname "$0")/.."

N=${1:-3}
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

TMP=$(mktemp -d -t strata-bench-plan.XXXXXX)
# The same inventory with warm connections (ssh.persist), beside the lab's.
WARM_INV=inventory/.bench-warm.yaml
sed 's/^  ssh:$/  ssh:\n    persist: 300/' "$INV" >"$WARM_INV"
cleanup() {
    STRATA_SSH_PERSIST=1 strata ssh close >/dev/null 2>&1 || true
    for s in "$TMP"/m-*; do [[ -S $s ]] && ssh -S "$s" -O exit x >/dev/null 2>&1; done
    rm -rf "$TMP" "$WARM_INV" "$BENCH_RUN" # the rendered files include the (dummy) secrets: do not keep them
}
trap cleanup EXIT

# The files strata manages on each node: the dest paths of its rendered files.
strata --inventory "$INV" render --out "$TMP/rendered" >/dev/null
declare -A FILES
nfiles=0
for name in "${NAMES[@]}"; do
    list=$(cd "$TMP/rendered/$name" && find . -type f | sed 's|^\.||' | sort | tr '\n' ' ')
    FILES[$name]=$list
    nfiles=$(wc -w <<<"$list")
done

SSH_OPTS=(-i .lab/ssh/id_ed25519 -o IdentitiesOnly=yes -o BatchMode=yes
    -o UserKnownHostsFile=.lab/known_hosts -o StrictHostKeyChecking=yes
    -o ConnectTimeout=10 -o ControlMaster=no -o ControlPath=none -l root)

# One floor round: every node at once, a fresh connection each, cat of its managed files
# (missing ones are skipped: a fresh node does not have them yet).
floor_once() {
    local i pids=() rc=0
    for i in "${!NAMES[@]}"; do
        # shellcheck disable=SC2029 # the file list is meant to expand here, on the client
        ssh "${SSH_OPTS[@]}" "${ADDRS[$i]}" "cat -- ${FILES[${NAMES[$i]}]} 2>/dev/null; exit 0" >/dev/null &
        pids+=($!)
    done
    for i in "${pids[@]}"; do wait "$i" || rc=1; done
    return "$rc"
}

# The kept-connection floor: one master per node, then cat over it, all nodes at once.
open_masters() {
    local i
    for i in "${!NAMES[@]}"; do
        ssh -i .lab/ssh/id_ed25519 -o IdentitiesOnly=yes -o BatchMode=yes \
            -o UserKnownHostsFile=.lab/known_hosts -o StrictHostKeyChecking=yes -o ConnectTimeout=10 \
            -o ControlMaster=yes -o ControlPath="$TMP/m-$i" -o ControlPersist=600 -l root -fN "${ADDRS[$i]}"
    done
}
kept_once() {
    local i pids=() rc=0
    for i in "${!NAMES[@]}"; do
        # shellcheck disable=SC2029 # the file list is meant to expand here, on the client
        ssh -o ControlPath="$TMP/m-$i" -o BatchMode=yes "${ADDRS[$i]}" "cat -- ${FILES[${NAMES[$i]}]} 2>/dev/null; exit 0" >/dev/null &
        pids+=($!)
    done
    for i in "${pids[@]}"; do wait "$i" || rc=1; done
    return "$rc"
}

# The probe of each node (read-only), for (e) and (f).
for name in "${NAMES[@]}"; do strata --inventory "$INV" probe-script "$name" >"$TMP/probe-$name.sh"; done
probe_fresh_once() {
    local i pids=() rc=0
    for i in "${!NAMES[@]}"; do
        ssh "${SSH_OPTS[@]}" "${ADDRS[$i]}" sh -s <"$TMP/probe-${NAMES[$i]}.sh" >/dev/null &
        pids+=($!)
    done
    for i in "${pids[@]}"; do wait "$i" || rc=1; done
    return "$rc"
}
probe_kept_once() {
    local i pids=() rc=0
    for i in "${!NAMES[@]}"; do
        ssh -o ControlPath="$TMP/m-$i" -o BatchMode=yes "${ADDRS[$i]}" sh -s <"$TMP/probe-${NAMES[$i]}.sh" >/dev/null &
        pids+=($!)
    done
    for i in "${pids[@]}"; do wait "$i" || rc=1; done
    return "$rc"
}

echo "binary: $BIN"
echo "lab:    $N nodes (${NAMES[0]}..${NAMES[N - 1]}), $nfiles managed files per node, $RUNS runs each (after 1 warm-up)"
echo "load:   $(load) (1, 5, 15 min) at start"
PAR=()
((N > 10)) && PAR=(--parallel "$N")

# Warm-up (page caches on both ends), not counted.
strata --inventory "$INV" plan >/dev/null 2>&1 || true
floor_once || true

for _ in $(seq 1 "$RUNS"); do
    time_into "$TMP/plan" strata --inventory "$INV" plan
    time_into "$TMP/floor" floor_once
    time_into "$TMP/probe_fresh" probe_fresh_once
    ((N > 10)) && time_into "$TMP/plan_par" strata --inventory "$INV" plan "${PAR[@]}"
done
open_masters
STRATA_SSH_PERSIST=1 strata --inventory "$WARM_INV" plan "${PAR[@]}" >/dev/null 2>&1 || true
kept_once || true
for _ in $(seq 1 "$RUNS"); do
    time_into "$TMP/warm" env STRATA_SSH_PERSIST=1 "$BIN" --inventory "$WARM_INV" plan
    time_into "$TMP/kept" kept_once
    time_into "$TMP/probe" probe_kept_once
    ((N > 10)) && time_into "$TMP/warm_par" env STRATA_SSH_PERSIST=1 "$BIN" --inventory "$WARM_INV" plan "${PAR[@]}"
done
echo "load:   $(load) (1, 5, 15 min) at end"

stat_header
stat_row "(a) strata plan" "$TMP/plan"
((N > 10)) && stat_row "(a') strata plan --parallel $N" "$TMP/plan_par"
stat_row "(b) floor: parallel fresh ssh + cat, $nfiles files" "$TMP/floor"
stat_row "(f) floor: strata's probe script over parallel fresh ssh" "$TMP/probe_fresh"
stat_row "(c) strata plan, warm (ssh.persist)" "$TMP/warm"
((N > 10)) && stat_row "(c') strata plan, warm, --parallel $N" "$TMP/warm_par"
stat_row "(d) floor: cat over a kept master per node" "$TMP/kept"
stat_row "(e) strata's probe script over a kept master per node" "$TMP/probe"
echo
ratio "ratio (a)/(b)" "$TMP/plan" "$TMP/floor"
((N > 10)) && ratio "ratio (a')/(b)" "$TMP/plan_par" "$TMP/floor"
ratio "ratio (a)/(f)" "$TMP/plan" "$TMP/probe_fresh"
((N > 10)) && ratio "ratio (a')/(f)" "$TMP/plan_par" "$TMP/probe_fresh"
ratio "ratio (c)/(d)" "$TMP/warm" "$TMP/kept"
((N > 10)) && ratio "ratio (c')/(d)" "$TMP/warm_par" "$TMP/kept"
ratio "ratio (c)/(e)" "$TMP/warm" "$TMP/probe"
exit 0
