# shellcheck shell=bash
# Shared by the lab's scripts/bench-*.sh and apply-steps.sh (sourced, not run).
# Benchmarks connect only to the lab's own nodes (10.77.<i>.2), never anywhere else.

BIN=${STRATA_BIN:-}
if [[ -z $BIN ]]; then
    T=${CARGO_TARGET_DIR:-$PWD/target}
    if [[ -x $T/release/strata ]]; then BIN=$T/release/strata; else BIN=$T/debug/strata; fi
fi
[[ -x $BIN ]] || { echo "error: $BIN not found; run \`cargo build\` first" >&2; exit 1; }
INV=inventory/lab.yaml

strata() { "$BIN" "$@"; }
# The lab is its own binary (test tooling), built next to strata by `cargo build --workspace`.
strata-lab() { "$(dirname "$BIN")/strata-lab" "$@"; }

# Kept masters (ssh.persist) of this run only, in a private directory: `strata ssh close` at
# the end never ends another user's or session's.
# (Each script removes it on exit with `rm -rf "$BENCH_RUN"`.)
BENCH_RUN=$(mktemp -d -t strata-bench-run.XXXXXX)
export XDG_RUNTIME_DIR=$BENCH_RUN

# Rendering needs the alertmanager secrets; dummy values are enough for the lab.
export STRATA_TELEGRAM_BOT_TOKEN=${STRATA_TELEGRAM_BOT_TOKEN:-bench-telegram-token}
export STRATA_DISCORD_WEBHOOK_URL=${STRATA_DISCORD_WEBHOOK_URL:-https://discord.invalid/api/webhooks/bench}
export STRATA_SMTP_PASSWORD=${STRATA_SMTP_PASSWORD:-bench-smtp-password}
export STRATA_PAGERDUTY_ROUTING_KEY=${STRATA_PAGERDUTY_ROUTING_KEY:-bench-pagerduty-routing-key}
export STRATA_HEARTBEAT_URL=${STRATA_HEARTBEAT_URL:-https://heartbeat.invalid/ping/bench}

require_root() {
    if [[ $(id -u) -ne 0 ]]; then
        echo "error: run as root: the lab mounts overlayfs and runs systemd-nspawn" >&2
        exit 1
    fi
}

# load_lab_nodes: NAMES[i] and ADDRS[i] for each host of inventory/lab.yaml; refuses any
# address that is not a lab address.
load_lab_nodes() {
    NAMES=()
    ADDRS=()
    local name addr
    while read -r name addr; do
        if [[ ! $addr =~ ^10\.77\.[0-9]{1,3}\.2$ ]]; then
            echo "error: $name has address $addr, not a lab address (10.77.<i>.2); refusing to connect" >&2
            exit 1
        fi
        NAMES+=("$name")
        ADDRS+=("$addr")
    done < <(awk '
        /^hosts:/ { in_hosts = 1; next }
        in_hosts && /^  [a-z0-9.-]+:$/ { name = $1; sub(/:$/, "", name) }
        in_hosts && /^    address: / { print name, $2 }
    ' "$INV")
    if [[ ${#NAMES[@]} -eq 0 ]]; then
        echo "error: no hosts in $INV" >&2
        exit 1
    fi
}

# lab_up N: bring the lab to exactly N nodes (running nodes are left alone; nodes beyond N
# are stopped), then check that the lab inventory renders.
lab_up() {
    strata-lab up --nodes "$1"
    if ! strata --inventory "$INV" check >/dev/null; then
        strata --inventory "$INV" check || true
        echo "error: inventory/lab.yaml does not check (with fewer than 3 lab nodes, nodes/validator-2 and -3 overrides name hosts the lab inventory lacks)" >&2
        exit 1
    fi
}

# settle: wait (at most 180 s) until every node has finished booting (systemd's
# is-system-running --wait), all nodes at once. A node still starting its services changes
# under strata: an apply refuses a node whose live state moved between plan and lock.
settle() {
    local i pids=()
    for i in "${!ADDRS[@]}"; do
        ssh -i .lab/ssh/id_ed25519 -o IdentitiesOnly=yes -o BatchMode=yes \
            -o UserKnownHostsFile=.lab/known_hosts -o StrictHostKeyChecking=yes -o ConnectTimeout=10 \
            -o ControlMaster=no -o ControlPath=none -l root "${ADDRS[$i]}" \
            'timeout 180 systemctl is-system-running --wait >/dev/null 2>&1; true' &
        pids+=($!)
    done
    for i in "${pids[@]}"; do wait "$i" || true; done
}

# now_ns: nanoseconds since the epoch.
now_ns() { date +%s%N; }

# mean_ms FILE: mean of the nanosecond durations in FILE, in ms.
mean_ms() { awk '{ s += $1 } END { printf "%.0f", s / NR / 1e6 }' "$1"; }
# min_ms / max_ms FILE
min_ms() { awk 'NR == 1 || $1 < m { m = $1 } END { printf "%.0f", m / 1e6 }' "$1"; }
max_ms() { awk 'NR == 1 || $1 > m { m = $1 } END { printf "%.0f", m / 1e6 }' "$1"; }

# median_ms FILE: the median (the mean of the middle two for an even count), in ms.
median_ms() { sort -n "$1" | awk '{ v[NR] = $1 } END { m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "%.0f", m / 1e6 }'; }

# stat_header / stat_row LABEL FILE: a table row of min / median / max (ms) and the count.
# The load column: the 1-minute load average's range over the runs (FILE.load).
stat_header() { printf '\n| %-58s | %7s | %7s | %7s | %4s | %-9s |\n|---|---:|---:|---:|---:|---|\n' "" "min ms" "median" "max ms" "runs" "load"; }
stat_row() {
    printf '| %-58s | %7s | %7s | %7s | %4s | %-9s |\n' "$1" "$(min_ms "$2")" "$(median_ms "$2")" "$(max_ms "$2")" "$(wc -l <"$2")" \
        "$(sort -n "$2.load" | sed -n '1p;$p' | paste -sd- -)"
}
# ratio LABEL FILE_A FILE_B: median(A) / median(B).
ratio() { awk -v l="$1" -v a="$(median_ms "$2")" -v b="$(median_ms "$3")" 'BEGIN { printf "%s: %.2fx\n", l, (b > 0 ? a / b : 0) }'; }

# load: the host's load averages (1, 5, 15 min), printed with every run's figures: the
# machine may be shared, and strata and its floor are interleaved so both see the same load.
load() { cut -d' ' -f1-3 /proc/loadavg; }

# time_into FILE CMD...: run CMD (output kept in FILE.out, shown if it fails), append its duration (ns) to FILE and
# the 1-minute load average at its start to FILE.load.
# Stops the script if CMD fails.
time_into() {
    local file=$1 t0 t1 rc=0
    shift
    cut -d' ' -f1 /proc/loadavg >>"$file.load"
    t0=$(now_ns)
    "$@" >"$file.out" 2>&1 || rc=$?
    t1=$(now_ns)
    if [[ $rc -ne 0 ]]; then
        tail -n 40 "$file.out" >&2
        echo "error: \`$*\` failed (exit $rc); its output's end is above" >&2
        exit 1
    fi
    echo $((t1 - t0)) >>"$file"
}
