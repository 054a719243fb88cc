#!/usr/bin/env python3
"""The apply floor: what a plain `ssh` script must do to make the same changes as a plan.

    scripts/apply-floor.py PLAN.json RENDERED_DIR OUT_DIR [batch|cli]   (used by scripts/bench-apply.sh)

Reads a plan (`strata plan --format json -o PLAN.json`) and the rendered files (`strata
render --out RENDERED_DIR`), and writes OUT_DIR/<node>.sh for every node with changes: the
packages installed, users and directories created, every changed file written (owner and
mode set), the ufw rules added and deleted, the firewall enabled, units enabled and started,
and the plan's handlers run. No staging, validation, backups, lock, guard, health gate or
record: only the changes themselves. Run each with `ssh NODE sh -s < OUT_DIR/<node>.sh`.

ufw: `batch` (the default) runs all of a node's ufw commands in one process of ufw's own
code, as strata does; `cli` runs the `ufw` command once per rule, as a hand-written script
would (each run starts Python and probes the kernel's netfilter capabilities: ~0.1 s a rule).
"""
import base64
import json
import os
import re
import shlex
import sys


# "0750 root:monad" in a plan's details (followed by ", 42 lines" for a file).
OWNED = re.compile(r"(\d{4}) ([^\s:,]+):([^\s:,]+)")


def q(s):
    return shlex.quote(s)


# ufw's own parser and frontend, one process for all of a node's ufw commands: what strata's
# changes script does (src/remote/apply.rs, UFW_BATCH_PY), without its fallback and checks.
UFW_ONE_PROCESS = """import gettext, json, sys
import ufw.common, ufw.frontend
gettext.install(ufw.common.programName)
cmds, sys.argv = json.loads(sys.argv[1]), ["/usr/sbin/ufw"]
ui = ufw.frontend.UFWFrontend(False)
for w in cmds:
    pr = ufw.frontend.parse_command(["ufw"] + w)
    ui.do_action(pr.action, pr.data.get("rule", ""), pr.data.get("iptype", ""), pr.force)
"""


def node_script(node, rendered, releases, ufw_mode):
    out = ["set -e", "export DEBIAN_FRONTEND=noninteractive"]
    changes = node["changes"]
    pkgs = [c["id"].split(":", 1)[1] for c in changes if c["id"].startswith("package:")]
    if pkgs:
        out.append("apt-get install -y -q " + " ".join(map(q, pkgs)) + " >/dev/null")
    for c in changes:
        kind, rest = c["id"].split(":", 1)
        details = " ".join(c.get("details", []))
        if kind == "user" and c["action"] == "add":
            home = re.search(r"home (\S+)", details)
            out.append(
                "id -u {0} >/dev/null 2>&1 || useradd --system --user-group{1} {0}".format(
                    q(rest), " --no-create-home --home-dir " + q(home.group(1)) if home else ""
                )
            )
        elif kind == "directory":
            m = OWNED.search(details)
            line = "mkdir -p " + q(rest)
            if m:
                line += " && chown {}:{} {p} && chmod {} {p}".format(
                    q(m.group(2)), q(m.group(3)), m.group(1), p=q(rest)
                )
            out.append(line)
    for c in changes:
        kind, rest = c["id"].split(":", 1)
        if kind != "file" or "write" not in c["ops"]:
            continue
        src = os.path.join(rendered, node["node"], rest.lstrip("/"))
        with open(src, "rb") as f:
            data = base64.b64encode(f.read()).decode()
        m = OWNED.search(" ".join(c.get("details", [])))
        out.append("mkdir -p {}".format(q(os.path.dirname(rest))))
        out.append("echo {} | base64 -d > {}".format(data, q(rest)))
        # A new file's mode and owner are in the plan ("0640 root:monad, 42 lines"); a
        # changed one keeps its own unless the plan says otherwise.
        if m:
            out.append("chmod {} {p} && chown {}:{} {p}".format(m.group(1), q(m.group(2)), q(m.group(3)), p=q(rest)))
    for c in changes:
        # An artifact: the release file of the lab (modules/validator/lab-releases), and its link.
        kind, rest = c["id"].split(":", 1)
        m = re.search(r"(\S+) \(sha256", " ".join(c.get("details", [])))
        if kind == "artifact" and m:
            v = m.group(1)
            with open(os.path.join(releases, "monad-validator-" + v), "rb") as f:
                data = base64.b64encode(f.read()).decode()
            d = "/opt/{}/{}".format(rest, v)
            out.append("mkdir -p {d}/bin && echo {b} | base64 -d > {d}/bin/monad-validator && chmod 0755 {d}/bin/monad-validator && ln -sfn {v} /opt/{n}/current".format(d=q(d), b=data, v=q(v), n=q(rest)))
    if any(h == "daemon-reload" for h in plan_handlers(changes)):
        out.append("systemctl daemon-reload")
    ufw = []  # the ufw commands, as ufw's words, in order
    for c in changes:
        kind, rest = c["id"].split(":", 1)
        if kind == "ufw":
            m = re.match(r"(\w+) ([\d:]+)/(\w+) from (\S+)", rest)
            if not m:
                continue
            action, port, proto, src = m.groups()
            words = [action] + ([] if proto == "any" else ["proto", proto]) + ["from", src, "to", "any", "port", port]
            ufw.append((["delete"] if c["action"] == "remove" else []) + words)
    if any(c["id"].startswith("firewall:") and "fw_enable" in c["ops"] for c in changes):
        ufw.append(["--force", "enable"])
    if ufw and ufw_mode == "cli":
        out.extend("ufw " + " ".join(map(q, w)) + " >/dev/null" for w in ufw)
    elif ufw:
        out.append("python3 -c {} {} >/dev/null".format(q(UFW_ONE_PROCESS), q(json.dumps(ufw))))
    for c in changes:
        kind, rest = c["id"].split(":", 1)
        if kind == "service":
            unit = q(rest + ".service")
            if "unmask" in c["ops"]:
                out.append("systemctl unmask " + unit)
            if "enable" in c["ops"]:
                out.append("systemctl enable --quiet " + unit)
            if "start" in c["ops"]:
                out.append("systemctl start " + unit)
    for h in plan_handlers(changes):
        if h.startswith("restart ") or h.startswith("reload "):
            verb, unit = h.split(" ", 1)
            out.append("systemctl {} {}".format(verb, q(unit)))
    return "\n".join(out) + "\n"


def plan_handlers(changes):
    seen = []
    for c in changes:
        for h in c.get("handlers", []):
            if h not in seen:
                seen.append(h)
    return seen


def main():
    plan_file, rendered, out_dir = sys.argv[1:4]
    ufw_mode = sys.argv[4] if len(sys.argv) > 4 else "batch"
    if ufw_mode not in ("batch", "cli"):
        sys.exit("usage: apply-floor.py PLAN.json RENDERED_DIR OUT_DIR [batch|cli]")
    releases = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "modules", "validator", "lab-releases")
    with open(plan_file) as f:
        plan = json.load(f)
    os.makedirs(out_dir, exist_ok=True)
    for node in plan["nodes"]:
        if node.get("changes"):
            with open(os.path.join(out_dir, node["node"] + ".sh"), "w") as f:
                f.write(node_script(node, rendered, releases, ufw_mode))


if __name__ == "__main__":
    main()
