"""The process's memory through a long outage with a disk spool: `otlpflow
gen --memory-budget 4M --policy drop --rate 10000 --duration 20` runs once
with its receiver up the whole time (the baseline) and once with the
receiver down for the whole 20 s, started only when gen stops offering
(gen then waits for its spool to empty). Prints each run's peak RSS (from
/proc/PID/status VmHWM, read just before gen exits), the pipeline's own
memory peak, and what was offered, dropped and delivered.

usage: python3 benches/spool_rss.py [RUNS]   (needs target/release/otlpflow)
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
BIN = os.path.join(ROOT, "target", "release", "otlpflow")
GEN = ["--memory-budget", "4M", "--policy", "drop", "--rate", "10000", "--duration", "20", "--json"]


def port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close()
    return p


def sink(p):
    s = subprocess.Popen([BIN, "sink", "--grpc", "127.0.0.1:%d" % p, "--json"], stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL)
    time.sleep(0.3)
    return s


def received(s):
    s.send_signal(signal.SIGINT)
    out, _ = s.communicate(timeout=30)
    return json.loads(out.decode().strip().splitlines()[-1])["spans"]


def hwm_kb(pid):
    try:
        for line in open("/proc/%d/status" % pid):
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def run(outage):
    p = port()
    d = tempfile.mkdtemp(prefix="otlpflow-spool-rss-")
    args = [BIN, "gen", "--endpoint", "http://127.0.0.1:%d" % p] + GEN
    if outage:
        args += ["--spool-dir", d]
    s = None if outage else sink(p)
    g = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    t0, peak = time.time(), 0
    while g.poll() is None:
        if outage and s is None and time.time() - t0 > 20.3:
            s = sink(p)
        peak = max(peak, hwm_kb(g.pid) or 0)
        time.sleep(0.05)
    r = json.loads(g.stdout.read().decode().strip().splitlines()[-1])
    got = received(s)
    shutil.rmtree(d, ignore_errors=True)
    print("%-8s peak RSS %6.1f MB  pipeline memory peak %4.2f MB  offered %d dropped %d spooled %d received %d" % (
        "outage" if outage else "baseline", peak / 1024, r["memory_peak_bytes"] / 1e6, r["offered"], r["dropped"],
        r.get("spooled", 0), got))


for _ in range(int(sys.argv[1]) if len(sys.argv) > 1 else 1):
    run(False)
    run(True)
