"""The disk spool's speed: `otlpflow gen --spool-dir` spools N spans to a
port nobody listens on; this script counts them in the segment files by the
documented format (see src/spool/segment.rs) every 50 ms until all N are
there, kills gen, starts `otlpflow sink` on that port, and times
`otlpflow gen --spool-dir D --spans 0`, which replays the spool and exits
when it is empty. Extra arguments go to that second gen.

usage: python3 benches/spool.py [N] [gen arguments...]   (needs
target/release/otlpflow: cargo build --release --bin otlpflow)
"""
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
BIN = os.path.join(ROOT, "target", "release", "otlpflow")
D = tempfile.mkdtemp(prefix="otlpflow-spool-bench-")
s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
N = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000

def spooled():
    n = 0
    if not os.path.isdir(D):
        return 0
    for f in os.listdir(D):
        if not f.endswith(".seg"):
            continue
        data = open(os.path.join(D, f), "rb").read()
        at = 16
        while at + 8 <= len(data):
            ln = struct.unpack_from("<I", data, at)[0]
            body = data[at + 8: at + 8 + ln]
            if len(body) < ln:
                break
            at += 8 + ln
            k = struct.unpack_from("<H", body, 1)[0]
            n += struct.unpack_from("<I", body, 3 + k)[0]
    return n

t0 = time.time()
g = subprocess.Popen([BIN, "gen", "--endpoint", "http://127.0.0.1:%d" % port, "--spool-dir", D,
                      "--spans", str(N), "--json"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
while spooled() < N and time.time() - t0 < 120:
    time.sleep(0.05)
t1 = time.time()
g.send_signal(signal.SIGKILL); g.wait()
n = spooled()
size = sum(os.path.getsize(os.path.join(D, f)) for f in os.listdir(D) if f.endswith(".seg"))
print("written: %d spans in %.2f s (from gen start): %.0f spans/s, %.1f MB on disk" % (n, t1 - t0, n / (t1 - t0), size / 1e6))
sink = subprocess.Popen([BIN, "sink", "--grpc", "127.0.0.1:%d" % port, "--json"], stdout=subprocess.PIPE,
                        stderr=subprocess.DEVNULL)
time.sleep(0.3)
t2 = time.time()
out = subprocess.run([BIN, "gen", "--endpoint", "http://127.0.0.1:%d" % port, "--spool-dir", D, "--spans", "0",
                      "--json"] + sys.argv[2:], capture_output=True).stdout
t3 = time.time()
r = json.loads(out.decode().strip().splitlines()[-1])
sink.send_signal(signal.SIGINT)
so, _ = sink.communicate(timeout=30)
rec = json.loads(so.decode().strip().splitlines()[-1])["spans"]
print("replayed: %d spans in %.2f s (gen start to exit): %.0f spans/s; receiver counted %d" % (
    r["spool"]["replayed"], t3 - t2, r["spool"]["replayed"] / (t3 - t2), rec))
shutil.rmtree(D, ignore_errors=True)
