#!/usr/bin/env python3
"""A real OTLP receiver no one in this project wrote the core of: gRPC's C
core (grpcio) serving the trace, logs and metrics services from the
opentelemetry-proto package, and Python's http.server for OTLP/HTTP
(/v1/traces, /v1/logs, /v1/metrics), both decoding every request with the
opentelemetry-proto types and counting spans, log records and data points.

    receiver.py [--dump FILE] [--tls CERT KEY] [--compress-responses]
                [--http-answer protobuf|json|text]
        prints "READY <grpc_port> <http_port>", then serves; on SIGTERM
        prints one JSON line of counts and exits. --dump writes every span,
        log record and data point received (as protobuf's JSON mapping,
        with its resource and scope) to FILE at exit; --tls serves both
        ports over TLS with that certificate and key (PEM files);
        --compress-responses answers every trace request with a partial
        success (one span rejected, and a warning long enough to be worth
        compressing), gzip-compressed: by grpcio's own server compression
        over gRPC, with Content-Encoding: gzip over HTTP. --http-answer
        json answers OTLP/HTTP requests in protobuf's JSON mapping
        (application/json; a trace request's answer rejects one span),
        text with a plain "OK" (text/plain), as some receivers and proxies
        do whatever the request's type.
"""

import argparse
import gzip
import json
import signal
import ssl
import sys
import threading
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
from google.protobuf.json_format import MessageToDict, MessageToJson
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

lock = threading.Lock()
counts = {"grpc_spans": 0, "grpc_requests": 0, "http_spans": 0, "http_requests": 0, "http_errors": 0,
          "grpc_user_agent": "", "http_user_agent": "", "grpc_logs": 0, "http_logs": 0,
          "grpc_points": 0, "http_points": 0, "metric_errors": 0, "rejected": 0}


# What --dump writes: every item received with its resource and scope.
dumped = {"spans": [], "logs": [], "points": []}
DUMP = False


def dump(kind, resource, scope, item):
    if DUMP:
        entry = {"resource": MessageToDict(resource), "scope": MessageToDict(scope), kind: MessageToDict(item)}
        with lock:
            dumped[kind + "s"].append(entry)


def spans_in(request):
    for rs in request.resource_spans:
        for ss in rs.scope_spans:
            for span in ss.spans:
                dump("span", rs.resource, ss.scope, span)
    return sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)


def logs_in(request):
    for rl in request.resource_logs:
        for sl in rl.scope_logs:
            for rec in sl.log_records:
                dump("log", rl.resource, sl.scope, rec)
    return sum(len(sl.log_records) for rl in request.resource_logs for sl in rl.scope_logs)


def points_in(request):
    """Data points, checking that a scope names each metric once."""
    n = 0
    for rm in request.resource_metrics:
        for sm in rm.scope_metrics:
            names = [(m.name, m.unit, m.WhichOneof("data")) for m in sm.metrics]
            if len(names) != len(set(names)):
                with lock:
                    counts["metric_errors"] += 1
            for m in sm.metrics:
                data = getattr(m, m.WhichOneof("data"))
                n += len(data.data_points)
                if DUMP:
                    for pt in data.data_points:
                        meta = {"name": m.name, "unit": m.unit, "description": m.description,
                                "type": m.WhichOneof("data"),
                                "temporality": getattr(data, "aggregation_temporality", 0),
                                "monotonic": getattr(data, "is_monotonic", False)}
                        entry = {"resource": MessageToDict(rm.resource), "scope": MessageToDict(sm.scope),
                                 "metric": meta, "point": MessageToDict(pt)}
                        with lock:
                            dumped["points"].append(entry)
    return n


class LogsService(logs_service_pb2_grpc.LogsServiceServicer):
    def Export(self, request, context):
        n = logs_in(request)
        with lock:
            counts["grpc_logs"] += n
        return logs_service_pb2.ExportLogsServiceResponse()


class MetricsService(metrics_service_pb2_grpc.MetricsServiceServicer):
    def Export(self, request, context):
        n = points_in(request)
        with lock:
            counts["grpc_points"] += n
        return metrics_service_pb2.ExportMetricsServiceResponse()


# Set by --compress-responses.
COMPRESS_RESPONSES = False
# Set by --http-answer.
HTTP_ANSWER = "protobuf"


def trace_response():
    """An empty response, or with --compress-responses a partial success
    rejecting one span (counted in "rejected")."""
    response = trace_service_pb2.ExportTraceServiceResponse()
    if COMPRESS_RESPONSES:
        response.partial_success.rejected_spans = 1
        response.partial_success.error_message = "one span rejected; " * 40
        with lock:
            counts["rejected"] += 1
    return response


class TraceService(trace_service_pb2_grpc.TraceServiceServicer):
    def Export(self, request, context):
        n = spans_in(request)
        agent = dict(context.invocation_metadata()).get("user-agent", "")
        with lock:
            counts["grpc_spans"] += n
            counts["grpc_requests"] += 1
            counts["grpc_user_agent"] = agent
        return trace_response()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        try:
            if self.headers.get("Content-Type") != "application/x-protobuf":
                raise ValueError("bad content type")
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            if self.path == "/v1/traces":
                request = trace_service_pb2.ExportTraceServiceRequest()
                request.ParseFromString(body)
                n = spans_in(request)
                with lock:
                    counts["http_spans"] += n
                    counts["http_requests"] += 1
                    counts["http_user_agent"] = self.headers.get("User-Agent", "")
                response = trace_response()
                if HTTP_ANSWER == "json":
                    response.partial_success.rejected_spans = 1
                    response.partial_success.error_message = "one span rejected (JSON)"
                    with lock:
                        counts["rejected"] += 1
            elif self.path == "/v1/logs":
                request = logs_service_pb2.ExportLogsServiceRequest()
                request.ParseFromString(body)
                n = logs_in(request)
                with lock:
                    counts["http_logs"] += n
                response = logs_service_pb2.ExportLogsServiceResponse()
            elif self.path == "/v1/metrics":
                request = metrics_service_pb2.ExportMetricsServiceRequest()
                request.ParseFromString(body)
                n = points_in(request)
                with lock:
                    counts["http_points"] += n
                response = metrics_service_pb2.ExportMetricsServiceResponse()
            else:
                raise ValueError("no such path %s" % self.path)
            self.send_response(200)
            if HTTP_ANSWER == "json":
                out = MessageToJson(response).encode()
                self.send_header("Content-Type", "application/json")
            elif HTTP_ANSWER == "text":
                out = b"OK"
                self.send_header("Content-Type", "text/plain")
            else:
                out = response.SerializeToString()
                self.send_header("Content-Type", "application/x-protobuf")
            if COMPRESS_RESPONSES:
                out = gzip.compress(out)
                self.send_header("Content-Encoding", "gzip")
        except Exception as e:  # answered as a 400, counted
            with lock:
                counts["http_errors"] += 1
            out = str(e).encode()
            self.send_response(400)
            self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)


def main():
    global DUMP, COMPRESS_RESPONSES, HTTP_ANSWER
    ap = argparse.ArgumentParser()
    ap.add_argument("--dump")
    ap.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"))
    ap.add_argument("--compress-responses", action="store_true")
    ap.add_argument("--http-answer", choices=["protobuf", "json", "text"], default="protobuf")
    args = ap.parse_args()
    HTTP_ANSWER = args.http_answer
    DUMP = bool(args.dump)
    COMPRESS_RESPONSES = args.compress_responses
    compression = grpc.Compression.Gzip if COMPRESS_RESPONSES else grpc.Compression.NoCompression
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), compression=compression)
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(TraceService(), server)
    logs_service_pb2_grpc.add_LogsServiceServicer_to_server(LogsService(), server)
    metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(MetricsService(), server)
    http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    if args.tls:
        cert, key = (open(f, "rb").read() for f in args.tls)
        grpc_port = server.add_secure_port("127.0.0.1:0", grpc.ssl_server_credentials([(key, cert)]))
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(*args.tls)
        http.socket = ctx.wrap_socket(http.socket, server_side=True)
    else:
        grpc_port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    threading.Thread(target=http.serve_forever, daemon=True).start()
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    print("READY %d %d" % (grpc_port, http.server_address[1]), flush=True)
    done.wait(timeout=600)
    server.stop(grace=1)
    http.shutdown()
    with lock:
        if args.dump:
            with open(args.dump, "w") as f:
                json.dump(dumped, f)
        print(json.dumps(counts), flush=True)


if __name__ == "__main__":
    sys.exit(main())
