#!/usr/bin/env bash
# Where one node's apply time goes: the per-step times of `strata -v --log-format json apply`
# on one lab node, from fresh and as a no-op, min/median/max over RUNS runs.
#
#   sudo flock /tmp/strata-lab.lock scripts/apply-steps.sh [NODE]   (default validator-1; RUNS=3)
#
# Brings the lab to 3 nodes (the example's node overrides name validator-1..3), resets NODE
# before each fresh run (not timed) and applies NODE alone. Connects only to the lab's nodes.
set -euo pipefail
cd "$(dirname "$0")/.."

NODE=${1:-validator-1}
RUNS=${RUNS:-3}
[[ $NODE =~ ^validator-[1-3]$ ]] || { echo "usage: $0 [validator-1|2|3]" >&2; exit 1; }
command -v jq >/dev/null || { echo "error: jq is needed" >&2; exit 1; }
# shellcheck source=scripts/lab-common.sh
source scripts/lab-common.sh
require_root

lab_up 3 >/dev/null
TMP=$(mktemp -d -t strata-apply-steps.XXXXXX)
trap 'rm -rf "$TMP" "$BENCH_RUN"' EXIT

# run KIND: one apply of NODE, its log's `done` lines appended to $TMP/KIND as "step ms".
run() {
    local kind=$1 t0 t1
    t0=$(now_ns)
    strata --inventory "$INV" -v --log-format json apply --yes "$NODE" >/dev/null 2>"$TMP/log"
    t1=$(now_ns)
    jq -r 'select(.message == "done" and .step != null) | "\(.step)\t\(.elapsed_ms)"' "$TMP/log" >>"$TMP/$kind"
    printf 'whole command\t%d\n' $(((t1 - t0) / 1000000)) >>"$TMP/$kind"
}

for r in $(seq 1 "$RUNS"); do
    echo "fresh run $r/$RUNS ..." >&2
    strata-lab reset "$NODE" >/dev/null
    run fresh
done
for r in $(seq 1 "$RUNS"); do
    echo "no-op run $r/$RUNS ..." >&2
    run noop
done

# table KIND: per step (in order of first appearance) min / median / max in ms.
table() {
    awk -F'\t' '
        !($1 in n) { order[++k] = $1 }
        { n[$1]++; v[$1, n[$1]] = $2 }
        END {
            for (i = 1; i <= k; i++) {
                s = order[i]; c = n[s]
                for (a = 1; a <= c; a++) x[a] = v[s, a]
                for (a = 1; a <= c; a++) for (b = a + 1; b <= c; b++) if (x[b] < x[a]) { t = x[a]; x[a] = x[b]; x[b] = t }
                printf "| %-38s | %6d | %6d | %6d |\n", s, x[1], x[int((c + 1) / 2)], x[c]
            }
        }' "$TMP/$1"
}
for kind in fresh noop; do
    printf '\n%s apply of %s (%s runs), ms:\n' "$([[ $kind == fresh ]] && echo Fresh || echo No-op)" "$NODE" "$RUNS"
    printf '| %-38s | %6s | %6s | %6s |\n|---|---:|---:|---:|\n' step min median max
    table "$kind"
done
