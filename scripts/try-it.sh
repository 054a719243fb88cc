#!/usr/bin/env bash
# strata in five minutes, on real Debian nodes booted on this machine (the lab).
#
#   sudo scripts/try-it.sh
#
# Builds strata, boots a 3-node lab (validator-1..3 at 10.77.{1,2,3}.2, see `strata-lab`),
# plans and applies the whole configuration, shows that a second plan has nothing to do,
# then edits validator-2 by hand and shows that the plan finds exactly that drift. Last, it
# boots a bare validator-4 (a fresh provider host: root by key, password login on, none of
# the packages) and bootstraps it with `node add` + `bootstrap` in a scratch copy of the
# repo (your inventory and nodes/ are not touched), removed when the script ends
# (TRY_IT_KEEP=1 keeps it; a failed run keeps it and says where).
# The step headers are the README's try-it list, word for word (scripts/check-ci.sh checks).
# Colour only when stdout is a terminal and NO_COLOR is unset or empty.
# Needs root (the lab mounts overlayfs and runs systemd-nspawn), Debian's debootstrap,
# systemd-container, dpkg-dev, openssh-client, iproute2 and python3 packages, and the Rust
# toolchain. The first run builds the lab's base image (about 70 s, cached in
# /var/cache/strata-lab); later runs boot in seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ -t 1 && -z ${NO_COLOR:-} ]]; then
    bold=$'\033[1m' plain=$'\033[0m'
else
    bold='' plain=''
fi
step=0
steps=12
header() {
    step=$((step + 1))
    printf '\n%s==> %d/%d. %s%s\n' "$bold" "$step" "$steps" "$*" "$plain"
}

# Run a command that is expected to exit with a given code (plan --detailed-exitcode exits 2
# when there are changes); any other exit code stops the script.
expect_exit() {
    local want=$1 rc=0
    shift
    "$@" || rc=$?
    if [[ $rc -ne $want ]]; then
        echo "try-it: expected exit code $want from \`$*\`, got $rc" >&2
        exit 1
    fi
    echo "(exit code $rc, as expected)"
}

if [[ $(id -u) -ne 0 ]]; then
    echo "try-it: run as root (sudo scripts/try-it.sh): the lab mounts overlayfs and runs systemd-nspawn" >&2
    exit 1
fi
# sudo's secure_path usually drops ~/.cargo/bin: use the invoking user's toolchain.
if ! command -v cargo >/dev/null 2>&1 && [[ -n ${SUDO_USER:-} ]]; then
    user_home=$(getent passwd "$SUDO_USER" | cut -d: -f6)
    PATH="$user_home/.cargo/bin:$PATH"
fi
command -v cargo >/dev/null 2>&1 || { echo "try-it: cargo not found (install Rust: https://rustup.rs)" >&2; exit 1; }

bin=$PWD/target/debug/strata
lab=$PWD/target/debug/strata-lab # the lab: test tooling, its own binary
strata() { "$bin" "$@"; }
strata-lab() { "$lab" "$@"; }
lab_ssh() { # lab_ssh NODE_ADDRESS COMMAND: the lab's key, its known_hosts, strict host keys
    ssh -i .lab/ssh/id_ed25519 -o IdentitiesOnly=yes -o BatchMode=yes \
        -o UserKnownHostsFile=.lab/known_hosts -o StrictHostKeyChecking=yes \
        "root@$1" "$2"
}
INV=inventory/lab.yaml

header "Build strata and the lab (cargo build --workspace)"
cargo build --workspace

header "Boot the lab: 3 Debian nodes with systemd and sshd (strata-lab up --nodes 3)"
strata-lab up --nodes 3

header "Secrets come from the environment (dummy values here); they never appear in output"
export STRATA_TELEGRAM_BOT_TOKEN=try-it-telegram-bot-token
export STRATA_DISCORD_WEBHOOK_URL=https://discord.invalid/api/webhooks/try-it
export STRATA_SMTP_PASSWORD=try-it-smtp-password
export STRATA_PAGERDUTY_ROUTING_KEY=try-it-pagerduty-routing-key
export STRATA_HEARTBEAT_URL=https://heartbeat.invalid/ping/try-it
echo "STRATA_TELEGRAM_BOT_TOKEN, STRATA_DISCORD_WEBHOOK_URL, STRATA_SMTP_PASSWORD, STRATA_PAGERDUTY_ROUTING_KEY, STRATA_HEARTBEAT_URL exported"

header "Plan: what strata would change on each node (strata --inventory inventory/lab.yaml plan)"
strata --inventory "$INV" plan

header "Apply, one validator at a time, each behind its health gate (strata --inventory inventory/lab.yaml apply --yes)"
mkdir -p .strata
log=.strata/try-it-apply.log
# apply prints the plan again first; show its summary here, the whole output is in the log.
strata --inventory "$INV" apply --yes >"$log" 2>&1 || { cat "$log"; exit 1; }
sed -n '/^No changes\|^Apply summary:/,$p' "$log"
echo "(full output: $log; on-node record: /var/lib/strata/state.json; audit log: .strata/audit.jsonl)"

header "Plan again: nothing to do (plan --detailed-exitcode, expect exit 0)"
expect_exit 0 strata --inventory "$INV" plan --detailed-exitcode

header "Hand edit on validator-2: append a line to chrony.conf, chmod 600 the logrotate file"
lab_ssh 10.77.2.2 'echo "# hand edit by scripts/try-it.sh" >> /etc/chrony/chrony.conf && chmod 600 /etc/logrotate.d/monad'
echo "done (over ssh to root@10.77.2.2)"

header "Plan validator-2: exactly that drift (plan --detailed-exitcode validator-2, expect exit 2)"
expect_exit 2 strata --inventory "$INV" plan --detailed-exitcode validator-2

header "A fresh host: boot a bare validator-4 (strata-lab add validator-4 --bare)"
node_root() { # the node's root directory on this machine, from the lab's state (empty if none)
    python3 -c 'import json; print("".join(n["root"] for n in json.load(open(".lab/state.json"))["nodes"] if n["name"] == "validator-4"))'
}
if [[ -n $(node_root) ]]; then
    strata-lab reset validator-4
else
    strata-lab add validator-4 --bare
fi
root=$(node_root)
fp=$(ssh-keygen -lf "$root/etc/ssh/ssh_host_ed25519_key.pub" | cut -d' ' -f2)
echo "its host key, as a provider's console would show it: $fp"

header "Add it to a scratch copy of the repo (strata node add validator-4 ... --user deploy)"
scratch=$(mktemp -d -t strata-try-it.XXXXXX)
# The scratch repo goes when the script ends, unless kept (TRY_IT_KEEP=1) or the run failed.
cleanup() {
    local rc=$?
    if [[ $rc -eq 0 && -z ${TRY_IT_KEEP:-} ]]; then
        rm -rf "$scratch"
    else
        echo "try-it: the scratch repo (inventory with validator-4) is left in $scratch; rm -rf it when done" >&2
    fi
}
trap cleanup EXIT
cp -a inventory base-config nodes modules "$scratch/"
ln -s "$PWD/.lab" "$scratch/.lab"
cp .lab/known_hosts "$scratch/known_hosts"
sed -i 's#known_hosts: .lab/known_hosts#known_hosts: known_hosts#' "$scratch/$INV"
strata --repo "$scratch" --inventory "$INV" node add validator-4 --address 10.77.4.2 \
    --region lab-d --provider nspawn --user deploy

header "Bootstrap it: pin the host key, preflight, deploy user, sshd hardening, root login off, apply"
log=.strata/try-it-bootstrap.log
strata --repo "$scratch" --inventory "$INV" bootstrap validator-4 --host-key "$fp" --yes >"$log" 2>&1 \
    || { cat "$log"; exit 1; }
# Not bootstrap's own "Review and apply them with: strata plan ..." line: pasted, it would
# miss the scratch repo's --repo and --inventory.
grep -E '^bootstrap \[|^Apply summary:|^  validator-4: |^Apply: |pending changes' "$log" || true
echo "(the other validators are pending in the scratch repo: their configs now list validator-4)"
echo "(full output: $log)"

header "Root login is now refused on validator-4; the deploy user gets in"
if ssh -i .lab/ssh/id_ed25519 -o IdentitiesOnly=yes -o BatchMode=yes -o ConnectTimeout=5 \
    -o UserKnownHostsFile="$scratch/known_hosts" root@10.77.4.2 true 2>/dev/null; then
    echo "try-it: root login still works on validator-4" >&2
    exit 1
fi
echo "root@10.77.4.2: refused"
ssh -i .lab/ssh/id_ed25519 -o IdentitiesOnly=yes -o BatchMode=yes \
    -o UserKnownHostsFile="$scratch/known_hosts" deploy@10.77.4.2 \
    'echo "deploy@$(hostname): sudo -> $(sudo -n id -un), monad-validator $(systemctl is-active monad-validator)"'

# Closing hints: absolute paths, and the lab's --repo and --inventory, so that a pasted
# command targets the lab, never the example fleet's inventory/hosts.yaml.
repo=$PWD
printf '\nDone. The lab keeps running (validator-1..3, and validator-4, bootstrapped).\n'
printf 'To undo the hand edit on validator-2 (with the three STRATA_* variables exported):\n'
printf '  sudo -E %q --repo %q --inventory %q apply --yes validator-2\n' "$bin" "$repo" "$INV"
if [[ -n ${TRY_IT_KEEP:-} ]]; then
    printf 'To review and apply what validator-4 changed on the others (kept scratch repo):\n'
    printf '  sudo -E %q --repo %q --inventory %q plan validator-1 validator-2 validator-3\n' "$bin" "$scratch" "$INV"
    printf '  sudo -E %q --repo %q --inventory %q apply validator-1 validator-2 validator-3\n' "$bin" "$scratch" "$INV"
fi
printf 'To stop the lab (every node, validator-4 included):\n'
printf '  sudo %q --repo %q down\n' "$lab" "$repo"
