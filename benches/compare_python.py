#!/usr/bin/env python3
"""Side-by-side: otlpflow from Python (ctypes) against the OpenTelemetry
Python SDK (BatchSpanProcessor + OTLP/gRPC exporter), same span shape, same
receiver (the otlpflow CLI's sink, a separate process), over loopback.

Each system runs in its own child process so that its CPU time (user + sys,
all threads) and peak RSS are its own; the receiver runs per system too, so
its count is that system's delivery. Not part of the test command.

    cargo build --release
    python3 -m venv /tmp/otelvenv
    /tmp/otelvenv/bin/pip install opentelemetry-sdk opentelemetry-exporter-otlp-proto-grpc
    /tmp/otelvenv/bin/python benches/compare_python.py --spans 50000
"""

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
SINK = os.path.join(ROOT, "target", "release", "otlpflow")

# The benchmark span of DESIGN.md (5 attributes, 1 event, status OK, a parent).
WORKLOAD = r'''
import os, sys, time
N = int(sys.argv[2]); ENDPOINT = sys.argv[3]
def attrs(i):
    return {"http.request.method": "GET", "url.path": "/api/v1/items/42",
            "server.address": "api.example.internal", "http.response.status_code": 200,
            "app.item_id": i}
'''

OTLPFLOW = WORKLOAD + r'''
sys.path.insert(0, os.path.join(sys.argv[1], "bindings", "python"))
os.environ.setdefault("OTLPFLOW_LIBRARY", os.path.join(sys.argv[1], "target", "release", "libotlpflow_ffi.so"))
import otlpflow
p = otlpflow.Pipeline(endpoint=ENDPOINT, service_name="bench", policy="block", max_wait=30.0, from_env=False)
parent = os.urandom(8)
t0 = time.perf_counter()
for i in range(N):
    with p.span("GET /api/v1/items/{id}", attributes=attrs(i), kind="server", parent_span_id=parent) as s:
        s.add_event("cache.miss", {"cache.key": i % 4096})
        s.set_status("ok")
t_record = time.perf_counter() - t0
stats = p.shutdown(timeout=60)
elapsed = time.perf_counter() - t0
print("RESULT", N, stats["exported"], t_record, elapsed)
'''

OTEL = WORKLOAD + r'''
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.trace import (SpanKind, Status, StatusCode, SpanContext, NonRecordingSpan, TraceFlags,
                                 set_span_in_context)
tuned = sys.argv[4] == "tuned"
provider = TracerProvider(resource=Resource.create({"service.name": "bench"}))
kw = dict(max_queue_size=65536, max_export_batch_size=8192, schedule_delay_millis=100) if tuned else {}
provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=ENDPOINT, insecure=True), **kw))
tracer = provider.get_tracer("bench")
parent = set_span_in_context(NonRecordingSpan(SpanContext(int.from_bytes(os.urandom(16), "big"),
                                                          int.from_bytes(os.urandom(8), "big"), True,
                                                          trace_flags=TraceFlags(TraceFlags.SAMPLED))))
t0 = time.perf_counter()
for i in range(N):
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


def run(name, code, spans, extra):
    port = free_port()
    sink = subprocess.Popen([SINK, "sink", "--grpc", "127.0.0.1:%d" % port, "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    time.sleep(0.3)
    errf = open("/tmp/compare_python_stderr.txt", "w+b")
    child = subprocess.Popen([sys.executable, "-c", code, ROOT, str(spans), "http://127.0.0.1:%d" % port] + extra,
                             stdout=subprocess.PIPE, stderr=errf)
    out = child.stdout.read()
    # wait4 gives this child's own CPU time and peak RSS.
    _, raw_status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(raw_status)
    status = child.returncode
    errf.seek(0)
    err = errf.read()
    time.sleep(0.3)
    sink.send_signal(signal.SIGINT)
    sink_out, _ = sink.communicate(timeout=30)
    received = json.loads(sink_out.decode().strip().splitlines()[-1])["spans"]
    line = [l for l in out.decode().splitlines() if l.startswith("RESULT")]
    if status != 0 or not line:
        raise SystemExit("%s failed:\n%s" % (name, err.decode()))
    _, n, _, t_record, elapsed = line[0].split()
    return dict(system=name, offered=int(n), received=received, record_s=float(t_record),
                elapsed_s=float(elapsed), usage=usage)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--spans", type=int, default=50000)
    args = ap.parse_args()
    rows = []
    for name, code, extra in [("otlpflow (Python, ctypes)", OTLPFLOW, []),
                              ("OTel Python SDK, defaults", OTEL, ["defaults"]),
                              ("OTel Python SDK, tuned", OTEL, ["tuned"])]:
        r = run(name, code, args.spans, extra)
        cpu = r["usage"].ru_utime + r["usage"].ru_stime
        r["cpu_s_per_million"] = cpu / r["offered"] * 1e6
        r["peak_rss_mb"] = r["usage"].ru_maxrss / 1024.0
        rows.append(r)
    base = rows[0]["received"] / rows[0]["elapsed_s"]
    print("spans per run: %d; receiver: otlpflow sink (separate process), loopback OTLP/gRPC" % args.spans)
    print("%-28s %9s %9s %7s %12s %10s %9s %12s" % ("system", "offered", "received", "loss", "delivered/s",
                                                     "CPU s/M", "RSS MB", "otlpflow is"))
    for r in rows:
        rate = r["received"] / r["elapsed_s"]
        print("%-28s %9d %9d %6.1f%% %12.0f %10.1f %9.1f %11.2fx" % (
            r["system"], r["offered"], r["received"], 100.0 * (r["offered"] - r["received"]) / r["offered"],
            rate, r["cpu_s_per_million"], r["peak_rss_mb"], base / rate if rate else float("inf")))


if __name__ == "__main__":
    main()
