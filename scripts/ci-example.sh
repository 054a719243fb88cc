#!/usr/bin/env bash
# The commands of .github/workflows/strata.yml, run here against the local lab instead of the
# fleet (inventory/lab.yaml and its key, .lab/ssh/id_ed25519), to prove the example works.
#
#   scripts/ci-example.sh pr      the pull-request job: check --validate, then the plan;
#                                 exit 0 with or without changes pending, 1 on an error
#   scripts/ci-example.sh drift   the scheduled job: the plan; exit 2 on drift, as the job
#
# Needs a running lab (`strata-lab up`) and the validators installed (prometheus,
# prometheus-alertmanager, chrony, logrotate, systemd). Connects only to the lab's nodes.
# The markdown plan is appended to $GITHUB_STEP_SUMMARY as in the workflow (default: a temp
# file, printed at the end). Secrets: dummy values unless set in the environment.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1

job=${1:-}
case $job in
pr | drift) ;;
*)
    echo "usage: $0 pr|drift" >&2
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
trap 'rm -rf "$work"; [[ -n ${GITHUB_STEP_SUMMARY:-} ]] || rm -f "$summary"' EXIT
show_summary() {
    if [[ -z ${GITHUB_STEP_SUMMARY:-} ]]; then
        echo "--- job summary (markdown)"
        cat "$summary"
    fi
}

if [[ $job == pr ]]; then
    echo "::: strata check --validate"
    strata --inventory "$INV" check --validate || exit $?

    echo "::: strata plan (pull request)"
    code=0
    strata --inventory "$INV" plan --format markdown --detailed-exitcode >"$work/plan.md" || code=$?
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

echo "::: strata plan (drift)"
code=0
strata --inventory "$INV" plan --format markdown --detailed-exitcode >"$work/summary.md" || code=$?
cat "$work/summary.md" >>"$summary"
show_summary
exit "$code"
