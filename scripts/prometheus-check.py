#!/usr/bin/env python3
"""Asks a running Prometheus (scripts/fleet.sh prometheus, or e2e.sh's) whether it watches the
fleet: every target in targets.json is scraped and up, and every alert rule has been evaluated
without an error. Polls until both hold or the time is up.

    scripts/prometheus-check.py URL TARGETS_JSON [--wait SECS]

Exits 0 when both hold, 1 with what does not."""
import json
import sys
import time
import urllib.request


def get(url):
    with urllib.request.urlopen(url, timeout=5) as r:
        body = json.load(r)
    if body.get("status") != "success":
        raise RuntimeError(f"{url}: {body}")
    return body["data"]


def problems(base, expected):
    out = []
    targets = get(f"{base}/api/v1/targets?state=active")["activeTargets"]
    seen = {t["labels"].get("fleet_instance"): t for t in targets}
    for inst in expected:
        t = seen.get(inst)
        if t is None:
            out.append(f"target {inst}: not discovered")
        elif t["health"] != "up":
            out.append(f"target {inst} ({t['scrapeUrl']}): {t['health']} {t.get('lastError', '')}".rstrip())
    rules = [r for g in get(f"{base}/api/v1/rules")["groups"] for r in g["rules"]]
    if not rules:
        out.append("no alert rule loaded")
    for r in rules:
        if r.get("health") != "ok":
            out.append(f"rule {r['name']}: {r.get('health')} {r.get('lastError', '')}".rstrip())
    return out, len(targets), len(rules)


def main():
    args = sys.argv[1:]
    wait = 60.0
    if "--wait" in args:
        i = args.index("--wait")
        wait = float(args[i + 1])
        del args[i : i + 2]
    if len(args) != 2:
        sys.exit(__doc__)
    base, targets_file = args[0].rstrip("/"), args[1]
    with open(targets_file) as f:
        expected = [g["labels"]["fleet_instance"] for g in json.load(f)]
    deadline = time.monotonic() + wait
    while True:
        try:
            found, ntargets, nrules = problems(base, expected)
        except Exception as e:  # not listening yet, or an answer without data
            found, ntargets, nrules = [f"prometheus at {base}: {e}"], 0, 0
        if not found:
            print(f"prometheus: {ntargets} targets up, {nrules} rules evaluating without error")
            return
        if time.monotonic() >= deadline:
            for p in found:
                print(f"prometheus: {p}")
            sys.exit(1)
        time.sleep(2)


if __name__ == "__main__":
    main()
