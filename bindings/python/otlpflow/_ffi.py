"""ctypes declarations mirroring include/otlpflow.h, and library loading.

The shared library is found, in order, through the OTLPFLOW_LIBRARY
environment variable (a path), next to this package, or in the cargo target
folder of a source checkout (target/release, then target/debug).
"""

import ctypes
import os
import sys
from ctypes import (POINTER, Structure, c_bool, c_char_p, c_double, c_int64,
                    c_size_t, c_uint8, c_uint32, c_uint64, c_void_p)

# The library file as cargo names it on each platform.
LIB_NAME = {"darwin": "libotlpflow_ffi.dylib", "win32": "otlpflow_ffi.dll"}.get(sys.platform, "libotlpflow_ffi.so")


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


# The number of drop reasons, fail reasons and signals: the lengths of the
# arrays in otlpflow_stats (OTLPFLOW_DROP_REASONS, ...). Their names come
# from the library (otlpflow_drop_reason_name, ...), read once at load.
DROP_REASONS, FAIL_REASONS, SIGNALS = 7, 5, 3
SIGNAL_NAMES = ("traces", "logs", "metrics")
DROP_NAMES, FAIL_NAMES = [], []

# The u64 fields after the arrays, in the C struct's order.
STATS_TAIL = [
    "requests", "retries", "request_errors", "in_flight_requests", "bytes_raw", "bytes_wire",
    "export_latency_p50_ns", "export_latency_p99_ns", "export_latency_max_ns",
    "e2e_latency_p50_ns", "e2e_latency_p99_ns", "concurrency_limit", "batch_target",
    "memory_used", "memory_peak", "breaker_opened", "ring_fill_max_pct",
    "export_latency_min_ns", "export_latency_mean_ns", "e2e_latency_min_ns", "e2e_latency_mean_ns",
    "e2e_latency_max_ns", "uptime_ms", "rate_window_ms", "offered_per_sec", "exported_per_sec",
    "bytes_raw_per_sec", "bytes_wire_per_sec", "requests_per_sec", "request_errors_per_sec",
    "exported_per_sec_since_start", "bytes_wire_per_sec_since_start", "requests_per_sec_since_start",
]
# After the per-second arrays: the disk spool.
STATS_SPOOL = [
    "spooled", "spool_bytes", "spool_replayed", "spool_corrupt", "spool_dropped_full", "spool_failed",
    "spool_errors",
    # Then the instruments' own.
    "dropped_measurements", "scopes_overflowed",
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


class MetricPoint(Structure):
    _fields_ = [
        ("name", Str),
        ("description", Str),
        ("unit", Str),
        ("attributes", POINTER(Attribute)),
        ("attributes_len", c_size_t),
        ("start_time_unix_nano", c_uint64),
        ("time_unix_nano", c_uint64),
        ("flags", c_uint32),
        ("type_", c_uint32),
        ("temporality", c_uint32),
        ("monotonic", c_bool),
        ("is_double", c_bool),
        ("as_int", c_int64),
        ("as_double", c_double),
        ("count", c_uint64),
        ("has_sum", c_bool),
        ("sum", c_double),
        ("has_min_max", c_bool),
        ("min", c_double),
        ("max", c_double),
        ("bounds", POINTER(c_double)),
        ("bounds_len", c_size_t),
        ("bucket_counts", POINTER(c_uint64)),
        ("bucket_counts_len", c_size_t),
    ]


class Stats(Structure):
    """otlpflow_stats, a versioned struct: `size` is set to its size here,
    before the library fills it."""
    _fields_ = [
        ("size", c_size_t),
        ("offered", c_uint64),
        ("accepted", c_uint64),
        ("exported", c_uint64),
        ("failed", c_uint64),
        ("rejected", c_uint64),
        ("in_flight", c_uint64),
        ("dropped", c_uint64 * DROP_REASONS),
        ("failed_by_reason", c_uint64 * FAIL_REASONS),
        ("offered_by_signal", c_uint64 * SIGNALS),
        ("accepted_by_signal", c_uint64 * SIGNALS),
        ("exported_by_signal", c_uint64 * SIGNALS),
    ] + [(name, c_uint64) for name in STATS_TAIL] + [
        ("dropped_per_sec", c_uint64 * DROP_REASONS),
        ("failed_per_sec", c_uint64 * FAIL_REASONS),
    ] + [(name, c_uint64) for name in STATS_SPOOL]

    def __init__(self):
        super().__init__()
        self.size = ctypes.sizeof(Stats)

    def to_dict(self):
        """A flat dict: the totals, `dropped_<reason>` and `failed_<reason>`
        for every reason, `<signal>_accepted` and friends, and the rest."""
        d = {name: getattr(self, name)
             for name in ("offered", "accepted", "exported", "failed", "rejected", "in_flight")}
        d["dropped"] = sum(self.dropped)
        for i, name in enumerate(DROP_NAMES):
            d["dropped_" + name] = self.dropped[i]
        for i, name in enumerate(FAIL_NAMES):
            d["failed_" + name] = self.failed_by_reason[i]
        for i, sig in enumerate(SIGNAL_NAMES):
            d[sig + "_offered"] = self.offered_by_signal[i]
            d[sig + "_accepted"] = self.accepted_by_signal[i]
            d[sig + "_exported"] = self.exported_by_signal[i]
        for name in STATS_TAIL:
            d[name] = getattr(self, name)
        for i, name in enumerate(DROP_NAMES):
            d["dropped_%s_per_sec" % name] = self.dropped_per_sec[i]
        for i, name in enumerate(FAIL_NAMES):
            d["failed_%s_per_sec" % name] = self.failed_per_sec[i]
        for name in STATS_SPOOL:
            d[name] = getattr(self, name)
        return d


DELIVERY_MESSAGE = 256


class Delivery(Structure):
    """otlpflow_delivery: how the spans of one waiting call ended."""
    _fields_ = [
        ("size", c_size_t),
        ("records", c_uint64),
        ("delivered", c_uint64),
        ("rejected", c_uint64),
        ("dropped", c_uint64 * DROP_REASONS),
        ("failed", c_uint64 * FAIL_REASONS),
        ("message", ctypes.c_char * DELIVERY_MESSAGE),
    ]

    def __init__(self):
        super().__init__()
        self.size = ctypes.sizeof(Delivery)

    def to_dict(self):
        """records, delivered, rejected, `dropped_<reason>` and
        `failed_<reason>` for every reason, and the first error message
        (None if there was none)."""
        d = {"records": self.records, "delivered": self.delivered, "rejected": self.rejected}
        for i, name in enumerate(DROP_NAMES):
            d["dropped_" + name] = self.dropped[i]
        for i, name in enumerate(FAIL_NAMES):
            d["failed_" + name] = self.failed[i]
        d["message"] = self.message.decode("utf-8", "replace") or None
        return d


ENDPOINT_NAME = 256
SIGNAL_NAMES = ("traces", "logs", "metrics")


class EndpointStats(Structure):
    """otlpflow_endpoint_stats: what one endpoint of a signal took."""
    _fields_ = [
        ("size", c_size_t),
        ("signal", c_uint32),
        ("breaker_open", c_uint32),
        ("exported", c_uint64),
        ("requests", c_uint64),
        ("request_errors", c_uint64),
        ("failed", c_uint64),
        ("endpoint", ctypes.c_char * ENDPOINT_NAME),
    ]

    def __init__(self):
        super().__init__()
        self.size = ctypes.sizeof(EndpointStats)

    def to_dict(self):
        """signal (its name), endpoint (`host:port`), exported, requests,
        request_errors, failed, breaker_open (a bool)."""
        return {
            "signal": SIGNAL_NAMES[self.signal],
            "endpoint": self.endpoint.decode("utf-8", "replace"),
            "exported": self.exported,
            "requests": self.requests,
            "request_errors": self.request_errors,
            "failed": self.failed,
            "breaker_open": bool(self.breaker_open),
        }


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


class PythonApi(Structure):
    """`otlpflow_python_api`: what the native side needs to read span
    records as the Python objects themselves (see `python_api`)."""
    _fields_ = ([(name, c_size_t) for name in ("ob_type_offset", "ob_size_offset", "list_items_offset",
                                               "tuple_items_offset")]
                + [(name, c_void_p) for name in ("none", "true_object", "str_type", "int_type", "bool_type",
                                                 "float_type", "bytes_type", "list_type", "tuple_type",
                                                 "dict_type", "sixty_four")]
                + [(name, c_void_p) for name in (
                    "unicode_as_utf8_and_size", "long_as_long_long_and_overflow", "long_as_unsigned_long_long_mask",
                    "long_as_unsigned_long_long", "number_rshift", "dec_ref", "dict_size", "dict_next",
                    "float_as_double", "bytes_as_string_and_size", "err_occurred", "err_clear")])


# The CPython entry point behind each function field of PythonApi.
_PYTHON_ENTRY_POINTS = {
    "unicode_as_utf8_and_size": "PyUnicode_AsUTF8AndSize",
    "long_as_long_long_and_overflow": "PyLong_AsLongLongAndOverflow",
    "long_as_unsigned_long_long_mask": "PyLong_AsUnsignedLongLongMask",
    "long_as_unsigned_long_long": "PyLong_AsUnsignedLongLong",
    "number_rshift": "PyNumber_Rshift",
    "dec_ref": "Py_DecRef",
    "dict_size": "PyDict_Size",
    "dict_next": "PyDict_Next",
    "float_as_double": "PyFloat_AsDouble",
    "bytes_as_string_and_size": "PyBytes_AsStringAndSize",
    "err_occurred": "PyErr_Occurred",
    "err_clear": "PyErr_Clear",
}

_SIXTY_FOUR = 64


def python_api():
    """This interpreter's `PythonApi`, or None where span records must go
    through marshal instead: not CPython, a free-threaded build, an object
    layout other than the one checked here. OTLPFLOW_PYTHON_HANDOVER set to
    `marshal` chooses marshal; set to `objects`, an interpreter without the
    objects path is an error rather than a silent fallback."""
    choice = os.environ.get("OTLPFLOW_PYTHON_HANDOVER", "")
    if choice == "marshal":
        return None
    api = _python_api()
    if api is None and choice == "objects":
        raise OSError("otlpflow: OTLPFLOW_PYTHON_HANDOVER=objects, but this interpreter's objects cannot be read "
                      "(not CPython, free-threaded, or another object layout)")
    return api


def _python_api():
    """`python_api` without the choice. The layout is checked against live
    objects, not assumed: every object's type pointer one word in, a list's
    and a tuple's length two words in, a list's item pointer and a tuple's
    first item three words in."""
    if sys.implementation.name != "cpython":
        return None
    import sysconfig
    if sysconfig.get_config_var("Py_GIL_DISABLED"):
        return None
    word = ctypes.sizeof(c_void_p)

    def at(obj, offset, ctype=c_void_p):
        return ctype.from_address(id(obj) + offset).value

    probe_list, probe_tuple = ["a", 2], ("b", 3.0)
    for obj in (probe_list, probe_tuple, "x", 1 << 100, 1.5, b"y", {"k": 1}, None, True):
        if at(obj, word) != id(type(obj)):
            return None
    if at(probe_list, 2 * word, ctypes.c_ssize_t) != 2 or at(probe_tuple, 2 * word, ctypes.c_ssize_t) != 2:
        return None
    items = at(probe_list, 3 * word)
    if not items or [c_void_p.from_address(items + i * word).value for i in (0, 1)] != [id(x) for x in probe_list]:
        return None
    if [at(probe_tuple, (3 + i) * word) for i in (0, 1)] != [id(x) for x in probe_tuple]:
        return None
    try:
        entries = {field: ctypes.cast(getattr(ctypes.pythonapi, name), c_void_p).value
                   for field, name in _PYTHON_ENTRY_POINTS.items()}
    except AttributeError:
        return None
    return PythonApi(word, 2 * word, 3 * word, 3 * word, id(None), id(True), id(str), id(int), id(bool),
                     id(float), id(bytes), id(list), id(tuple), id(dict), id(_SIXTY_FOUR), **entries)


# Functions called with the GIL held (they read Python objects): declared
# through PYFUNCTYPE, which keeps it, rather than on the library.
WITH_GIL = {
    "otlpflow_python_stage_spans": (c_uint32, [POINTER(PythonApi), ctypes.py_object]),
}


def stage_function(lib):
    """`otlpflow_python_stage_spans`, holding the GIL."""
    res, args = WITH_GIL["otlpflow_python_stage_spans"]
    return ctypes.PYFUNCTYPE(res, *args)(("otlpflow_python_stage_spans", lib))


def load():
    tried = []
    for path in _candidates():
        if os.path.exists(path):
            lib = ctypes.CDLL(path)
            _declare(lib)
            DROP_NAMES[:] = [lib.otlpflow_drop_reason_name(i).decode() for i in range(DROP_REASONS)]
            FAIL_NAMES[:] = [lib.otlpflow_fail_reason_name(i).decode() for i in range(FAIL_REASONS)]
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
        "otlpflow_config_free": (R, [cfg]),
        "otlpflow_config_apply_env": (R, [cfg]),
        "otlpflow_config_set_endpoint": (R, [cfg, Str]),
        "otlpflow_config_set_service_name": (R, [cfg, Str]),
        "otlpflow_config_set_service_version": (R, [cfg, Str]),
        "otlpflow_config_add_header": (R, [cfg, Str, Str]),
        "otlpflow_config_add_resource_attribute": (R, [cfg, Str, POINTER(Value)]),
        "otlpflow_config_set_compression": (R, [cfg, c_uint32]),
        "otlpflow_config_set_protocol": (R, [cfg, c_uint32]),
        "otlpflow_config_set_policy": (R, [cfg, c_uint32, c_uint64]),
        "otlpflow_config_set_shards": (R, [cfg, c_size_t]),
        "otlpflow_config_set_workers": (R, [cfg, c_size_t]),
        "otlpflow_config_set_ring_bytes": (R, [cfg, c_size_t]),
        "otlpflow_config_set_max_batch_items": (R, [cfg, c_size_t]),
        "otlpflow_config_set_linger_ms": (R, [cfg, c_uint64]),
        "otlpflow_config_set_max_in_flight": (R, [cfg, c_size_t]),
        "otlpflow_config_set_request_timeout_ms": (R, [cfg, c_uint64]),
        "otlpflow_config_set_memory_budget": (R, [cfg, c_uint64]),
        "otlpflow_config_set_adaptive_concurrency": (R, [cfg, c_size_t, c_size_t]),
        "otlpflow_config_set_rate_limit": (R, [cfg, c_double, c_uint64]),
        "otlpflow_config_set_egress_byte_rate": (R, [cfg, c_double, c_uint64]),
        "otlpflow_config_set": (R, [cfg, Str, Str]),
        "otlpflow_config_error": (R, [cfg, c_char_p, c_size_t, POINTER(c_size_t)]),
        "otlpflow_pipeline_start": (R, [cfg, POINTER(c_void_p)]),
        "otlpflow_pipeline_free": (R, [pipe]),
        "otlpflow_pipeline_scope": (R, [pipe, Str, Str, POINTER(Scope)]),
        "otlpflow_pipeline_record_span": (R, [pipe, POINTER(Scope), POINTER(Span)]),
        "otlpflow_pipeline_record_log": (R, [pipe, POINTER(Scope), POINTER(LogRecord)]),
        "otlpflow_pipeline_record_metric": (R, [pipe, POINTER(Scope), POINTER(MetricPoint)]),
        "otlpflow_pipeline_scope_with_attributes": (R, [pipe, Str, Str, POINTER(Attribute), c_size_t,
                                                        POINTER(Scope)]),
        "otlpflow_pipeline_count_invalid": (R, [pipe, c_uint32]),
        "otlpflow_pipeline_adopt_resource": (R, [pipe, POINTER(Attribute), c_size_t, POINTER(c_bool)]),
        "otlpflow_pipeline_record_batch": (R, [pipe, POINTER(Scope), POINTER(Span), c_size_t,
                                               POINTER(c_size_t), POINTER(c_size_t)]),
        "otlpflow_pipeline_record_batch_wait": (R, [pipe, POINTER(Scope), POINTER(Span), c_size_t, c_uint64,
                                                    POINTER(Delivery)]),
        "otlpflow_pipeline_record_marshalled_spans": (R, [pipe, POINTER(Scope), c_char_p, c_size_t,
                                                          POINTER(c_size_t), POINTER(c_size_t)]),
        "otlpflow_pipeline_record_staged_spans": (R, [pipe, POINTER(Scope), POINTER(c_size_t), POINTER(c_size_t)]),
        "otlpflow_pipeline_instrument": (R, [pipe, POINTER(Scope), c_uint32, Str, Str, Str,
                                             POINTER(c_double), c_size_t, POINTER(c_void_p)]),
        "otlpflow_instrument_record": (R, [c_void_p, c_double, POINTER(Attribute), c_size_t]),
        "otlpflow_instrument_free": (R, [c_void_p]),
        "otlpflow_pipeline_span_template": (R, [pipe, POINTER(Scope), Str, c_uint32, POINTER(Attribute), c_size_t,
                                                POINTER(c_void_p)]),
        "otlpflow_span_template_free": (R, [c_void_p]),
        "otlpflow_attribute_set_new": (R, [POINTER(Attribute), c_size_t, POINTER(c_void_p)]),
        "otlpflow_attribute_set_free": (R, [c_void_p]),
        "otlpflow_pipeline_record_templated_span": (R, [pipe, c_void_p, POINTER(Span)]),
        "otlpflow_pipeline_record_span_with_set": (R, [pipe, POINTER(Scope), POINTER(Span), c_void_p]),
        "otlpflow_pipeline_record_log_with_set": (R, [pipe, POINTER(Scope), POINTER(LogRecord), c_void_p]),
        "otlpflow_pipeline_record_metric_with_set": (R, [pipe, POINTER(Scope), POINTER(MetricPoint), c_void_p]),
        "otlpflow_pipeline_collect_metrics": (R, [pipe, POINTER(c_uint64)]),
        "otlpflow_pipeline_flush": (R, [pipe, c_uint64, POINTER(Stats)]),
        "otlpflow_pipeline_shutdown": (R, [pipe, c_uint64, POINTER(Stats)]),
        "otlpflow_pipeline_stats": (R, [pipe, POINTER(Stats)]),
        "otlpflow_pipeline_health": (R, [pipe, POINTER(c_uint32)]),
        "otlpflow_pipeline_endpoint_stats": (R, [pipe, c_size_t, POINTER(EndpointStats), POINTER(c_size_t)]),
        "otlpflow_pipeline_last_error": (R, [pipe, c_char_p, c_size_t, POINTER(c_size_t)]),
        "otlpflow_drop_reason_name": (c_char_p, [c_uint32]),
        "otlpflow_fail_reason_name": (c_char_p, [c_uint32]),
        "otlpflow_fork_prepare": (None, []),
        "otlpflow_fork_parent": (None, []),
        "otlpflow_fork_child": (None, []),
    }
    for name, (res, args) in sigs.items():
        fn = getattr(lib, name)
        fn.restype = res
        fn.argtypes = args
