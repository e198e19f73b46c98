#!/usr/bin/env python3
"""Availability of the shop under the faults of scripts/e2e.sh (standard library only).

Reads loadgen shop's JSON report (its `timeline`: checkout operations per second since the
load started, ok / refused / failed / conn_failed, and `load_started_unix`), the fault windows
e2e.sh recorded (one per line: start and end as Unix seconds, then what was done, tab
separated) and the scrapes of every instance's /metrics taken during the load (one per line:
Unix seconds, instance, grpc_server_handled_total of the public methods, grpc_server_shed_total
of every reason; tab separated). Prints a timeline per 10 seconds with the faults marked, and
writes one line per violation to --violations:

  (a) checkout success below 97% over every 1 s bucket outside the fault windows, a fault's
      window being [start, end + 15 s] (checkouts that never connected are left out of the
      denominator);
  (b) after a fault ends, no 5 s span starting within [end, end + 15 s] reaches 95% success
      (a span with fewer than 5 checkouts does not reach it; spans past the load's end are not
      looked at, and when none is left the fault is skipped);
  (c) an instance refusing more than half its calls (shed / handled between two scrapes) for
      more than 10 consecutive seconds of the load outside the fault windows (intervals with
      fewer than 20 calls, or across a restart, are not judged and end a run).

  scripts/e2e-availability.py --loadgen FILE --faults FILE --scrapes FILE --duration SECS
                              [--violations FILE]
  scripts/e2e-availability.py --selftest

Exit status: 0 when the analysis ran (violations or not), 2 when an input cannot be read.
"""

import argparse
import json
import math
import sys

MIN_SUCCESS = 0.97          # (a)
FAULT_TAIL = 15.0           # a fault's window lasts this long after it ends
RECOVERY_WITHIN = 15        # (b): spans starting within this many seconds of a fault's end
RECOVERY_SPAN = 5           # ... this long
RECOVERY_SUCCESS = 0.95     # ... reaching this success
RECOVERY_MIN_CHECKOUTS = 5  # ... with at least this many checkouts
MAX_SHED_RATIO = 0.5        # (c)
MAX_SHED_SECS = 10.0        # ... for longer than this
MIN_SCRAPE_CALLS = 20       # ... over intervals with at least this many calls


def reached(b):
    """Checkouts that reached a server (connection failures left out)."""
    return b["ok"] + b["refused"] + b["failed"]


def load_faults(path, started):
    """[(start, end, what)] in seconds since the load started."""
    faults = []
    with open(path) as f:
        for line in f:
            parts = line.rstrip("\n").split("\t", 2)
            if len(parts) < 3:
                continue
            faults.append((float(parts[0]) - started, float(parts[1]) - started, parts[2]))
    return faults


def load_scrapes(path, started):
    """{instance: [(t, handled, shed)]} in seconds since the load started, by time."""
    scrapes = {}
    with open(path) as f:
        for line in f:
            parts = line.split()
            if len(parts) != 4:
                continue
            try:
                t, handled, shed = float(parts[0]) - started, float(parts[2]), float(parts[3])
            except ValueError:
                continue
            scrapes.setdefault(parts[1], []).append((t, handled, shed))
    for series in scrapes.values():
        series.sort()
    return scrapes


def in_windows(lo, hi, faults):
    """Whether [lo, hi) overlaps a fault's window [start, end + FAULT_TAIL]."""
    return any(lo < end + FAULT_TAIL and hi > start for start, end, _ in faults)


def shed_intervals(series):
    """(t1, t2, calls, ratio) between consecutive scrapes; ratio None when not judged."""
    out = []
    for (t1, h1, s1), (t2, h2, s2) in zip(series, series[1:]):
        dh, ds = h2 - h1, s2 - s1
        if dh < 0 or ds < 0 or dh < MIN_SCRAPE_CALLS:
            out.append((t1, t2, max(dh, 0), None))
        else:
            out.append((t1, t2, dh, ds / dh))
    return out


def analyse(timeline, faults, scrapes, duration):
    """The violations (strings) and the printed timeline (lines)."""
    violations = []
    lines = []

    # (a) success outside the fault windows.
    ok = den = 0
    for b in timeline:
        t = b["start_secs"]
        if not in_windows(t, t + 1, faults):
            ok += b["ok"]
            den += reached(b)
    if den > 0:
        lines.append(f"checkout success outside the fault windows: {ok}/{den} = {100 * ok / den:.1f}%")
        if ok / den < MIN_SUCCESS:
            violations.append(
                f"checkout success outside the fault windows {100 * ok / den:.1f}% "
                f"({ok}/{den}) is below {100 * MIN_SUCCESS:.0f}%")
    else:
        lines.append("checkout success outside the fault windows: no checkout there")

    # (b) recovery after every fault.
    by_second = {b["start_secs"]: b for b in timeline}
    for n, (start, end, what) in enumerate(faults, 1):
        first = math.ceil(max(end, 0))
        spans = [s for s in range(first, int(math.floor(end + RECOVERY_WITHIN)) + 1)
                 if s + RECOVERY_SPAN <= duration]
        if not spans:
            lines.append(f"fault {n} ({what}): recovery not judged (the load ended)")
            continue
        best = None
        recovered_at = None
        for s in spans:
            window = [by_second.get(i) for i in range(s, s + RECOVERY_SPAN)]
            sok = sum(b["ok"] for b in window if b)
            sden = sum(reached(b) for b in window if b)
            rate = sok / sden if sden else 0.0
            if best is None or rate > best[0]:
                best = (rate, s, sok, sden)
            if sden >= RECOVERY_MIN_CHECKOUTS and rate >= RECOVERY_SUCCESS:
                recovered_at = s
                break
        if recovered_at is None:
            rate, s, sok, sden = best
            violations.append(
                f"fault {n} ({what}) ended at {end:.0f}s: no {RECOVERY_SPAN}s span starting within "
                f"{RECOVERY_WITHIN}s reached {100 * RECOVERY_SUCCESS:.0f}% checkout success "
                f"(best: {sok}/{sden} from {s}s)")
        else:
            lines.append(f"fault {n} ({what}): checkouts at {100 * RECOVERY_SUCCESS:.0f}%+ again "
                         f"from {recovered_at}s ({recovered_at - end:+.1f}s after it ended)")

    # (c) instances refusing most of their calls for long.
    for inst in sorted(scrapes):
        run = None  # (first t1, last t2, worst ratio)
        runs = []
        for t1, t2, _calls, ratio in shed_intervals(scrapes[inst]):
            bad = (ratio is not None and ratio > MAX_SHED_RATIO and t1 >= 0
                   and not in_windows(t1, t2, faults))
            if bad:
                run = (run[0], t2, max(run[2], ratio)) if run else (t1, t2, ratio)
            else:
                if run:
                    runs.append(run)
                run = None
        if run:
            runs.append(run)
        for t1, t2, worst in runs:
            if t2 - t1 > MAX_SHED_SECS:
                violations.append(
                    f"{inst} refused more than {100 * MAX_SHED_RATIO:.0f}% of its calls from "
                    f"{t1:.0f}s to {t2:.0f}s ({t2 - t1:.0f}s, up to {100 * worst:.0f}%) outside "
                    f"the fault windows")

    return violations, lines


def timeline_table(timeline, faults, scrapes):
    """The 10 s table, faults marked, with the instance refusing the most in each bucket."""
    rows = {}
    for b in timeline:
        r = rows.setdefault(b["start_secs"] // 10 * 10, dict(ok=0, refused=0, failed=0,
                                                             conn_failed=0, attempts_refused=0))
        for k in r:
            r[k] += b.get(k, 0)
    worst = {}
    for inst, series in scrapes.items():
        for t1, t2, _calls, ratio in shed_intervals(series):
            if ratio is None:
                continue
            key = int(max(t2, 0)) // 10 * 10
            if ratio > worst.get(key, (0.0, ""))[0]:
                worst[key] = (ratio, inst)
    out = ["  from    ok  refused  failed  conn-failed  success  att.refused  most shed     faults",
           "  ----  ----  -------  ------  -----------  -------  -----------  ------------  ------"]
    for start in sorted(rows):
        r = rows[start]
        den = r["ok"] + r["refused"] + r["failed"]
        success = f"{100 * r['ok'] / den:6.1f}%" if den else "      -"
        marks = []
        for n, (fs, fe, what) in enumerate(faults, 1):
            if start <= fs < start + 10:
                marks.append(f"F{n} starts {fs:.0f}s: {what}")
            if start <= fe < start + 10:
                marks.append(f"F{n} ends {fe:.0f}s")
            elif fs < start and fe >= start + 10:
                marks.append(f"F{n} on")
            if start <= fe + FAULT_TAIL < start + 10:
                marks.append(f"F{n} window ends {fe + FAULT_TAIL:.0f}s")
        shed = worst.get(start)
        shed_text = f"{shed[1]} {100 * shed[0]:.0f}%" if shed and shed[0] > 0 else "-"
        out.append(f"  {start:4d}  {r['ok']:4d}  {r['refused']:7d}  {r['failed']:6d}  "
                   f"{r['conn_failed']:11d}  {success:>7}  {r['attempts_refused']:11d}  "
                   f"{shed_text:<12}  {'; '.join(marks)}")
    return out


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--loadgen")
    parser.add_argument("--faults")
    parser.add_argument("--scrapes")
    parser.add_argument("--duration", type=float)
    parser.add_argument("--violations")
    parser.add_argument("--selftest", action="store_true")
    args = parser.parse_args(argv)
    if args.selftest:
        return selftest()
    if not (args.loadgen and args.faults and args.scrapes and args.duration):
        parser.error("--loadgen, --faults, --scrapes and --duration are required")
    try:
        with open(args.loadgen) as f:
            report = json.load(f)
        started = float(report["load_started_unix"])
        timeline = report["timeline"]
        faults = load_faults(args.faults, started)
        try:
            scrapes = load_scrapes(args.scrapes, started)
        except FileNotFoundError:
            scrapes = {}
    except (OSError, ValueError, KeyError) as e:
        print(f"e2e-availability: cannot read the inputs: {e}", file=sys.stderr)
        return 2
    violations, lines = analyse(timeline, faults, scrapes, args.duration)
    print("checkouts per 10 s since the load started (each with its retries, counted when it "
          "ended; success leaves out conn-failed; most shed: the instance refusing the largest "
          "share of its calls between two scrapes)")
    print("\n".join(timeline_table(timeline, faults, scrapes)))
    for n, (fs, fe, what) in enumerate(faults, 1):
        print(f"  F{n}: {fs:6.1f}s .. {fe:6.1f}s  {what}")
    print(f"scrapes: {sum(len(s) for s in scrapes.values())} of {len(scrapes)} instances")
    for line in lines:
        print(line)
    for v in violations:
        print(f"VIOLATION: {v}")
    if args.violations:
        with open(args.violations, "w") as f:
            f.writelines(v + "\n" for v in violations)
    return 0


def selftest():
    """The thresholds on synthetic inputs."""
    def timeline(seconds, per_second, bad=()):
        out = []
        for s in range(seconds):
            b = dict(start_secs=s, ok=per_second, refused=0, failed=0, conn_failed=0,
                     attempts_refused=0)
            if s in bad:
                b.update(ok=0, refused=per_second, attempts_refused=3 * per_second)
            out.append(b)
        return out

    def scrapes(inst, seconds, shed_from=None, shed_to=None):
        series, h, s = [], 0, 0
        for t in range(0, seconds, 2):
            series.append((float(t), float(h), float(s)))
            h += 100
            if shed_from is not None and shed_from <= t < shed_to:
                s += 90
        return {inst: series}

    failures = []

    def check(name, got, want):
        if got != want:
            failures.append(f"{name}: got {got}, want {want}")

    fault = [(20.0, 25.0, "SIGKILL checkout-2")]
    # All good: nothing to say.
    v, _ = analyse(timeline(60, 10), fault, scrapes("checkout-2", 60), 60)
    check("healthy", v, [])
    # Refusals inside the fault window [20, 40] are allowed...
    v, _ = analyse(timeline(60, 10, bad=range(20, 30)), fault, {}, 60)
    check("refusals in the window", v, [])
    # ... but not a recovery that never comes: (a) and (b) both fire.
    v, _ = analyse(timeline(60, 10, bad=range(20, 60)), fault, {}, 60)
    check("no recovery", len(v), 2)
    check("no recovery (a)", "below 97%" in v[0], True)
    check("no recovery (b)", "no 5s span" in v[1], True)
    # (a) alone: 2 bad seconds outside the windows of 60 (56 + 2 bad of 40 buckets → 95%).
    v, _ = analyse(timeline(60, 10, bad=(50, 51)), fault, {}, 60)
    check("(a) alone", len(v) == 1 and "below 97%" in v[0], True)
    # One bad second in 40 outside the window: 97.5%, fine.
    v, _ = analyse(timeline(60, 10, bad=(50,)), fault, {}, 60)
    check("(a) within the threshold", v, [])
    # (b): recovery at the last allowed span start (end + 15 = 40) counts; later does not.
    v, _ = analyse(timeline(60, 10, bad=range(25, 40)), fault, {}, 60)
    check("(b) recovery at +15s", [x for x in v if "no 5s span" in x], [])
    v, _ = analyse(timeline(60, 10, bad=range(25, 41)), fault, {}, 60)
    check("(b) recovery at +16s", len([x for x in v if "no 5s span" in x]), 1)
    # (b): spans with fewer than 5 checkouts do not count as recovered.
    v, _ = analyse(timeline(60, 0), fault, {}, 60)
    check("(b) too few checkouts", len([x for x in v if "no 5s span" in x]), 1)
    # (b): a fault ending when the load is over is not judged.
    late = [(50.0, 57.0, "late")]
    v, lines = analyse(timeline(60, 10, bad=range(50, 60)), late, {}, 60)
    check("(b) load ended", v, [])
    check("(b) load ended: said so", any("not judged" in x for x in lines), True)
    # (c): shedding 90% for 20 s outside the windows fires; 10 s does not; inside does not.
    v, _ = analyse(timeline(80, 10), fault, scrapes("checkout-2", 80, 44, 64), 80)
    check("(c) 20 s", len(v) == 1 and "checkout-2" in v[0], True)
    v, _ = analyse(timeline(80, 10), fault, scrapes("checkout-2", 80, 44, 52), 80)
    check("(c) 8 s", v, [])
    v, _ = analyse(timeline(80, 10), fault, scrapes("checkout-2", 80, 20, 40), 80)
    check("(c) in the window", v, [])
    # (c): intervals with fewer than 20 calls are not judged.
    quiet = {"cart-1": [(float(t), float(t), float(t)) for t in range(40, 80, 2)]}
    v, _ = analyse(timeline(80, 10), fault, quiet, 80)
    check("(c) quiet", v, [])
    # Connection failures leave the denominator.
    tl = timeline(60, 10)
    for b in tl[45:55]:
        b.update(ok=1, conn_failed=9)
    v, _ = analyse(tl, fault, {}, 60)
    check("conn-failed excluded", v, [])
    table = timeline_table(timeline(30, 10, bad=(21,)), fault, scrapes("x", 30, 20, 24))
    check("table rows", len(table), 5)
    check("table marks", "F1 starts 20s" in table[4] and "F1 ends 25s" in table[4], True)
    if failures:
        for f in failures:
            print(f"selftest: {f}", file=sys.stderr)
        return 1
    print("selftest: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
