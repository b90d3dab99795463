"""ctypes declarations mirroring include/otlpflow.h, and library loading.

The shared library is found, in order, through the OTLPFLOW_LIBRARY
environment variable (a path), next to this package, or in the cargo target
folder of a source checkout (target/release, then target/debug).
"""

import ctypes
import os
from ctypes import (POINTER, Structure, c_bool, c_char_p, c_double, c_int64,
                    c_size_t, c_uint8, c_uint32, c_uint64, c_void_p)

LIB_NAME = "libotlpflow_ffi.so"


class Str(Structure):
    _fields_ = [("ptr", c_char_p), ("len", c_size_t)]


class Value(Structure):
    pass


Value._fields_ = [
    ("kind", c_uint32),
    ("str", Str),
    ("i64", c_int64),
    ("f64", c_double),
    ("boolean", c_bool),
    ("array", POINTER(Value)),
    ("array_len", c_size_t),
]


class Attribute(Structure):
    _fields_ = [("key", Str), ("value", Value)]


class Event(Structure):
    _fields_ = [
        ("time_unix_nano", c_uint64),
        ("name", Str),
        ("attributes", POINTER(Attribute)),
        ("attributes_len", c_size_t),
        ("dropped_attributes_count", c_uint32),
    ]


class Link(Structure):
    _fields_ = [
        ("trace_id", c_uint8 * 16),
        ("span_id", c_uint8 * 8),
        ("trace_state", Str),
        ("attributes", POINTER(Attribute)),
        ("attributes_len", c_size_t),
        ("dropped_attributes_count", c_uint32),
        ("flags", c_uint32),
    ]


class Span(Structure):
    _fields_ = [
        ("trace_id", c_uint8 * 16),
        ("span_id", c_uint8 * 8),
        ("parent_span_id", c_uint8 * 8),
        ("trace_state", Str),
        ("flags", c_uint32),
        ("name", Str),
        ("kind", c_uint32),
        ("start_time_unix_nano", c_uint64),
        ("end_time_unix_nano", c_uint64),
        ("attributes", POINTER(Attribute)),
        ("attributes_len", c_size_t),
        ("dropped_attributes_count", c_uint32),
        ("events", POINTER(Event)),
        ("events_len", c_size_t),
        ("dropped_events_count", c_uint32),
        ("links", POINTER(Link)),
        ("links_len", c_size_t),
        ("dropped_links_count", c_uint32),
        ("status_code", c_uint32),
        ("status_message", Str),
    ]


class Scope(Structure):
    _fields_ = [("id", c_uint32), ("pipeline", c_uint64)]


STATS_FIELDS = [
    "offered", "accepted", "dropped_full", "dropped_too_large", "dropped_shutdown",
    "dropped_invalid", "dropped_rate_limited", "exported", "failed", "failed_shutdown", "failed_fork", "failed_exhausted",
    "failed_permanent", "rejected",
    "in_flight", "requests", "retries", "request_errors", "bytes_raw", "bytes_wire",
    "export_latency_p50_ns", "export_latency_p99_ns", "export_latency_max_ns",
    "dropped_memory", "failed_evicted", "concurrency_limit", "batch_target",
    "memory_used", "memory_peak", "breaker_opened",
    "e2e_latency_p50_ns", "e2e_latency_p99_ns", "ring_fill_max_pct",
]


class LogRecord(Structure):
    _fields_ = [
        ("time_unix_nano", c_uint64),
        ("observed_time_unix_nano", c_uint64),
        ("severity_number", c_uint32),
        ("severity_text", Str),
        ("has_body", c_bool),
        ("body", Value),
        ("attributes", POINTER(Attribute)),
        ("attributes_len", c_size_t),
        ("dropped_attributes_count", c_uint32),
        ("flags", c_uint32),
        ("trace_id", c_uint8 * 16),
        ("span_id", c_uint8 * 8),
        ("event_name", Str),
    ]


class Stats(Structure):
    _fields_ = [(name, c_uint64) for name in STATS_FIELDS]

    def to_dict(self):
        return {name: getattr(self, name) for name in STATS_FIELDS}


# Value kinds (otlpflow_value_kind).
STR, BOOL, I64, F64, BYTES, ARRAY = 1, 2, 3, 4, 5, 6


def _candidates():
    env = os.environ.get("OTLPFLOW_LIBRARY")
    if env:
        yield env
    here = os.path.dirname(os.path.abspath(__file__))
    yield os.path.join(here, LIB_NAME)
    root = os.path.abspath(os.path.join(here, "..", "..", ".."))
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(root, "target"))
    for profile in ("release", "debug"):
        yield os.path.join(target, profile, LIB_NAME)


def load():
    tried = []
    for path in _candidates():
        if os.path.exists(path):
            lib = ctypes.CDLL(path)
            _declare(lib)
            return lib
        tried.append(path)
    raise OSError("otlpflow: %s not found; set OTLPFLOW_LIBRARY (tried: %s)" % (LIB_NAME, ", ".join(tried)))


def _declare(lib):
    R = c_uint32
    cfg, pipe = c_void_p, c_void_p
    sigs = {
        "otlpflow_version": (c_char_p, []),
        "otlpflow_result_message": (c_char_p, [c_uint32]),
        "otlpflow_config_new": (R, [POINTER(c_void_p)]),
        "otlpflow_config_free": (None, [cfg]),
        "otlpflow_config_apply_env": (R, [cfg]),
        "otlpflow_config_set_endpoint": (R, [cfg, Str]),
        "otlpflow_config_set_service_name": (R, [cfg, Str]),
        "otlpflow_config_set_service_version": (R, [cfg, Str]),
        "otlpflow_config_add_header": (R, [cfg, Str, Str]),
        "otlpflow_config_add_resource_attribute": (R, [cfg, Str, POINTER(Value)]),
        "otlpflow_config_set_compression": (R, [cfg, c_uint32]),
        "otlpflow_config_set_policy": (R, [cfg, c_uint32, c_uint64]),
        "otlpflow_config_set_shards": (R, [cfg, c_size_t]),
        "otlpflow_config_set_workers": (R, [cfg, c_size_t]),
        "otlpflow_config_set_ring_bytes": (R, [cfg, c_size_t]),
        "otlpflow_config_set_max_batch_items": (R, [cfg, c_size_t]),
        "otlpflow_config_set_linger_ms": (R, [cfg, c_uint64]),
        "otlpflow_config_error": (R, [cfg, c_char_p, c_size_t, POINTER(c_size_t)]),
        "otlpflow_pipeline_start": (R, [cfg, POINTER(c_void_p)]),
        "otlpflow_pipeline_free": (None, [pipe]),
        "otlpflow_pipeline_scope": (R, [pipe, Str, Str, POINTER(Scope)]),
        "otlpflow_pipeline_record_span": (R, [pipe, POINTER(Scope), POINTER(Span)]),
        "otlpflow_pipeline_record_log": (R, [pipe, POINTER(Scope), POINTER(LogRecord)]),
        "otlpflow_pipeline_instrument": (R, [pipe, POINTER(Scope), c_uint32, Str, Str, Str,
                                             POINTER(c_double), c_size_t, POINTER(c_void_p)]),
        "otlpflow_instrument_record": (R, [c_void_p, c_double, POINTER(Attribute), c_size_t]),
        "otlpflow_instrument_free": (None, [c_void_p]),
        "otlpflow_pipeline_collect_metrics": (R, [pipe, POINTER(c_uint64)]),
        "otlpflow_pipeline_flush": (R, [pipe, c_uint64, POINTER(Stats)]),
        "otlpflow_pipeline_shutdown": (R, [pipe, c_uint64, POINTER(Stats)]),
        "otlpflow_pipeline_stats": (R, [pipe, POINTER(Stats)]),
        "otlpflow_pipeline_health": (R, [pipe, POINTER(c_uint32)]),
        "otlpflow_pipeline_last_error": (R, [pipe, c_char_p, c_size_t, POINTER(c_size_t)]),
        "otlpflow_fork_prepare": (None, []),
        "otlpflow_fork_parent": (None, []),
        "otlpflow_fork_child": (None, []),
    }
    for name, (res, args) in sigs.items():
        fn = getattr(lib, name)
        fn.restype = res
        fn.argtypes = args
