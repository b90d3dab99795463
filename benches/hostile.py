#!/usr/bin/env python3
"""A hostile client against a standalone `otlpflow sink`: the amplification
request (gzip of a million empty spans, and of 32 M), a gRPC stream of 700 MiB
(declared in its prefix, and undeclared past a 16 MiB prefix), and 50 + 50
slow connections that send half a request head. Prints what the sink
answered, how many slow connections it kept past its 10 s header timeout,
its peak RSS (VmHWM), and whether it still serves a normal load afterwards.

    python3 benches/hostile.py [path/to/otlpflow]   (default target/release/otlpflow)

Loopback only; bounded in time (about 40 s). Not part of the test command:
the tests prove each bound (tests/hardening.rs); this measures the process.
"""
import gzip
import http.client
import os
import socket
import struct
import subprocess
import sys
import time

OTLPFLOW = sys.argv[1] if len(sys.argv) > 1 else "target/release/otlpflow"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def varint(v):
    out = b""
    while v >= 0x80:
        out += bytes([v & 0x7F | 0x80])
        v >>= 7
    return out + bytes([v])


def empty_spans_gzip(n):
    """ExportTraceServiceRequest{resource_spans{scope_spans{n empty spans}}}, gzipped."""
    spans = b"\x12\x00" * n
    scope = b"\x12" + varint(len(spans)) + spans
    req = b"\x0a" + varint(len(scope)) + scope
    return gzip.compress(req, 9)


def vm_hwm_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return -1


def post_http(port, body, encoding="gzip"):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    c.request("POST", "/v1/traces", body=body,
              headers={"Content-Type": "application/x-protobuf", "Content-Encoding": encoding})
    r = c.getresponse()
    r.read()
    return r.status


def grpc_stream(port, declared, total):
    """Streams `total` bytes after a prefix declaring `declared`, with curl
    (HTTP/2 prior knowledge, streamed upload); returns grpc-status."""
    prefix = b"\x00" + struct.pack(">I", declared)
    gen = subprocess.Popen(
        ["sh", "-c", "head -c %d /dev/zero" % total], stdout=subprocess.PIPE)
    cat = subprocess.Popen(
        ["curl", "-s", "-D", "-", "-o", "/dev/null", "--http2-prior-knowledge", "-X", "POST",
         "-H", "content-type: application/grpc", "-H", "te: trailers", "-T", "-",
         "http://127.0.0.1:%d/opentelemetry.proto.collector.trace.v1.TraceService/Export" % port],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        cat.stdin.write(prefix)
        while True:
            chunk = gen.stdout.read(1 << 20)
            if not chunk:
                break
            cat.stdin.write(chunk)
    except BrokenPipeError:
        pass
    try:
        cat.stdin.close()
    except BrokenPipeError:
        pass
    gen.kill()
    out = cat.stdout.read().decode(errors="replace")
    cat.wait(timeout=60)
    status = [l for l in out.splitlines() if l.lower().startswith("grpc-status")]
    return status[0].strip() if status else out.strip().splitlines()[:1]


def main():
    grpc_port, http_port = free_port(), free_port()
    sink = subprocess.Popen([OTLPFLOW, "sink", "--grpc", "127.0.0.1:%d" % grpc_port,
                             "--http", "127.0.0.1:%d" % http_port, "--duration", "120", "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    try:
        base = vm_hwm_kb(sink.pid)
        print("sink pid %d, peak RSS at start %.1f MB" % (sink.pid, base / 1024))
        for n in (1 << 20, 32 << 20):
            bomb = empty_spans_gzip(n)
            status = post_http(http_port, bomb)
            print("amplification: %d empty spans in %d bytes of gzip -> HTTP %d; peak RSS %.1f MB"
                  % (n, len(bomb), status, vm_hwm_kb(sink.pid) / 1024))
        for declared, total, what in ((700 << 20, 700 << 20, "declared 700 MiB"),
                                       (16 << 20, 700 << 20, "16 MiB prefix, 700 MiB sent")):
            t0 = time.time()
            status = grpc_stream(grpc_port, declared, total)
            print("gRPC stream, %s -> %s in %.1f s; peak RSS %.1f MB"
                  % (what, status, time.time() - t0, vm_hwm_kb(sink.pid) / 1024))
        slow = []
        for i in range(100):
            s = socket.create_connection(("127.0.0.1", http_port if i % 2 == 0 else grpc_port))
            s.sendall(b"POST /v1/traces HTTP/1.1\r\nHost: x\r\n" if i % 2 == 0 else b"PRI * HTTP/2.0\r\n")
            slow.append(s)
        time.sleep(12)
        still_open = 0
        for s in slow:
            s.settimeout(0.2)
            try:
                data = s.recv(4096)
                # 408 and EOF both mean the sink let go; keep reading to EOF.
                while data:
                    data = s.recv(4096)
            except socket.timeout:
                still_open += 1
            except ConnectionResetError:
                pass
            s.close()
        print("slow connections still open after 12 s: %d of %d" % (still_open, len(slow)))
        gen = subprocess.run([OTLPFLOW, "gen", "--endpoint", "http://127.0.0.1:%d" % grpc_port,
                              "--spans", "100000", "--json"], capture_output=True, text=True)
        print("afterwards, gen of 100000 spans: exit %d, %s" % (gen.returncode, gen.stdout.strip()[:120]))
        print("peak RSS of the sink over the run: %.1f MB" % (vm_hwm_kb(sink.pid) / 1024))
    finally:
        sink.terminate()
        counts = sink.communicate(timeout=10)[0].decode()
        print("sink counts:", counts.strip())


if __name__ == "__main__":
    main()
