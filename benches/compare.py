#!/usr/bin/env python3
"""The side-by-side comparison: the same workload through

  (a) otlpflow from Rust,
  (b) opentelemetry-rust: BatchSpanProcessor + opentelemetry-otlp (gRPC via
      tonic), tuned (queue 65,536, batch 8,192, 100 ms) and with defaults,
  (c) otlpflow from Python through ctypes,
  (d) the OpenTelemetry Python SDK: BatchSpanProcessor + OTLP/gRPC exporter,
      defaults and tuned,

each in its own child process (so that user+sys CPU time and peak RSS, read
with wait4, are its own), each against a fresh `otlpflow sink` (a separate
process, OTLP/gRPC over loopback) whose count is that system's delivery.
Rust systems record with 2 producer threads; Python ones with 1 (the GIL).

Two figures: throughput (spans offered as fast as each system takes them)
and CPU at a fixed 10,000 spans/s. A process's CPU time includes what it
spends once: starting the interpreter, importing, starting and shutting
down the pipeline (tens of milliseconds for Python, hundreds with the
OpenTelemetry SDK). With `--net-startup`, each system also runs once with
a single span, and the throughput table adds CPU per span net of that
(`CPU s/M net`: (CPU of the run - CPU of the one-span run) / (spans - 1)),
the marginal cost of a span. Not part of the test command:

    cargo build --release
    (cd compare && cargo build --release)
    python3 -m venv /tmp/otelvenv
    /tmp/otelvenv/bin/pip install opentelemetry-sdk opentelemetry-exporter-otlp-proto-grpc
    /tmp/otelvenv/bin/python benches/compare.py
"""

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
SINK = os.path.join(ROOT, "target", "release", "otlpflow")
RUST = os.path.join(ROOT, "compare", "target", "release", "otlpflow-compare")

# The benchmark span of src/workload.rs (5 attributes, 1 event, status OK, a parent).
WORKLOAD = r'''
import os, sys, time
N = int(sys.argv[2]); ENDPOINT = sys.argv[3]; RATE = float(sys.argv[5]) if len(sys.argv) > 5 else 0.0
def pace(i, t0):
    if RATE:
        # Sleep only when more than 1 ms ahead (see compare/src/main.rs).
        due = t0 + i / RATE
        now = time.perf_counter()
        if due - now > 0.001:
            time.sleep(due - now)
def attrs(i):
    return {"http.request.method": "GET", "url.path": "/api/v1/items/42",
            "server.address": "api.example.internal", "http.response.status_code": 200,
            "app.item_id": i}
'''

OTLPFLOW = WORKLOAD + r'''
sys.path.insert(0, os.path.join(sys.argv[1], "bindings", "python"))
os.environ.setdefault("OTLPFLOW_LIBRARY", os.path.join(sys.argv[1], "target", "release", "libotlpflow_ffi.so"))
import otlpflow
BATCH = int(os.environ.get("COMPARE_PY_BATCH_SPANS", "0"))
p = otlpflow.Pipeline(endpoint=ENDPOINT, service_name="bench", policy="block", max_wait=30.0, from_env=False,
                      **({"batch_spans": BATCH} if BATCH else {}))
parent = os.urandom(8)
t0 = time.perf_counter()
for i in range(N):
    pace(i, t0)
    with p.span("GET /api/v1/items/{id}", attributes=attrs(i), kind="server", parent_span_id=parent) as s:
        s.add_event("cache.miss", {"cache.key": i % 4096})
        s.set_status("ok")
t_record = time.perf_counter() - t0
stats = p.shutdown(timeout=60)
elapsed = time.perf_counter() - t0
print("RESULT", N, stats["exported"], t_record, elapsed)
'''

# The same spans through a span template: name, kind and the four static
# attributes encoded once; each span carries only its item id.
OTLPFLOW_TEMPLATE = OTLPFLOW.replace(
    "t0 = time.perf_counter()\n",
    "t = p.span_template('GET /api/v1/items/{id}', {k: v for k, v in attrs(0).items() if k != 'app.item_id'},\n"
    "                    kind='server')\n"
    "t0 = time.perf_counter()\n",
).replace(
    'with p.span("GET /api/v1/items/{id}", attributes=attrs(i), kind="server", parent_span_id=parent) as s:',
    'with t.span({"app.item_id": i}, parent_span_id=parent) as s:',
)
assert "t.span(" in OTLPFLOW_TEMPLATE

OTEL = WORKLOAD + r'''
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.trace import (SpanKind, Status, StatusCode, SpanContext, NonRecordingSpan, TraceFlags,
                                 set_span_in_context)
mode = sys.argv[4]
provider = TracerProvider(resource=Resource.create({"service.name": "bench"}))
if mode == "none":
    pass  # no processor: what the SDK's span creation alone costs (the bound for any exporter)
elif mode == "otlpflow":
    # The one-line swap: otlpflow's processor instead of Batch + OTLP exporter.
    sys.path.insert(0, os.path.join(sys.argv[1], "bindings", "python"))
    os.environ.setdefault("OTLPFLOW_LIBRARY", os.path.join(sys.argv[1], "target", "release", "libotlpflow_ffi.so"))
    import otlpflow, otlpflow.opentelemetry
    pipeline = otlpflow.Pipeline(endpoint=ENDPOINT, policy="block", max_wait=30.0, from_env=False)
    provider.add_span_processor(otlpflow.opentelemetry.SpanProcessor(pipeline, owns_pipeline=True))
elif mode == "otlpflow-exporter":
    # Zero code changed (OTEL_TRACES_EXPORTER=otlpflow): the SDK's own
    # BatchSpanProcessor, with its defaults, in front of otlpflow's exporter.
    sys.path.insert(0, os.path.join(sys.argv[1], "bindings", "python"))
    os.environ.setdefault("OTLPFLOW_LIBRARY", os.path.join(sys.argv[1], "target", "release", "libotlpflow_ffi.so"))
    import otlpflow, otlpflow.opentelemetry
    pipeline = otlpflow.Pipeline(endpoint=ENDPOINT, policy="block", max_wait=30.0, from_env=False)
    provider.add_span_processor(BatchSpanProcessor(otlpflow.opentelemetry.SpanExporter(pipeline, owns_pipeline=True)))
else:
    kw = dict(max_queue_size=65536, max_export_batch_size=8192, schedule_delay_millis=100) if mode == "tuned" else {}
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=ENDPOINT, insecure=True), **kw))
tracer = provider.get_tracer("bench")
parent = set_span_in_context(NonRecordingSpan(SpanContext(int.from_bytes(os.urandom(16), "big"),
                                                          int.from_bytes(os.urandom(8), "big"), True,
                                                          trace_flags=TraceFlags(TraceFlags.SAMPLED))))
t0 = time.perf_counter()
for i in range(N):
    pace(i, t0)
    with tracer.start_as_current_span("GET /api/v1/items/{id}", context=parent, kind=SpanKind.SERVER,
                                      attributes=attrs(i)) as s:
        s.add_event("cache.miss", {"cache.key": i % 4096})
        s.set_status(Status(StatusCode.OK))
t_record = time.perf_counter() - t0
provider.shutdown()
elapsed = time.perf_counter() - t0
print("RESULT", N, -1, t_record, elapsed)
'''


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def run(name, argv, spans):
    """Runs one system against a fresh receiver; returns its row."""
    port = free_port()
    sink = subprocess.Popen([SINK, "sink", "--grpc", "127.0.0.1:%d" % port, "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    time.sleep(0.3)
    endpoint = "http://127.0.0.1:%d" % port
    errf = open("/tmp/compare_stderr.txt", "w+b")
    child = subprocess.Popen([endpoint if a == "@ENDPOINT@" else a for a in argv],
                             stdout=subprocess.PIPE, stderr=errf)
    out = child.stdout.read()
    # wait4 gives this child's own CPU time (all its threads) and peak RSS.
    _, raw_status, usage = os.wait4(child.pid, 0)
    status = os.waitstatus_to_exitcode(raw_status)
    errf.seek(0)
    err = errf.read()
    time.sleep(0.3)
    sink.send_signal(signal.SIGINT)
    sink_out, _ = sink.communicate(timeout=30)
    received = json.loads(sink_out.decode().strip().splitlines()[-1])["spans"]
    if "baseline" in argv or "none" in argv:
        received = int(spans)  # nothing is sent; count it as delivered
    line = [l for l in out.decode().splitlines() if l.startswith("RESULT")]
    report = [l for l in out.decode().splitlines() if l.startswith("{")]
    if status == 0 and not line and report:
        # `otlpflow gen --json`: its report, as a RESULT line.
        r = json.loads(report[-1])
        line = ["RESULT %d %d %f %f" % (r["offered"], r["exported"], r["elapsed_s"], r["elapsed_s"])]
    if status != 0 or not line:
        raise SystemExit("%s failed:\n%s" % (name, err.decode()))
    fields = line[0].split()
    # Rust: RESULT offered elapsed record_s; Python: RESULT offered exported record_s elapsed.
    offered = int(fields[1])
    elapsed = float(fields[2] if len(fields) == 4 else fields[4])
    cpu = usage.ru_utime + usage.ru_stime
    return dict(system=name, offered=offered, received=received, elapsed_s=elapsed, cpu_s=cpu,
                rss_mb=usage.ru_maxrss / 1024.0)


# The comparisons each table ends with: otlpflow's way in against the
# peer a program on that instrumentation would otherwise use.
PAIRS = [
    ("otlpflow (Rust)", "opentelemetry-rust, tuned"),
    ("otlpflow (Rust)", "opentelemetry-rust, defaults"),
    ("OTel API + otlpflow processor", "opentelemetry-rust, tuned"),
    ("OTel API + otlpflow processor", "opentelemetry-rust, defaults"),
    ("tracing + otlpflow layer", "tracing + tracing-opentelemetry, tuned"),
    ("tracing + otlpflow layer", "tracing + tracing-opentelemetry, defaults"),
    ("otlpflow (Python, ctypes)", "OTel Python SDK, tuned"),
    ("otlpflow (Python, ctypes)", "OTel Python SDK, defaults"),
    ("OTel Python SDK + otlpflow processor", "OTel Python SDK, tuned"),
    ("OTel Python SDK + otlpflow processor", "OTel Python SDK, defaults"),
    ("OTel Python SDK + otlpflow exporter (zero code)", "OTel Python SDK, defaults"),
]


def systems(spans_rust, spans_py, shape, rate=None):
    py = os.environ.get("OTEL_PYTHON", sys.executable)
    r = [] if rate is None else [str(rate)]
    rate_py = [] if rate is None else ["x", str(rate)]

    def rust(name, system):
        return (name, [RUST, system, shape, "@ENDPOINT@", str(spans_rust)] + r, spans_rust)

    base = [rust("harness alone (Rust loop)", "baseline")]
    return (base if rate is not None else []) + [
        rust("otlpflow (Rust)", "otlpflow"),
    ] + ([rust("otlpflow (Rust), linger 10 ms", "otlpflow-linger10")] if rate is not None else []) + [
        rust("opentelemetry-rust, tuned", "otel-tuned"),
        rust("opentelemetry-rust, defaults", "otel-default"),
        rust("OTel API + otlpflow processor", "otel-otlpflow"),
        rust("tracing + otlpflow layer", "tracing-otlpflow"),
        rust("tracing + tracing-opentelemetry, tuned", "tracing-otel-tuned"),
        rust("tracing + tracing-opentelemetry, defaults", "tracing-otel-default"),
        ("otlpflow (Python, ctypes)", [py, "-c", OTLPFLOW, ROOT, str(spans_py), "@ENDPOINT@"] + rate_py, spans_py),
        ("otlpflow (Python, span template)", [py, "-c", OTLPFLOW_TEMPLATE, ROOT, str(spans_py), "@ENDPOINT@"] + rate_py,
         spans_py),
        ("OTel Python SDK, tuned", [py, "-c", OTEL, ROOT, str(spans_py), "@ENDPOINT@", "tuned"] + r, spans_py),
        ("OTel Python SDK, defaults", [py, "-c", OTEL, ROOT, str(spans_py), "@ENDPOINT@", "defaults"] + r, spans_py),
        ("OTel Python SDK + otlpflow processor", [py, "-c", OTEL, ROOT, str(spans_py), "@ENDPOINT@", "otlpflow"] + r,
         spans_py),
        ("OTel Python SDK + otlpflow exporter (zero code)",
         [py, "-c", OTEL, ROOT, str(spans_py), "@ENDPOINT@", "otlpflow-exporter"] + r, spans_py),
    ] + ([("OTel Python SDK, no processor (bound)", [py, "-c", OTEL, ROOT, str(spans_py), "@ENDPOINT@", "none"],
           spans_py)] if rate is None else [])


def table(rows, title):
    print("\n" + title)
    net = any("cpu_once_s" in r for r in rows)
    print("%-42s %9s %9s %7s %12s %9s %9s %8s%s" % (
        "system", "offered", "received", "loss", "spans/s", "CPU s/M", "CPU s/M d", "RSS MB",
        " %11s" % "CPU s/M net" if net else ""))
    by_name = {}
    for r in rows:
        rate = r["received"] / r["elapsed_s"]
        cpu_m = r["cpu_s"] / r["offered"] * 1e6
        # CPU per million offered, and per million delivered (a system that
        # drops most spans spends little on the ones it drops).
        cpu_d = r["cpu_s"] / r["received"] * 1e6 if r["received"] else float("inf")
        cpu_n = net_cpu(r)
        by_name[r["system"]] = (rate, cpu_m, cpu_d, cpu_n)
        print("%-42s %9d %9d %6.1f%% %12.0f %9.2f %9.2f %8.1f%s" % (
            r["system"], r["offered"], r["received"], 100.0 * (r["offered"] - r["received"]) / r["offered"],
            rate, cpu_m, cpu_d, r["rss_mb"], "" if cpu_n is None else " %11.2f" % cpu_n))
    for ours, peer in PAIRS:
        if ours in by_name and peer in by_name:
            (a_rate, a_cpu, a_cpu_d, a_net), (b_rate, b_cpu, b_cpu_d, b_net) = by_name[ours], by_name[peer]
            print("  %s vs %s: %.2fx the delivered spans/s, %.2fx less CPU per delivered span, "
                  "%.2fx per offered%s" % (ours, peer, a_rate / b_rate if b_rate else float("inf"),
                                            b_cpu_d / a_cpu_d if a_cpu_d else 0, b_cpu / a_cpu if a_cpu else 0,
                                            ", %.2fx net of start-up" % (b_net / a_net)
                                            if a_net and b_net is not None else ""))


def net_cpu(row):
    """CPU seconds per million spans net of the one-span run's (the
    process's fixed cost), or None without one."""
    if "cpu_once_s" not in row or row["offered"] <= 1:
        return None
    return (row["cpu_s"] - row["cpu_once_s"]) / (row["offered"] - 1) * 1e6


def gen_rows(spans, baseline):
    """`otlpflow gen` of this build and of `baseline` (another build's
    binary), no compression and zstd, each to its own receiver process."""
    rows = []
    for comp in ("none", "zstd"):
        for label, binary in (("this build", SINK), ("baseline", baseline)):
            rows.append(("otlpflow gen, %s, %s" % (comp, label),
                         [binary, "gen", "--endpoint", "@ENDPOINT@", "--spans", str(spans), "--compression", comp,
                          "--json"], spans))
    return rows


def gen_table(rows):
    table(rows, "otlpflow gen, this build against the baseline binary, in one run")
    by = {r["system"]: r for r in rows}
    for comp in ("none", "zstd"):
        a, b = by.get("otlpflow gen, %s, this build" % comp), by.get("otlpflow gen, %s, baseline" % comp)
        if a and b:
            print("  %s: %.2fx the baseline's delivered spans/s, %.2fx its CPU per offered span" % (
                comp, (a["received"] / a["elapsed_s"]) / (b["received"] / b["elapsed_s"]),
                (a["cpu_s"] / a["offered"]) / (b["cpu_s"] / b["offered"])))


# 8192-span batches close at `max_batch_bytes` first (1 MiB, about 3,550
# benchmark spans): the largest batch a fixed setting can have, as the
# defaults' batches have over a long path.
FIXED_GRID = [(c, b) for c in (4, 16, 64, 128) for b in (512, 2048, 3000, 8192)]


def latency_sweep(latencies, seconds, budget, repeats=1):
    """otlpflow's delivered spans/s against receiver latency: its defaults
    (adaptive concurrency from 4, batches growing from 512 over a long round
    trip), the defaults before them (4 in flight, 512-span batches), and a
    grid of fixed concurrency x batch size to find the best fixed setting
    at each latency. `otlpflow demo --threads 2 --duration SECONDS` with the
    embedded receiver adding the latency to every request, every setting
    under the same memory budget; the median of `repeats` runs."""
    settings = [("defaults", []), ("old defaults (4 in flight, 512-span batches)", ["--concurrency", "4", "--batch", "512"])]
    settings += [("%d in flight, %d-span batches" % (c, b), ["--concurrency", str(c), "--batch", str(b)])
                 for c, b in FIXED_GRID]
    rows = []
    for ms in latencies:
        for label, extra in settings:
            rates, lost, peak = [], 0, 0
            for _ in range(repeats):
                argv = [SINK, "demo", "--duration", str(seconds), "--threads", "2", "--sink-latency-ms", str(ms),
                        "--memory-budget", budget, "--json"] + extra
                out = subprocess.run(argv, capture_output=True, check=True).stdout.decode()
                r = json.loads(out.strip().splitlines()[-1])
                rates.append(r["records_per_sec"])
                lost += r["offered"] - r["exported"]
            rate = statistics.median(rates)
            rows.append(dict(setting=label, latency_ms=ms, rate=rate, lost=lost))
            print("  %6.0f ms  %-44s %10.0f spans/s (runs: %s), %d lost" % (
                ms, label, rate, ", ".join("%.0f" % x for x in rates), lost))
        fixed = [r for r in rows if r["latency_ms"] == ms and "in flight" in r["setting"]
                 and not r["setting"].startswith("old")]
        best = max(fixed, key=lambda r: r["rate"])
        d = next(r for r in rows if r["latency_ms"] == ms and r["setting"] == "defaults")
        old = next(r for r in rows if r["latency_ms"] == ms and r["setting"].startswith("old"))
        print("  %6.0f ms  defaults: %.0f%% of the best fixed (%s, %.0f spans/s), %.2fx the old defaults" % (
            ms, 100.0 * d["rate"] / best["rate"], best["setting"], best["rate"], d["rate"] / old["rate"]))
    return rows


def machine():
    return "%d vCPU %s, %s" % (os.cpu_count(), os.uname().machine,
                               time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))


def draw(out_dir, throughput_rows, latency_rows):
    """PNG charts of the results (matplotlib, imported only here)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    os.makedirs(out_dir, exist_ok=True)
    where = machine()
    written = []
    if throughput_rows:
        rows = sorted(throughput_rows, key=lambda r: r["received"] / r["elapsed_s"])
        names = [r["system"] for r in rows]
        rate = [r["received"] / r["elapsed_s"] / 1e3 for r in rows]
        cpu = [r["cpu_s"] / r["received"] * 1e6 if r["received"] else 0 for r in rows]
        loss = [100.0 * (r["offered"] - r["received"]) / r["offered"] for r in rows]
        fig, axes = plt.subplots(1, 3, figsize=(16, 0.45 * len(rows) + 2), sharey=True)
        for ax, values, label in [
            (axes[0], rate, "delivered spans/s (thousands)"),
            (axes[1], cpu, "CPU seconds per million delivered spans"),
            (axes[2], loss, "spans lost, % of offered"),
        ]:
            ax.barh(names, values, color=["#2a7ab0" if "otlpflow" in n else "#b0b0b0" for n in names])
            ax.set_xlabel(label)
            ax.grid(axis="x", alpha=0.3)
        fig.suptitle("Each system offered spans as fast as it could, to the same receiver "
                     "(median of runs; otlpflow in blue) - " + where)
        fig.tight_layout()
        path = os.path.join(out_dir, "throughput.png")
        fig.savefig(path, dpi=90)
        written.append(path)
    if latency_rows:
        fig, ax = plt.subplots(figsize=(9, 5.5))
        lats = sorted(set(r["latency_ms"] for r in latency_rows))
        for setting in ("defaults", "old defaults (4 in flight, 512-span batches)", "64 in flight, 2048-span batches"):
            pts = [r for r in latency_rows if r["setting"] == setting]
            if pts:
                ax.plot([p["latency_ms"] for p in pts], [p["rate"] / 1e3 for p in pts], marker="o", label=setting,
                        linewidth=2.5 if setting == "defaults" else 1.5)
        best = [max((r for r in latency_rows if r["latency_ms"] == ms and "in flight" in r["setting"]
                     and not r["setting"].startswith("old")), key=lambda r: r["rate"])["rate"] for ms in lats]
        ax.plot(lats, [b / 1e3 for b in best], linestyle="--", marker="x", color="gray",
                label="best fixed setting at each latency (of %d tried)" % len(FIXED_GRID))
        ax.set_xlabel("receiver latency added to every request (ms)")
        ax.set_ylabel("delivered spans/s (thousands)")
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend()
        ax.set_title("otlpflow demo, 2 producer threads, against receiver latency - " + where, fontsize=9)
        fig.tight_layout()
        path = os.path.join(out_dir, "latency.png")
        fig.savefig(path, dpi=90)
        written.append(path)
    for p in written:
        print("wrote", p)


def median_row(runs):
    """The run with the median throughput, with median CPU and RSS."""
    runs = sorted(runs, key=lambda r: r["received"] / r["elapsed_s"])
    mid = dict(runs[len(runs) // 2])
    mid["cpu_s"] = statistics.median(r["cpu_s"] for r in runs)
    mid["rss_mb"] = statistics.median(r["rss_mb"] for r in runs)
    return mid


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--spans", type=int, default=1_000_000, help="spans per Rust run")
    ap.add_argument("--py-spans", type=int, default=50_000, help="spans per Python run")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--rate-seconds", type=float, default=10.0)
    ap.add_argument("--shapes", default="bench,attr10", help="throughput shapes; empty for none")
    ap.add_argument("--only", default="", help="comma-separated substrings: run only matching systems")
    ap.add_argument("--latency", default="",
                    help="comma-separated receiver latencies in ms: otlpflow's throughput at each, per setting")
    ap.add_argument("--latency-seconds", type=float, default=4.0, help="seconds each latency run offers spans")
    ap.add_argument("--latency-budget", default="256M", help="the memory budget of every latency run")
    ap.add_argument("--latency-repeats", type=int, default=1, help="runs per latency and setting (median)")
    ap.add_argument("--charts", default="", help="directory to draw PNG charts into (needs matplotlib)")
    ap.add_argument("--gen-baseline", default="",
                    help="another build's otlpflow binary: run `gen` of both, none and zstd, side by side")
    ap.add_argument("--py-batch-spans", type=int, default=0,
                    help="batch_spans of otlpflow's Python pipelines (default: the library's)")
    ap.add_argument("--net-startup", action="store_true",
                    help="also run each system with one span; report CPU per span net of that run's")
    args = ap.parse_args()
    only = [o for o in args.only.split(",") if o]
    if args.py_batch_spans:
        os.environ["COMPARE_PY_BATCH_SPANS"] = str(args.py_batch_spans)

    def wanted(name):
        return not only or any(o in name for o in only)

    print("machine: %d CPUs; %s" % (os.cpu_count(), time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())))
    charted = []
    if args.gen_baseline:
        gen_table([median_row([run(name, argv, n) for _ in range(args.repeats)])
                   for name, argv, n in gen_rows(args.spans, args.gen_baseline)])
    for shape in [x for x in args.shapes.split(",") if x]:
        rows = []
        once = {name: argv for name, argv, _ in systems(1, 1, shape)} if args.net_startup else {}
        for name, argv, n in systems(args.spans, args.py_spans, shape):
            if shape != "bench" and "Python" in name:
                continue  # the Python workloads record the bench shape only
            if not wanted(name):
                continue
            row = median_row([run(name, argv, n) for _ in range(args.repeats)])
            if args.net_startup:
                row["cpu_once_s"] = statistics.median(run(name, once[name], 1)["cpu_s"] for _ in range(args.repeats))
            rows.append(row)
        table(rows, "throughput, shape %s: median of %d runs (Rust %d spans, Python %d spans)" % (
            shape, args.repeats, args.spans, args.py_spans))
        if shape == "bench":
            charted = rows
    latency_rows = []
    if args.latency:
        print("\notlpflow against receiver latency (%.0f s per run, memory budget %s)" % (
            args.latency_seconds, args.latency_budget))
        latency_rows = latency_sweep([float(x) for x in args.latency.split(",")], args.latency_seconds,
                                     args.latency_budget, args.latency_repeats)
    if args.charts:
        draw(args.charts, charted, latency_rows)
    n = int(10_000 * args.rate_seconds)
    if not n:
        return
    rows = [median_row([run(name, argv, k) for _ in range(args.repeats)])
            for name, argv, k in systems(n, n, "bench", rate=10_000) if wanted(name)]
    table(rows, "CPU at a fixed 10,000 spans/s for %.0f s (shape bench): median of %d runs" % (
        args.rate_seconds, args.repeats))
    for r in rows:
        print("  %-30s %.1f%% of one core" % (r["system"], 100.0 * r["cpu_s"] / r["elapsed_s"]))


if __name__ == "__main__":
    main()
