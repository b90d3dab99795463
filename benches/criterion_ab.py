#!/usr/bin/env python3
"""Criterion benches of two or more builds, run in turn.

On a noisy 2-core VM one criterion run says little, and runs of the same
binary split into a fast and a slow group for a whole process (see
BENCHMARKS.md). This runs each bench binary ROUNDS times, alternating the
binaries, and prints every run's middle estimate and their median.

    python3 benches/criterion_ab.py --rounds 8 \\
        --filter 'record_span/1_thread_template_cpu|record_span/1_thread_cpu' \\
        before=/tmp/record-before after=target/release/deps/record-HASH

Build a bench binary with `cargo bench --bench record --no-run` (the path
is printed); copy it aside before building the other commit.

Include `machine/cache_line_handoff` in the filter (its alternatives
separated by `|`) to see which of the two groups a run fell in: it times a
cache line's move between the two cores. Each other benchmark then runs in
a process of its own, right after its own reading, and its runs are also
split by that reading (under `--near-ns`: cores that share a cache) with
each part's median printed.
"""

import argparse
import re
import statistics
import subprocess

HANDOFF = "machine/cache_line_handoff"
UNITS = {"ps": 1e-3, "ns": 1.0, "µs": 1e3, "us": 1e3, "ms": 1e6, "s": 1e9}


def run(binary, pattern, warm_up, measure):
    """Criterion's middle time estimate of each benchmark, in ns."""
    out = subprocess.run(
        [binary, "--bench", pattern, "--warm-up-time", str(warm_up),
         "--measurement-time", str(measure)],
        capture_output=True, text=True, check=True, timeout=3600,
    ).stdout
    found, name = {}, None
    for line in out.splitlines():
        if line and not line[0].isspace() and "/" in line:
            name = line.split()[0]
        m = re.search(r"time:\s+\[\S+ \S+ (\S+) (\S+) ", line)
        if m and name:
            found[name] = float(m.group(1)) * UNITS[m.group(2)]
            name = None
    return found


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("builds", nargs="+", help="label=path of a criterion bench binary")
    ap.add_argument("--filter", required=True, help="criterion benchmark regex")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--near-ns", type=float, default=80.0,
                    help="a cache line hand-off under this many ns: cores that share a cache")
    ap.add_argument("--warm-up-time", type=float, default=1)
    ap.add_argument("--measurement-time", type=float, default=3)
    args = ap.parse_args()
    builds = [b.split("=", 1) for b in args.builds]
    # One process run per benchmark when the hand-off is read, each
    # preceded by its own reading.
    parts = args.filter.split("|")
    with_handoff = HANDOFF in parts
    patterns = [p for p in parts if p != HANDOFF] if with_handoff else [args.filter]
    times, handoffs = {}, {}
    for _ in range(args.rounds):
        for label, path in builds:
            for pattern in patterns:
                if with_handoff:
                    # The reading right before the benchmark, in its process:
                    # the host moves the vCPUs every few seconds.
                    pattern = f"{HANDOFF}|{pattern}"
                found = run(path, pattern, args.warm_up_time, args.measurement_time)
                handoff = found.pop(HANDOFF, None)
                if handoff is not None:
                    handoffs.setdefault(label, []).append(handoff)
                for bench, ns in found.items():
                    times.setdefault((bench, label), []).append((ns, handoff))
    for label, v in sorted(handoffs.items()):
        runs = ", ".join(f"{x:.1f}" for x in v)
        print(f"{HANDOFF:45s} {label:10s} ({runs})")
    for (bench, label), v in sorted(times.items()):
        ns = [x for x, _ in v]
        runs = ", ".join(f"{x:.1f}" for x in ns)
        print(f"{bench:45s} {label:10s} median {statistics.median(ns):7.1f} ns  ({runs})")
        if any(h is not None for _, h in v):
            for name, part in (("near", [x for x, h in v if h is not None and h < args.near_ns]),
                               ("far", [x for x, h in v if h is not None and h >= args.near_ns])):
                if part:
                    print(f"{'':45s} {label:10s} {name:4s}: median {statistics.median(part):7.1f} ns"
                          f" of {len(part)} runs")


if __name__ == "__main__":
    main()
