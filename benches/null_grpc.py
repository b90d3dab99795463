#!/usr/bin/env python3
"""A gRPC receiver that acknowledges every request and looks at nothing.

It speaks just enough HTTP/2 (h2c) for an OTLP/gRPC exporter: the
connection preface, SETTINGS (16 MiB frames, the largest windows) and their
acknowledgement, PING replies, connection WINDOW_UPDATEs as data is read,
and for every request that ends (a frame with END_STREAM) an OK answer:
`:status 200`, an empty gRPC message, `grpc-status 0`. It reads the bytes
off the socket 1 MiB at a time and skips over DATA payloads without
copying or checking them, so its CPU per span is close to what any receiver
must pay to read the bytes (benches/loopback_read.py), and far below a
receiver that checks what it gets (`otlpflow sink` walks every span).

Its use is to measure a generator on a machine where the receiver shares
its cores (BENCHMARKS.md, "Where issue 17's time goals stand"): what the
receiver costs comes out of the generator's CPU, so a cheaper receiver
leaves the delivered rate to the generator. It counts requests and bytes
and prints them as JSON on SIGTERM or at --duration; it never says whether
a request was valid OTLP.

    python3 benches/null_grpc.py --listen 127.0.0.1:14397 --duration 600
"""

import argparse
import json
import signal
import socket
import struct
import sys
import threading

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY, WINDOW_UPDATE = 0, 1, 3, 4, 6, 7, 8
END_STREAM, ACK, END_HEADERS = 0x1, 0x1, 0x4
MAX_WINDOW = (1 << 31) - 1
MAX_FRAME = (1 << 24) - 1
CHUNK = 1 << 20

# HPACK, no Huffman, nothing indexed: `:status 200` (static index 8), then
# `content-type: application/grpc` (literal, name at static index 31).
ANSWER_HEADERS = b"\x88" + b"\x0f\x10" + bytes([16]) + b"application/grpc"
# The trailers: `grpc-status: 0` (literal, new name).
TRAILERS = b"\x00" + bytes([11]) + b"grpc-status" + b"\x01" + b"0"
EMPTY_MESSAGE = b"\x00\x00\x00\x00\x00"

totals = {"connections": 0, "requests": 0, "bytes": 0}
lock = threading.Lock()


def frame(kind, flags, stream, payload=b""):
    n = len(payload)
    return struct.pack(">BHBBI", n >> 16, n & 0xFFFF, kind, flags, stream) + payload


def answer(stream):
    return (frame(HEADERS, END_HEADERS, stream, ANSWER_HEADERS)
            + frame(DATA, 0, stream, EMPTY_MESSAGE)
            + frame(HEADERS, END_HEADERS | END_STREAM, stream, TRAILERS))


def serve(conn):
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    settings = struct.pack(">HIHIHI", 0x3, 10_000, 0x4, MAX_WINDOW, 0x5, MAX_FRAME)
    conn.sendall(frame(SETTINGS, 0, 0, settings)
                 + frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", MAX_WINDOW - 65535)))
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    have = 0          # bytes of buf not yet parsed, from 0
    skip = 0          # payload bytes of the current DATA frame still to come
    pending = 0       # the stream to answer once that payload is read
    preface = len(PREFACE)
    unacked = 0       # DATA bytes read since the last WINDOW_UPDATE
    requests = received = 0
    try:
        while True:
            n = conn.recv_into(view[have:])
            if n == 0:
                break
            received += n
            have += n
            pos = 0
            out = []
            if preface:
                take = min(preface, have)
                preface -= take
                pos = take
            if skip:
                take = min(skip, have - pos)
                skip -= take
                pos += take
                if not skip and pending:
                    out.append(answer(pending))
                    requests += 1
                    pending = 0
            while not preface and not skip and have - pos >= 9:
                length = (buf[pos] << 16) | (buf[pos + 1] << 8) | buf[pos + 2]
                kind, flags = buf[pos + 3], buf[pos + 4]
                stream = struct.unpack_from(">I", buf, pos + 5)[0] & MAX_WINDOW
                if kind == DATA:
                    unacked += length
                    pos += 9
                    take = min(length, have - pos)
                    skip = length - take
                    pos += take
                else:
                    if have - pos < 9 + length:
                        break  # a control frame in pieces: wait for the rest
                    payload = bytes(buf[pos + 9:pos + 9 + length])
                    pos += 9 + length
                    if kind == SETTINGS and not flags & ACK:
                        out.append(frame(SETTINGS, ACK, 0))
                    elif kind == PING and not flags & ACK:
                        out.append(frame(PING, ACK, 0, payload))
                    elif kind == GOAWAY:
                        return
                if flags & END_STREAM and kind in (DATA, HEADERS) and stream:
                    # Answered once the request's last byte is read.
                    if skip:
                        pending = stream
                    else:
                        out.append(answer(stream))
                        requests += 1
            if unacked >= 1 << 28:
                out.append(frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", unacked)))
                unacked = 0
            if out:
                conn.sendall(b"".join(out))
            # Keep the unparsed tail (a frame header or control frame cut
            # by the read) at the front.
            rest = have - pos
            if rest:
                buf[:rest] = buf[pos:have]
            have = rest
            if have == CHUNK:
                # One control frame larger than the buffer: not from an
                # exporter; drop the connection.
                return
    except OSError:
        pass
    finally:
        conn.close()
        with lock:
            totals["requests"] += requests
            totals["bytes"] += received


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--listen", default="127.0.0.1:14397")
    ap.add_argument("--duration", type=float, default=3600.0)
    args = ap.parse_args()
    host, _, port = args.listen.rpartition(":")
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((host, int(port)))
    listener.listen(64)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())

    def accept():
        while True:
            conn, _ = listener.accept()
            with lock:
                totals["connections"] += 1
            threading.Thread(target=serve, args=(conn,), daemon=True).start()
    threading.Thread(target=accept, daemon=True).start()
    done.wait(args.duration)
    with lock:
        print(json.dumps(totals), flush=True)
    sys.exit(0)


if __name__ == "__main__":
    main()
