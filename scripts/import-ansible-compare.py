#!/usr/bin/env python3
"""Compare `strata vars` of an imported repo with what Ansible itself gives each host.

    strata import ansible INVENTORY --out REPO
    scripts/import-ansible-compare.py INVENTORY REPO [--strata PATH] [--ansible-inventory PATH]

Runs `ansible-inventory -i INVENTORY --list` (pip install ansible-core) and `strata --repo REPO
vars HOST --placeholder-secrets` for every host, and prints each var whose value differs,
leaving out connection vars (ansible_*, mapped to ssh settings) and vaulted values (Ansible
prints the ciphertext, strata reads them with env()). Keys strata has and Ansible does not
(the base defines every key) are not differences, unless they are inside a var Ansible has. Exit 1 if any host differs.
"""
import argparse
import json
import subprocess
import sys


def flat(v, path, out):
    if isinstance(v, dict) and v:
        if set(v) == {"__ansible_unsafe"}:
            out[path] = json.dumps(v["__ansible_unsafe"], separators=(",", ":"))
            return
        if set(v) == {"__ansible_vault"}:
            return
        for k, c in v.items():
            flat(c, f"{path}.{k}" if path else k, out)
    else:
        out[path] = json.dumps(v, separators=(",", ":"))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("inventory")
    p.add_argument("repo")
    p.add_argument("--strata", default="strata")
    p.add_argument("--ansible-inventory", default="ansible-inventory")
    a = p.parse_args()
    listed = subprocess.run(
        [a.ansible_inventory, "-i", a.inventory, "--list"],
        capture_output=True, text=True, check=True,
    )
    hostvars = json.loads(listed.stdout)["_meta"]["hostvars"]
    differing = 0
    for host, hv in sorted(hostvars.items()):
        want = {}
        flat(hv, "", want)
        want = {k: v for k, v in want.items() if not k.startswith("ansible_")}
        r = subprocess.run(
            [a.strata, "--repo", a.repo, "vars", host, "--placeholder-secrets"],
            capture_output=True, text=True,
        )
        if r.returncode != 0:
            print(f"{host}: strata vars failed: {r.stderr.strip()}")
            differing += 1
            continue
        got = {}
        for line in r.stdout.splitlines():
            k, v = line.split("  #")[0].strip().split(" = ", 1)
            got[k] = v
        diffs = [(k, v, got.get(k)) for k, v in sorted(want.items()) if got.get(k) != v]
        # Inside a var Ansible has, a key only strata has is a difference too (a map Ansible
        # replaced as a whole, strata merged).
        diffs += [
            (k, None, v)
            for k, v in sorted(got.items())
            if k not in want and "." in k and k.split(".")[0] in hv
        ]
        if diffs:
            differing += 1
        print(f"{host}: {'same' if not diffs else f'{len(diffs)} differ'} ({len(want)} vars)")
        for k, v, g in diffs:
            print(f"  {k}: ansible {v}, strata {g}")
    sys.exit(1 if differing else 0)


if __name__ == "__main__":
    main()
