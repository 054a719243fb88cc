#!/usr/bin/env python3
"""Structural checks of the CI examples that no linter knows about (run by scripts/check-ci.sh).

GitHub (.github/workflows/strata.yml, .github/actions/install-strata/action.yml) and GitLab
(examples/gitlab-ci.yml): the three jobs exist with their triggers; strata is the released
binary (installed and sha256-checked, never built); the plan is saved with `plan -o` and
kept as an artifact; apply takes that saved plan (`apply --plan ... --yes`) behind a
protected environment (GitHub: `environment`, GitLab: `when: manual` + `environment`);
secrets reach scripts only as environment variables or files, are never interpolated into
a script's text and never echoed; `set -x` nowhere. Also: scripts/try-it.sh's step headers
are the README's try-it list; and the release workflow's packaging, run on a stand-in
binary, gives archives both install steps accept, while a wrong pin is refused by both. GitLab's scripts (before_script and
script, `!reference`s resolved) and the composite action's script are written out and
checked with `bash -n` and shellcheck (actionlint does that for the workflows' `run:`).

Usage: scripts/check-ci.py [REPO]   (exit 0: all good; 1: each problem printed)
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile

import yaml

REPO = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..")
GH_WORKFLOW = ".github/workflows/strata.yml"
GH_ACTION = ".github/actions/install-strata/action.yml"
GITLAB = "examples/gitlab-ci.yml"
# A command line that runs strata (not prose that names it).
RUNS_STRATA = re.compile(r"(^|[\s;&|(])strata\s+(check|plan|apply|render|vars|status|rollback|bootstrap|node|--\w)")
SECRET_NAMES = (
    "STRATA_SSH_KEY",
    "STRATA_APPLY_SSH_KEY",
    "STRATA_TELEGRAM_BOT_TOKEN",
    "STRATA_DISCORD_WEBHOOK_URL",
    "STRATA_SMTP_PASSWORD",
    "STRATA_PAGERDUTY_ROUTING_KEY",
    "STRATA_HEARTBEAT_URL",
    "STRATA_GITLAB_TOKEN",
)

problems = []


def problem(where, msg):
    problems.append(f"{where}: {msg}")


class Reference(list):
    """GitLab's `!reference [job, key]`."""


class GitLabLoader(yaml.SafeLoader):
    pass


GitLabLoader.add_constructor("!reference", lambda loader, node: Reference(loader.construct_sequence(node)))


def load(path, loader=yaml.SafeLoader):
    with open(os.path.join(REPO, path), encoding="utf-8") as f:
        return yaml.load(f, Loader=loader)


def on(doc):
    # PyYAML reads the key `on` as the boolean True (YAML 1.1).
    return doc.get("on", doc.get(True))


def check_script_text(where, text):
    """Rules for any script text: no tracing, no secret printed."""
    for n, line in enumerate(text.splitlines(), 1):
        code = line.split("#", 1)[0] if not line.lstrip().startswith("printf") else line
        if re.search(r"\bset\s+-[a-zA-Z]*x", code):
            problem(f"{where}:{n}", "`set -x` would print secrets into the log")
        for name in SECRET_NAMES:
            if not re.search(r"\$\{?" + name + r"\b", code):
                continue
            printing = re.search(r"\b(echo|printf|cat)\b", code)
            into_file = re.search(r"(^|[^2&])>\s*(~|/|\"|\$|[A-Za-z])", code)
            if printing and not into_file:
                problem(f"{where}:{n}", f"prints ${name} (into the log?): {line.strip()}")


def shellcheck(where, text):
    with tempfile.NamedTemporaryFile("w", suffix=".sh", delete=False) as f:
        f.write("#!/usr/bin/env bash\n" + text + "\n")
        path = f.name
    try:
        r = subprocess.run(["bash", "-n", path], capture_output=True, text=True)
        if r.returncode != 0:
            problem(where, "bash -n: " + r.stderr.strip().replace(path, "script"))
        if shutil.which("shellcheck"):
            r = subprocess.run(["shellcheck", "-s", "bash", "-f", "gcc", path], capture_output=True, text=True)
            if r.returncode != 0:
                problem(where, "shellcheck:\n  " + r.stdout.strip().replace(path, "script").replace("\n", "\n  "))
        else:
            problem(where, "shellcheck is not installed (apt-get install shellcheck)")
    finally:
        os.unlink(path)


def check_pins(where, env):
    version = str(env.get("STRATA_VERSION", ""))
    if not re.fullmatch(r"\d+\.\d+\.\d+(-[0-9A-Za-z.]+)?", version):
        problem(where, f"STRATA_VERSION {version!r} is not a version")
    lines = [l for l in str(env.get("STRATA_SHA256SUMS", "")).splitlines() if l.strip()]
    names = set()
    for l in lines:
        m = re.fullmatch(r"([0-9a-f]{64})  (strata-(.+)-(x86_64|aarch64)-unknown-linux-musl\.tar\.gz)", l.strip())
        if not m:
            problem(where, f"STRATA_SHA256SUMS line is not `<sha256>  strata-VERSION-TARGET.tar.gz`: {l!r}")
        elif m.group(3) != version:
            problem(where, f"STRATA_SHA256SUMS names version {m.group(3)}, STRATA_VERSION is {version}")
        else:
            names.add(m.group(4))
    if names != {"x86_64", "aarch64"}:
        problem(where, f"STRATA_SHA256SUMS must pin both targets, has {sorted(names)}")
    if not str(env.get("STRATA_RELEASES", "")).startswith("https://"):
        problem(where, "STRATA_RELEASES must be an https:// URL")
    return version


# ---------------------------------------------------------------- GitHub Actions


def steps_text(job):
    return "\n".join(str(s.get("run", "")) for s in job.get("steps", []))


def uses(job, prefix):
    return [i for i, s in enumerate(job.get("steps", [])) if str(s.get("uses", "")).startswith(prefix)]


def check_github():
    where = GH_WORKFLOW
    wf = load(where)
    triggers = on(wf) or {}
    for t in ("pull_request", "push", "schedule"):
        if t not in triggers:
            problem(where, f"no `{t}` trigger")
    if "main" not in ((triggers.get("push") or {}).get("branches") or []):
        problem(where, "push must be limited to branches: [main] (apply on merge)")
    gh_version = check_pins(where, wf.get("env", {}))
    jobs = wf.get("jobs", {})
    if any(name not in jobs for name in ("pr", "drift", "saved-plan", "apply")):
        problem(where, f"the jobs must be pr, drift, saved-plan, apply; found {sorted(jobs)}")
        return gh_version

    for name, job in jobs.items():
        w = f"{where}: job {name}"
        text = steps_text(job)
        if re.search(r"\bcargo\s+(build|install)\b|rust-toolchain", text + str(job.get("steps"))):
            problem(w, "builds strata: the example must use the released binary")
        if RUNS_STRATA.search(text):
            inst = uses(job, "./.github/actions/install-strata")
            first = min(i for i, s in enumerate(job["steps"]) if RUNS_STRATA.search(str(s.get("run", ""))))
            if not inst or inst[0] > first:
                problem(w, "runs strata without installing the release first (./.github/actions/install-strata)")
        for i, s in enumerate(job.get("steps", [])):
            run = str(s.get("run", ""))
            if re.search(r"\$\{\{\s*(secrets\.|github\.event\.|inputs\.)", run):
                problem(f"{w} step {i + 1}", "a secret or event value is interpolated into `run:`; pass it through `env:`")
            check_script_text(f"{w} step {i + 1}", run)

    pr = jobs["pr"]
    if "pull_request" not in str(pr.get("if", "")):
        problem(where, "job pr must run on pull requests only")
    if not re.search(r"strata plan .*-o plan\.json", steps_text(pr)):
        problem(where, "job pr must save its plan: `strata plan ... -o plan.json`")
    up = [s for s in pr["steps"] if str(s.get("uses", "")).startswith("actions/upload-artifact@")]
    if not up or "plan.json" not in str(up[0].get("with", {}).get("path", "")):
        problem(where, "job pr must keep plan.json as an artifact (actions/upload-artifact)")
    elif up[0]["with"].get("name") != "strata-plan":
        problem(where, "job pr's artifact must be named strata-plan (saved-plan downloads it by that name)")
    if "strata-plan" not in steps_text(jobs["saved-plan"]):
        problem(where, "job saved-plan must download the pull request's artifact strata-plan")

    drift = jobs["drift"]
    if "schedule" not in str(drift.get("if", "")):
        problem(where, "job drift must run on the schedule")
    if "--detailed-exitcode" not in steps_text(drift):
        problem(where, "job drift must fail on changes (--detailed-exitcode)")

    apply = jobs["apply"]
    env = apply.get("environment")
    env_name = env.get("name") if isinstance(env, dict) else env
    if env_name != "production":
        problem(where, "job apply must run in the protected environment `production` (the approval gate)")
    if "saved-plan" not in (apply.get("needs") if isinstance(apply.get("needs"), list) else [apply.get("needs")]):
        problem(where, "job apply must need saved-plan")
    if not re.search(r"strata apply --plan \S+plan\.json --yes", steps_text(apply)):
        problem(where, "job apply must run `strata apply --plan .../plan.json --yes`")
    if "plan -o" in steps_text(apply) or re.search(r"strata plan\b", steps_text(apply)):
        problem(where, "job apply must apply the saved plan, not plan again")
    if not apply.get("concurrency"):
        problem(where, "job apply needs a concurrency group (one apply at a time)")
    if "main" not in str(jobs["saved-plan"].get("if", "")):
        problem(where, "job saved-plan must run on main only")

    action = load(GH_ACTION)
    for i, s in enumerate(action.get("runs", {}).get("steps", [])):
        run = str(s.get("run", ""))
        if "${{" in run:
            problem(f"{GH_ACTION} step {i + 1}", "`${{ }}` in run: pass inputs through env:")
        if not re.search(r"sha256sum --check", run):
            problem(f"{GH_ACTION} step {i + 1}", "the download is not checked with sha256sum --check")
        check_script_text(f"{GH_ACTION} step {i + 1}", run)
        shellcheck(f"{GH_ACTION} step {i + 1}", run)
    return gh_version


# ---------------------------------------------------------------- GitLab CI

GITLAB_KEYWORDS = {
    "default", "include", "stages", "variables", "workflow", "image", "services", "cache",
    "before_script", "after_script",
}


def resolve(doc, value, where):
    """A script value (string or list) with its `!reference`s resolved, as a list of lines."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    out = []
    for item in value:
        if isinstance(item, Reference):
            node = doc
            for key in item:
                if not isinstance(node, dict) or key not in node:
                    problem(where, f"!reference {list(item)} names nothing")
                    node = None
                    break
                node = node[key]
            if node is not None:
                out.extend(resolve(doc, node, where))
        elif isinstance(item, list):
            out.extend(resolve(doc, item, where))
        else:
            out.append(str(item))
    return out


def merged(doc, name, seen=()):
    """A job with its `extends` applied (GitLab merges hashes deeply, replaces the rest)."""
    job = doc[name]
    base = {}
    ext = job.get("extends", [])
    for parent in [ext] if isinstance(ext, str) else ext:
        if parent not in doc or parent in seen:
            problem(GITLAB, f"job {name} extends {parent}, which is not defined")
            continue
        base = deep_merge(base, merged(doc, parent, seen + (name,)))
    return deep_merge(base, {k: v for k, v in job.items() if k != "extends"})


def deep_merge(a, b):
    out = dict(a)
    for k, v in b.items():
        out[k] = deep_merge(out[k], v) if isinstance(out.get(k), dict) and isinstance(v, dict) else v
    return out


def check_gitlab():
    where = GITLAB
    doc = load(where, GitLabLoader)
    gl_version = check_pins(where, doc.get("variables", {}))
    stages = doc.get("stages", [])
    jobs = {k: merged(doc, k) for k in doc if k not in GITLAB_KEYWORDS and not k.startswith(".")}
    if any(name not in jobs for name in ("plan", "drift", "saved-plan", "apply")):
        problem(where, f"the jobs must be plan, drift, saved-plan, apply; found {sorted(jobs)}")
        return gl_version
    sources = str(doc.get("workflow", {}).get("rules", []))
    for s in ("merge_request_event", "schedule", "push"):
        if s not in sources:
            problem(where, f"workflow:rules never start a pipeline for {s}")

    for name, job in jobs.items():
        w = f"{where}: job {name}"
        if job.get("stage") not in stages:
            problem(w, f"stage {job.get('stage')!r} is not in stages {stages}")
        for need in job.get("needs", []) or []:
            n = need["job"] if isinstance(need, dict) else need
            if n not in jobs:
                problem(w, f"needs {n}, which is not a job")
        lines = resolve(doc, job.get("before_script", doc.get("before_script")), w) + resolve(doc, job.get("script"), w)
        if not lines:
            problem(w, "no script")
        text = "\n".join(lines)
        if re.search(r"\bcargo\s+(build|install)\b|rustup", text):
            problem(w, "builds strata: the example must use the released binary")
        if RUNS_STRATA.search(text) and "sha256sum --check" not in text:
            problem(w, "runs strata without installing the checked release (.install-strata)")
        check_script_text(w, text)
        shellcheck(w, text)
        job["_text"] = text

    plan = jobs["plan"]
    if "merge_request_event" not in str(plan.get("rules")):
        problem(where, "job plan must run in merge request pipelines")
    if not re.search(r"strata plan .*-o plan\.json", plan["_text"]):
        problem(where, "job plan must save its plan: `strata plan ... -o plan.json`")
    if "plan.json" not in (plan.get("artifacts", {}).get("paths") or []):
        problem(where, "job plan must keep plan.json as an artifact")

    drift = jobs["drift"]
    if "schedule" not in str(drift.get("rules")) or "--detailed-exitcode" not in drift["_text"]:
        problem(where, "job drift must run on the schedule and fail on changes (--detailed-exitcode)")

    saved = jobs["saved-plan"]
    if 'name == "plan"' not in saved["_text"]:
        problem(where, "job saved-plan must fetch the artifact of the job named plan")
    if "saved-plan/plan.json" not in (saved.get("artifacts", {}).get("paths") or []):
        problem(where, "job saved-plan must pass saved-plan/plan.json on as an artifact")

    apply = jobs["apply"]
    rules = apply.get("rules") or []
    if not rules or any(r.get("when") != "manual" for r in rules):
        problem(where, "job apply: every rule must be `when: manual` (the approval gate)")
    if any(r.get("allow_failure", False) for r in rules):
        problem(where, "job apply: allow_failure must be false (the pipeline waits for it)")
    env = apply.get("environment")
    if (env.get("name") if isinstance(env, dict) else env) != "production":
        problem(where, "job apply must deploy to the protected environment `production`")
    if not apply.get("resource_group"):
        problem(where, "job apply needs a resource_group (one apply at a time)")
    needs = [n["job"] if isinstance(n, dict) else n for n in apply.get("needs", [])]
    if "saved-plan" not in needs:
        problem(where, "job apply must need saved-plan (its artifact is the plan)")
    if not re.search(r"strata apply --plan saved-plan/plan\.json --yes", apply["_text"]):
        problem(where, "job apply must run `strata apply --plan saved-plan/plan.json --yes`")
    if re.search(r"strata plan\b", apply["_text"]):
        problem(where, "job apply must apply the saved plan, not plan again")
    if "STRATA_APPLY_SSH_KEY" not in apply["_text"]:
        problem(where, "job apply must use the environment-scoped STRATA_APPLY_SSH_KEY")
    return gl_version


# ---------------------------------------------------------------- try-it and the README


def check_try_it():
    """scripts/try-it.sh's step headers are the README's try-it list, in order, word for word
    (the README may add words after a header), and its step count is theirs."""
    where = "scripts/try-it.sh"
    with open(os.path.join(REPO, where), encoding="utf-8") as f:
        script = f.read()
    headers = re.findall(r'^header "([^"$`]*)"$', script, re.M)
    if len(headers) != len(re.findall(r"^header ", script, re.M)):
        problem(where, "every header must be one literal string (no variables), alone on its line")
    m = re.search(r"^steps=(\d+)$", script, re.M)
    if not m or int(m.group(1)) != len(headers):
        problem(where, f"steps= must be the number of headers ({len(headers)})")
    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as f:
        readme = f.read()
    section = readme.split("## Try it, and run the tests", 1)[-1].split("\n## ", 1)[0]
    items, cur = [], None
    for line in section.split("It runs these steps", 1)[-1].splitlines():
        m = re.match(r"^(\d+)\. (.*)", line)
        if m:
            cur = [int(m.group(1)), m.group(2)]
            items.append(cur)
        elif cur and line.startswith("   ") and line.strip():
            cur[1] += " " + line.strip()
        elif items and not line.strip():
            break
    if [n for n, _ in items] != list(range(1, len(items) + 1)):
        problem("README.md", "the try-it steps are not numbered 1..N")
    if len(items) != len(headers):
        problem("README.md", f"the try-it list has {len(items)} steps, scripts/try-it.sh {len(headers)} headers")
    for (n, text), h in zip(items, headers):
        if not text.replace("`", "").startswith(h):
            problem("README.md", f"try-it step {n} does not start with the script's header {h!r}: {text!r}")


# ---------------------------------------------------------------- release -> install, end to end


CURL_STANDIN = r"""
curl() { # stand-in for the download: the last argument is the URL, served from $RELEASE_DIR
  local out="" url=""
  while [ $# -gt 0 ]; do case $1 in -o) out=$2; shift 2 ;; *) url=$1; shift ;; esac; done
  cp "$RELEASE_DIR/${url##*/}" "$out"
}
"""


def check_release_to_install():
    """The release workflow's Package step and SHA256SUMS, run on a stand-in binary, make
    archives that the GitHub action and GitLab's .install-strata install (with a curl
    stand-in: no network), and a wrong pinned sha256 is refused by both."""
    release = load(".github/workflows/release.yml")
    package = next(s["run"] for s in release["jobs"]["binaries"]["steps"] if s.get("name") == "Package")
    sums = next(s["run"] for s in release["jobs"]["release"]["steps"] if s.get("name") == "SHA256SUMS")
    action = load(GH_ACTION)["runs"]["steps"][0]["run"]
    gitlab = "\n".join(resolve(load(GITLAB, GitLabLoader), [Reference([".install-strata", "script"])], GITLAB))
    version = "0.0.0-check"
    with tempfile.TemporaryDirectory() as tmp:
        os.makedirs(f"{tmp}/work/target/x86_64-unknown-linux-musl/release")
        fake = f"{tmp}/work/target/x86_64-unknown-linux-musl/release/strata"
        with open(fake, "w") as f:
            f.write(f"#!/bin/sh\necho strata {version}\n")
        os.chmod(fake, 0o755)
        shutil.copy(os.path.join(REPO, "README.md"), f"{tmp}/work/README.md")
        step = package.replace("${{ matrix.target }}", "x86_64-unknown-linux-musl")
        r = subprocess.run(["bash", "-euo", "pipefail", "-c", f"VERSION={version}\n{step}\n{sums}"],
                           cwd=f"{tmp}/work", capture_output=True, text=True)
        if r.returncode != 0:
            problem("release.yml", f"Package/SHA256SUMS steps failed on a stand-in binary: {r.stderr.strip()}")
            return
        with open(f"{tmp}/work/dist/SHA256SUMS") as f:
            pinned = f.read()
        wrong = re.sub(r"^[0-9a-f]{64}", "1" * 64, pinned, flags=re.M)
        for where, script in ((GH_ACTION, action), (GITLAB + " .install-strata", gitlab)):
            for pins, want in ((pinned, 0), (wrong, 1)):
                home = tempfile.mkdtemp(dir=tmp)
                env = dict(os.environ, RELEASE_DIR=f"{tmp}/work/dist", RUNNER_TEMP=home,
                           GITHUB_PATH=f"{home}/path", STRATA_VERSION=version,
                           STRATA_RELEASES="https://releases.invalid/download", STRATA_SHA256SUMS=pins,
                           PATH=f"{home}/bin:{os.environ['PATH']}")
                # GitLab's script installs into /usr/local/bin: here into $home/bin instead.
                body = script.replace("/usr/local/bin/strata", f"{home}/bin/strata")
                os.makedirs(f"{home}/bin")
                r = subprocess.run(["bash", "-eo", "pipefail", "-c", CURL_STANDIN + body],
                                   cwd=home, env=env, capture_output=True, text=True)
                ok = r.returncode == 0 and f"strata {version}" in r.stdout
                if want == 0 and not ok:
                    problem(where, f"does not install the release's archive: {r.stdout.strip()} {r.stderr.strip()}")
                if want == 1 and (r.returncode == 0 or os.path.exists(f"{home}/bin/strata")):
                    problem(where, "installs an archive whose sha256 is not the pinned one")


def main():
    check_try_it()
    check_release_to_install()
    gh = check_github()
    gl = check_gitlab()
    if gh and gl and gh != gl:
        problem(GITLAB, f"STRATA_VERSION {gl} differs from {GH_WORKFLOW}'s {gh}")
    for p in problems:
        print(f"check-ci: {p}", file=sys.stderr)
    if problems:
        print(f"check-ci: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    print(f"check-ci: ok ({GH_WORKFLOW}, {GH_ACTION}, {GITLAB}, try-it headers = README)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
