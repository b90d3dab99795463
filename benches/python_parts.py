"""Where a Python span's time goes on the recording thread: the bench
loop of `benches/compare.py` (`with p.span(...)`, or through a template
with `--template`), with the hand-over timed: on CPython the two native
calls that read the span objects and record them (`--marshal`: the
marshal fallback's two steps instead, `marshal.dumps` and the native call
that parses, encodes and records).

    python3 benches/python_parts.py [--spans N] [--template] [--marshal]

Needs `cargo build --release --workspace` (the otlpflow binary for the
receiver, libotlpflow_ffi.so for the binding). Prints microseconds per span
of the recording thread's CPU time.
"""
import argparse
import marshal
import os
import socket
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bindings", "python"))
os.environ.setdefault("OTLPFLOW_LIBRARY", os.path.join(ROOT, "target", "release", "libotlpflow_ffi.so"))
import otlpflow  # noqa: E402
from otlpflow import _spans  # noqa: E402


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--spans", type=int, default=200_000)
    ap.add_argument("--template", action="store_true")
    ap.add_argument("--marshal", action="store_true")
    args = ap.parse_args()
    port = free_port()
    sink = subprocess.Popen([os.path.join(ROOT, "target", "release", "otlpflow"), "sink", "--grpc",
                             "127.0.0.1:%d" % port, "--duration", "600"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        parts = {"dumps": 0.0, "native": 0.0, "spans": 0}

        class TimedMarshal:
            """`marshal` for `_spans`, with `dumps` timed."""

            @staticmethod
            def dumps(batch, version):
                a = time.thread_time()
                data = marshal.dumps(batch, version)
                parts["dumps"] += time.thread_time() - a
                parts["spans"] += len(batch)
                return data
        _spans.marshal = TimedMarshal

        def timed_send(send):
            def timed(data):
                a = time.thread_time()
                try:
                    return send(data)
                finally:
                    parts["native"] += time.thread_time() - a
            return timed

        p = otlpflow.Pipeline(endpoint="http://127.0.0.1:%d" % port, service_name="bench", policy="block",
                              max_wait=30.0, from_env=False)
        parent = os.urandom(8)

        def attrs(i):
            return {"http.request.method": "GET", "url.path": "/api/v1/items/42",
                    "server.address": "api.example.internal", "http.response.status_code": 200,
                    "app.item_id": i}
        t = p.span_template("GET /api/v1/items/{id}", {k: v for k, v in attrs(0).items() if k != "app.item_id"},
                            kind="server")
        # Every buffer's native call timed (one buffer per scope; the
        # template's scope gets its buffer here rather than at its first span).
        p._span_buffer(t._scope)
        for buf in p._buffers.values():
            buf._send = timed_send(buf._send)
            if args.marshal or buf._send_objects is None:
                buf._send_objects = None
            else:
                send_objects = timed_send(buf._send_objects)

                def counted(batch, send_objects=send_objects):
                    parts["spans"] += len(batch)
                    return send_objects(batch)
                buf._send_objects = counted
        t0 = time.thread_time()
        for i in range(args.spans):
            if args.template:
                span = t.span({"app.item_id": i}, parent_span_id=parent)
            else:
                span = p.span("GET /api/v1/items/{id}", attributes=attrs(i), kind="server", parent_span_id=parent)
            with span as s:
                s.add_event("cache.miss", {"cache.key": i % 4096})
                s.set_status("ok")
        t1 = time.thread_time()
        stats = p.shutdown(timeout=60)
        n = parts["spans"] or 1
        print("%s: %.2f us/span on the recording thread: marshal.dumps %.2f, native hand-over %.2f "
              "(%d spans handed over, %d exported)" % (
                  "template" if args.template else "p.span", 1e6 * (t1 - t0) / args.spans,
                  1e6 * parts["dumps"] / n, 1e6 * parts["native"] / n, parts["spans"], stats["exported"]))
    finally:
        sink.kill()


if __name__ == "__main__":
    main()
