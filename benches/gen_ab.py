#!/usr/bin/env python3
"""`otlpflow gen` of two or more builds, run in turn, with CPU per thread.

compare.py's `--gen-baseline` sets one build against one other in a run;
this takes any number of builds (or one build with different settings),
rotates their order every round so none always runs first, and sends every
run to one `otlpflow sink` process started from the first build. For each
run it reports the process's CPU per million spans (user + system, from
rusage), the delivered rate (gen's own exported / elapsed), the CPU of its
workers and of the rest (the recording threads, with gen's main and
progress threads, which mostly sleep) apart, sampled from /proc/PID/task
until the process exits, so to the clock tick, and the receiver's CPU over
the run (from /proc/PID/stat): runs of a few million spans give two digits.

    python3 benches/gen_ab.py --rounds 10 \\
        before=/tmp/otlpflow-before after=target/release/otlpflow \\
        'after, evicting=target/release/otlpflow --set ring_eviction=true'

With `--gen-cpus 0 --receiver-cpus 1` gen and the receiver each run on a
core of their own, so the receiver's CPU no longer comes out of gen's; but
gen's recording threads and workers then share one core (on two vCPUs that
lowered the rate: BENCHMARKS.md, "Where issue 17's time goals stand").

With `--receiver null` the runs go to benches/null_grpc.py instead of
`otlpflow sink`: a receiver that answers every request OK and checks
nothing, so that it takes little of the cores gen shares with it. At the
end its count of requests, like the sink's, is set against the sum of
gen's.

With two builds or more, each is also set against the last one listed
round by round: the ratio of the two runs of a round, which are seconds
apart, so that the machine's slow spells mostly cancel out.

With `--handoff BENCH` (a criterion bench binary of benches/record.rs), each
round first reads `machine/cache_line_handoff`, and the summary splits the
runs by it (under `--near-ns`: cores that share a cache; see BENCHMARKS.md).
"""

import argparse
import collections
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import criterion_ab  # beside this file: the hand-off reading and its parse
from criterion_ab import HANDOFF

PORT = 14396


def stat_cpu(path):
    """`(name, CPU seconds so far, user + system)` from a /proc stat file."""
    with open(path) as f:
        stat = f.read()
    name = stat[stat.index("(") + 1:stat.rindex(")")]
    fields = stat[stat.rindex(")") + 2:].split()
    return name, (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def thread_cpu(pid):
    """CPU seconds so far of each thread of `pid`, by thread name."""
    out = {}
    try:
        tids = os.listdir("/proc/%d/task" % pid)
    except OSError:
        return out
    for tid in tids:
        try:
            out[tid] = stat_cpu("/proc/%d/task/%s/stat" % (pid, tid))
        except OSError:
            continue
    return out


def kind(name):
    """Workers are named `otlpflow-worker-N`; gen's recording threads (and
    its main and progress threads, which mostly sleep) carry the
    executable's name."""
    return "workers" if name.startswith("otlpflow-worker") else "recording"


def process_cpu(pid):
    """CPU seconds so far (user + system) of process `pid`."""
    return stat_cpu("/proc/%d/stat" % pid)[1]


def pinned(cpus):
    """A `preexec_fn` that runs the child on `cpus` (a set), or None."""
    if not cpus:
        return None
    return lambda: os.sched_setaffinity(0, cpus)


def cpu_set(text):
    return {int(c) for c in text.split(",") if c != ""}


def one_run(argv, spans, compression, receiver_pid, cpus=None):
    cmd = argv[:1] + ["gen", "--endpoint", "http://127.0.0.1:%d" % PORT, "--spans", str(spans),
                      "--compression", compression, "--json"] + argv[1:]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    receiver_before = process_cpu(receiver_pid)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, preexec_fn=pinned(cpus))
    last = {}
    while proc.poll() is None:
        last.update(thread_cpu(proc.pid))
        time.sleep(0.02)
    out = proc.stdout.read()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    # The receiver answers the last request before gen exits; what it
    # spends after that (idle timers) is a tick or two at most.
    receiver = process_cpu(receiver_pid) - receiver_before
    if proc.returncode != 0:
        raise SystemExit("%s exited with %d" % (cmd, proc.returncode))
    report = json.loads(out.strip().splitlines()[-1])
    parts = collections.defaultdict(float)
    for name, cpu in last.values():
        parts[kind(name)] += cpu
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    per_m = 1e6 / spans
    return {
        "cpu": cpu * per_m,
        "rate": report["exported"] / report["elapsed_s"] / 1e6,
        "recording": parts["recording"] * per_m,
        "workers": parts["workers"] * per_m,
        "receiver": receiver * per_m,
        "requests": report["requests"],
    }


def handoff(bench):
    """One reading of criterion_ab.py's placement bench, in ns."""
    return criterion_ab.run(bench, HANDOFF, 0.5, 1)[HANDOFF]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("builds", nargs="+", help="label=otlpflow binary [extra gen arguments]")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--spans", type=int, default=3_000_000)
    ap.add_argument("--compression", default="none")
    ap.add_argument("--handoff", default="", help="criterion bench binary of benches/record.rs")
    ap.add_argument("--near-ns", type=float, default=80.0)
    ap.add_argument("--gen-cpus", type=cpu_set, default=set(),
                    help="run gen on these CPUs only, e.g. 0 (default: anywhere)")
    ap.add_argument("--receiver-cpus", type=cpu_set, default=set(),
                    help="run the receiver on these CPUs only, e.g. 1 (default: anywhere)")
    ap.add_argument("--receiver", choices=("sink", "null"), default="sink",
                    help="otlpflow sink (checks every span; the default) or benches/null_grpc.py")
    args = ap.parse_args()
    builds = []
    for b in args.builds:
        label, _, rest = b.partition("=")
        builds.append((label, rest.split()))
    if args.receiver == "sink":
        receiver = [builds[0][1][0], "sink", "--grpc", "127.0.0.1:%d" % PORT, "--duration", "36000", "--json"]
    else:
        null = os.path.join(os.path.dirname(os.path.abspath(__file__)), "null_grpc.py")
        receiver = [sys.executable, null, "--listen", "127.0.0.1:%d" % PORT, "--duration", "36000"]
    # Its stderr goes to a file, not a pipe nobody reads while it runs.
    errors = tempfile.TemporaryFile(mode="w+")
    receiving = subprocess.Popen(receiver, stdout=subprocess.PIPE, stderr=errors, text=True,
                                 preexec_fn=pinned(args.receiver_cpus))
    time.sleep(1)
    if receiving.poll() is not None:
        # Most often the port is taken (a receiver left from an earlier
        # run): gen would then measure against that one, unchecked.
        errors.seek(0)
        raise SystemExit("the receiver exited at start: %s" % errors.read().strip())
    runs = collections.defaultdict(list)
    try:
        for r in range(args.rounds):
            reading = handoff(args.handoff) if args.handoff else None
            order = builds[r % len(builds):] + builds[:r % len(builds)]
            line = "round %d" % (r + 1) + (" (hand-off %.0f ns)" % reading if reading else "")
            for label, argv in order:
                res = one_run(argv, args.spans, args.compression, receiving.pid, args.gen_cpus)
                res["handoff"] = reading
                runs[label].append(res)
                line += "  %s: %.3f s/M, %.2f M/s" % (label, res["cpu"], res["rate"])
            print(line, flush=True)
    finally:
        receiving.terminate()
        counted = receiving.communicate(timeout=10)[0]
    # Both receivers print their counts as JSON when terminated.
    sent = sum(x["requests"] for v in runs.values() for x in v)
    got = json.loads(counted.strip().splitlines()[-1])["requests"]
    print("%s receiver: %d requests answered, gen sent %d" % (args.receiver, got, sent))
    if got != sent:
        raise SystemExit("the receiver's count differs from gen's")
    print("\nmedians, CPU seconds per million spans (process; recording and rest; workers;"
          " the receiver's) and M spans/s:")
    for label, _ in builds:
        groups = [("all", runs[label])]
        if args.handoff:
            groups += [("near", [x for x in runs[label] if x["handoff"] < args.near_ns]),
                       ("far", [x for x in runs[label] if x["handoff"] >= args.near_ns])]
        for name, v in groups:
            if v:
                med = {k: statistics.median(x[k] for x in v)
                       for k in ("cpu", "recording", "workers", "receiver", "rate")}
                print("  %-28s %-4s n=%-3d %.3f; %.3f; %.3f; %.3f   %.2f M/s" % (
                    label, name, len(v), med["cpu"], med["recording"], med["workers"],
                    med["receiver"], med["rate"]))
    if len(builds) > 1:
        round_by_round(builds, runs)


def round_by_round(builds, runs):
    """Each build against the last one listed, round by round: the ratios
    of the two runs of one round (CPU per span, delivered rate), their
    median and range, and in how many rounds they reached issue 17's goals
    (0.6x the CPU, 1.6x the rate). A round's two runs are seconds apart, so
    the machine's slower and faster spells mostly cancel in them."""
    base, _ = builds[-1]
    print("\nround by round against %s: CPU ratio, rate ratio (median, range,"
          " rounds at most 0.6x / at least 1.6x):" % base)
    for label, _ in builds[:-1]:
        pairs = list(zip(runs[label], runs[base]))
        cpu = sorted(a["cpu"] / b["cpu"] for a, b in pairs)
        rate = sorted(a["rate"] / b["rate"] for a, b in pairs)
        print("  %-28s %.2fx (%.2f-%.2f, %d of %d)   %.2fx (%.2f-%.2f, %d of %d)" % (
            label, statistics.median(cpu), cpu[0], cpu[-1], sum(c <= 0.6 for c in cpu), len(cpu),
            statistics.median(rate), rate[0], rate[-1], sum(r >= 1.6 for r in rate), len(rate)))


if __name__ == "__main__":
    main()
