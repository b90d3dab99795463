#!/usr/bin/env python3
"""What the cheapest possible receiver costs on this machine.

A receiver that speaks no protocol at all, only reads bytes off a loopback
TCP socket in 1 MiB `recv_into` calls and throws them away, is a floor
under any OTLP receiver's CPU per span: whatever it decodes comes on top.
On a machine where the generator and the receiver share the cores, that
floor bounds how far a faster generator can raise the delivered rate (see
BENCHMARKS.md, "Where issue 17's time goals stand").

    python3 benches/loopback_read.py --rounds 5 --record-bytes 300

A forked child sends `--mib` MiB as fast as it can; the parent reads them
and reports its own CPU time (user + system, `resource.getrusage`) per
`--record-bytes` bytes, which is about one benchmark span on the wire.
"""

import argparse
import os
import resource
import socket
import statistics


def one_round(total, chunk):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    pid = os.fork()
    if pid == 0:
        out = socket.create_connection(("127.0.0.1", port))
        data = b"\0" * chunk
        sent = 0
        while sent < total:
            sent += out.send(data)
        out.close()
        os._exit(0)
    conn, _ = listener.accept()
    buf = bytearray(chunk)
    before = resource.getrusage(resource.RUSAGE_SELF)
    got = 0
    while True:
        n = conn.recv_into(buf)
        if n == 0:
            break
        got += n
    after = resource.getrusage(resource.RUSAGE_SELF)
    os.waitpid(pid, 0)
    conn.close()
    listener.close()
    user = after.ru_utime - before.ru_utime
    system = after.ru_stime - before.ru_stime
    return got, user, system


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--mib", type=int, default=900, help="MiB sent per round")
    ap.add_argument("--record-bytes", type=int, default=300,
                    help="bytes of one record on the wire, to report the cost per record")
    args = ap.parse_args()
    per_record = []
    for r in range(args.rounds):
        got, user, system = one_round(args.mib << 20, 1 << 20)
        records = got / args.record_bytes
        ns = 1e9 * (user + system) / records
        per_record.append(ns)
        print("round %d: %d MiB read, receiver %.3f s user + %.3f s system: %.1f ns per %d bytes"
              % (r + 1, got >> 20, user, system, ns, args.record_bytes))
    print("median %.1f ns per %d bytes (%.1f-%.1f)"
          % (statistics.median(per_record), args.record_bytes, min(per_record), max(per_record)))


if __name__ == "__main__":
    main()
