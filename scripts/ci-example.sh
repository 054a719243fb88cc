#!/usr/bin/env bash
# The commands of the example CI (.github/workflows/strata.yml, examples/gitlab-ci.yml), run
# here against the local lab instead of the fleet (inventory/lab.yaml and its key,
# .lab/ssh/id_ed25519), to prove the examples work. The jobs there run the released binary;
# here it is the one built from this tree (or $STRATA_BIN).
#
#   scripts/ci-example.sh pr      the pull-request job: check --validate, then the plan,
#                                 saved with -o as the job does; exit 0 with or without
#                                 changes pending, 1 on an error
#   scripts/ci-example.sh drift   the scheduled job: the plan; exit 2 on drift, as the job
#   scripts/ci-example.sh apply   the pull request's saved plan (plan -o plan.json), then the
#                                 apply job: apply --plan plan.json --yes; exit 0 when it
#                                 applied and a new plan has nothing left to do
#   scripts/ci-example.sh stale   a saved plan refused as stale, nothing applied: (1) a node
#                                 changed after the plan (a hand edit on the first lab node,
#                                 left there: `apply` converges it again); (2) the
#                                 configuration changed after the plan (an override edited
#                                 in a scratch copy of the repo, removed on exit); exit 0
#                                 when both were refused
#
# Needs a running lab (`strata-lab up`, 3 nodes) and, for `pr`, the validators installed
# (prometheus, prometheus-alertmanager, chrony, logrotate, systemd). Connects only to the
# lab's nodes. The markdown plan is appended to $GITHUB_STEP_SUMMARY as in the workflow
# (default: a temp file, printed at the end). Secrets: dummy values unless set in the
# environment.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1

job=${1:-}
case $job in
pr | drift | apply | stale) ;;
*)
    echo "usage: $0 pr|drift|apply|stale" >&2
    exit 64
    ;;
esac

if [[ -z ${STRATA_BIN:-} ]]; then
    cargo build --quiet --bin strata || exit 1
    export STRATA_BIN=$PWD/target/debug/strata # the binary just built
fi
# shellcheck source=scripts/lab-common.sh
source scripts/lab-common.sh # BIN, INV=inventory/lab.yaml, dummy secrets, load_lab_nodes
load_lab_nodes               # refuses any address that is not a lab node's
[[ -f .lab/ssh/id_ed25519 && -s .lab/known_hosts ]] || {
    echo "error: no lab key or known_hosts (.lab/): run \`strata-lab up\` first" >&2
    exit 1
}

summary=${GITHUB_STEP_SUMMARY:-$(mktemp)}
work=$(mktemp -d)
scratch=
trap 'rm -rf "$work" ${scratch:+"$scratch"}; [[ -n ${GITHUB_STEP_SUMMARY:-} ]] || rm -f "$summary"' EXIT
show_summary() {
    if [[ -z ${GITHUB_STEP_SUMMARY:-} ]]; then
        echo "--- job summary (markdown)"
        cat "$summary"
    fi
}

if [[ $job == pr ]]; then
    echo "::: strata check --validate"
    strata --inventory "$INV" check --validate || exit $?

    echo "::: strata plan -o plan.json (pull request)"
    code=0
    strata --inventory "$INV" plan --format markdown --detailed-exitcode -o "$work/plan.json" \
        >"$work/plan.md" || code=$?
    cat "$work/plan.md" >>"$summary"
    show_summary
    case $code in
    0) echo "no changes: the fleet matches this branch" ;;
    2) echo "changes pending: see the job summary (merging and applying makes them)" ;;
    *)
        echo "error: strata plan failed (exit $code)" >&2
        exit "$code"
        ;;
    esac
    exit 0
fi

# saved_plan DIR [STRATA_ARGS...]: the pull request job's plan, saved as DIR/plan.json (its
# markdown appended to the summary); stops the script unless plan exits 0 or 2.
saved_plan() {
    local dir=$1 code=0
    shift
    strata "$@" --inventory "$INV" plan --format markdown --detailed-exitcode -o "$dir/plan.json" \
        >"$dir/plan.md" || code=$?
    cat "$dir/plan.md" >>"$summary"
    if [[ $code -ne 0 && $code -ne 2 ]]; then
        echo "error: strata plan failed (exit $code)" >&2
        exit 1
    fi
}

# expect_stale WHY LOG: the apply whose output is LOG exited 1 and said the saved plan is
# stale because of WHY.
expect_stale() {
    local why=$1 log=$2 code=$3
    cat "$log"
    if [[ $code -ne 1 ]] || ! grep -q 'the saved plan is stale, nothing was applied' "$log" \
        || ! grep -q "$why" "$log"; then
        echo "error: the stale plan was not refused as expected (exit $code, wanted 1 and \"$why\")" >&2
        exit 1
    fi
    echo "(refused, exit 1, as expected)"
}

lab_ssh() { # lab_ssh ADDRESS COMMAND: root on a lab node, the lab's key, strict host keys
    ssh -i .lab/ssh/id_ed25519 -o IdentitiesOnly=yes -o BatchMode=yes -o ConnectTimeout=10 \
        -o UserKnownHostsFile=.lab/known_hosts -o StrictHostKeyChecking=yes "root@$1" "$2"
}

if [[ $job == apply ]]; then
    echo "::: strata plan -o plan.json (pull request job: the plan it keeps as an artifact)"
    saved_plan "$work"
    echo "::: strata apply --plan plan.json --yes (apply job, after the approval)"
    code=0
    strata --inventory "$INV" apply --plan "$work/plan.json" --yes || code=$?
    show_summary
    if [[ $code -ne 0 ]]; then
        echo "error: strata apply --plan failed (exit $code)" >&2
        exit "$code"
    fi
    echo "::: strata plan --detailed-exitcode (the applied fleet: expect exit 0)"
    code=0
    strata --inventory "$INV" plan --detailed-exitcode >"$work/after.txt" || code=$?
    if [[ $code -ne 0 ]]; then
        cat "$work/after.txt"
        echo "error: after applying the saved plan, plan exits $code, not 0" >&2
        exit 1
    fi
    echo "no changes left"
    exit 0
fi

if [[ $job == stale ]]; then
    node=${NAMES[0]} addr=${ADDRS[0]}
    echo "::: (1) a node changed after the plan: saved plan, hand edit on $node, apply --plan"
    mkdir "$work/node"
    saved_plan "$work/node"
    mark="# hand edit by scripts/ci-example.sh stale $$"
    lab_ssh "$addr" "echo '$mark' >> /etc/chrony/chrony.conf" || exit 1
    code=0
    strata --inventory "$INV" apply --plan "$work/node/plan.json" --yes >"$work/node/apply.log" 2>&1 || code=$?
    expect_stale "$node: the node changed since the plan was saved" "$work/node/apply.log" "$code"
    # Nothing was applied: the hand edit is still there.
    lab_ssh "$addr" "grep -qxF '$mark' /etc/chrony/chrony.conf" || {
        echo "error: the hand edit on $node is gone: something was applied" >&2
        exit 1
    }
    echo "$node still has the hand edit (\`scripts/ci-example.sh apply\` converges it again)"

    echo "::: (2) the configuration changed after the plan: saved plan, an override edited, apply --plan"
    scratch=$(mktemp -d -t strata-ci-example.XXXXXX)
    cp -a inventory base-config nodes modules "$scratch/"
    ln -s "$PWD/.lab" "$scratch/.lab"
    mkdir "$work/config"
    saved_plan "$work/config" --repo "$scratch"
    override=$scratch/nodes/validator-1/vars.yaml
    sed -i 's/^  memory_max: 100G$/  memory_max: 99G/' "$override"
    grep -q '^  memory_max: 99G$' "$override" || {
        echo "error: $override has no 'memory_max: 100G' to change" >&2
        exit 1
    }
    code=0
    strata --repo "$scratch" --inventory "$INV" apply --plan "$work/config/plan.json" --yes \
        >"$work/config/apply.log" 2>&1 || code=$?
    expect_stale "validator-1: the configuration changed since the plan was saved" "$work/config/apply.log" "$code"
    show_summary
    exit 0
fi

echo "::: strata plan (drift)"
code=0
strata --inventory "$INV" plan --format markdown --detailed-exitcode >"$work/summary.md" || code=$?
cat "$work/summary.md" >>"$summary"
show_summary
exit "$code"
