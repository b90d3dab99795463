"""Instructions per Python span, counted by callgrind: the bench loop of
`benches/compare.py` (`with p.span(...)`, or through a template with
`--template`) run under `valgrind --tool=callgrind --separate-threads=yes`
for two span counts against an `otlpflow sink` process; the difference
divided by the difference in spans is the marginal cost of a span, so
start-up and shutdown cancel out. Instruction counts repeat where seconds
do not on a shared VM.

    python3 benches/python_callgrind.py [--template] [--root DIR]

`--root` measures another checkout (built with `cargo build --release
--workspace`), for a before/after in one session. The flush thread's
interval is set long, so that every hand-over (marshal and the native
call) runs on the recording thread, which the first figure counts; the
second adds the engine's threads.
"""
import argparse
import glob
import os
import socket
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

LOOP = r'''
import os, sys
root, n, template = sys.argv[1], int(sys.argv[2]), sys.argv[4] == "1"
sys.path.insert(0, os.path.join(root, "bindings", "python"))
os.environ["OTLPFLOW_LIBRARY"] = os.path.join(root, "target", "release", "libotlpflow_ffi.so")
import otlpflow
p = otlpflow.Pipeline(endpoint=sys.argv[3], service_name="bench", policy="block", max_wait=30.0,
                      from_env=False, batch_interval=600.0)
parent = os.urandom(8)
def attrs(i):
    return {"http.request.method": "GET", "url.path": "/api/v1/items/42",
            "server.address": "api.example.internal", "http.response.status_code": 200,
            "app.item_id": i}
t = p.span_template("GET /api/v1/items/{id}", {k: v for k, v in attrs(0).items() if k != "app.item_id"},
                    kind="server")
for i in range(n):
    if template:
        span = t.span({"app.item_id": i}, parent_span_id=parent)
    else:
        span = p.span("GET /api/v1/items/{id}", attributes=attrs(i), kind="server", parent_span_id=parent)
    with span as s:
        s.add_event("cache.miss", {"cache.key": i % 4096})
        s.set_status("ok")
stats = p.shutdown(timeout=60)
assert stats["exported"] == n, stats
'''


def totals(prefix):
    """Instructions of the recording thread and of all threads."""
    main = every = 0
    for f in sorted(glob.glob(prefix + "-*")):
        with open(f) as fh:
            n = next(int(line.split()[1]) for line in fh if line.startswith("totals:"))
        every += n
        if f.endswith("-01"):
            main = n
    return main, every


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--template", action="store_true")
    ap.add_argument("--root", default=ROOT)
    ap.add_argument("--spans", type=int, nargs=2, default=[10_000, 30_000])
    args = ap.parse_args()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sink = subprocess.Popen([os.path.join(args.root, "target", "release", "otlpflow"), "sink", "--grpc",
                             "127.0.0.1:%d" % port, "--duration", "900"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            script = os.path.join(tmp, "loop.py")
            with open(script, "w") as f:
                f.write(LOOP)
            counts = []
            for n in args.spans:
                out = os.path.join(tmp, "cg.%d" % n)
                subprocess.run(["valgrind", "--tool=callgrind", "--separate-threads=yes",
                                "--callgrind-out-file=" + out, sys.executable, script, args.root, str(n),
                                "http://127.0.0.1:%d" % port, "1" if args.template else "0"],
                               check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                counts.append(totals(out))
    finally:
        sink.kill()
    d = args.spans[1] - args.spans[0]
    (m0, a0), (m1, a1) = counts
    print("%s: %d instructions per span on the recording thread, %d in all threads" % (
        "template" if args.template else "p.span", (m1 - m0) // d, (a1 - a0) // d))


if __name__ == "__main__":
    main()
