"""otlpflow for Python: record spans through otlpflow's lock-free engine.

    import otlpflow
    with otlpflow.Pipeline(endpoint="http://localhost:4317", service_name="api") as p:
        with p.span("GET /items", attributes={"http.request.method": "GET"}) as span:
            span.set_attribute("http.response.status_code", 200)
        print(p.stats())

Recording never blocks by default (policy="drop"); a refused span is counted
in stats() and `record_span` returns False. Setup and control errors raise
OtlpflowError subclasses carrying the C result code. A Pipeline may be used
from any number of threads at once, and keeps working in both processes after
os.fork(): the child restarts the engine on its next call.
"""

import ctypes
import logging
import os
import random
import threading
import time
import weakref

from . import _ffi, _spans
from ._spans import CURRENT, Span, SpanContext

__all__ = ["Pipeline", "Span", "SpanContext", "OtlpflowError", "ConfigError", "ShutdownError", "FlushTimeout",
           "LoggingHandler", "current_span", "version"]
__version__ = "0.1.0"

_lib = None
_lib_lock = threading.Lock()


def _library():
    global _lib
    with _lib_lock:
        if _lib is None:
            _lib = _ffi.load()
        return _lib


def version():
    """The version of the loaded native library."""
    return _library().otlpflow_version().decode()


# Result codes (otlpflow_result).
OK, NULL_ARGUMENT, INVALID_UTF8, BUFFER_TOO_SMALL, INVALID_CONFIG, FULL, TOO_LARGE, SHUTDOWN, TIMEOUT, \
    INVALID_ARGUMENT, TOO_MANY_ATTRIBUTES, INVALID_SCOPE, RATE_LIMITED, MEMORY = range(14)
PANIC = 100


class OtlpflowError(Exception):
    """A failed call; `code` is the C result code."""

    def __init__(self, code, message):
        super().__init__(message)
        self.code = code


class ConfigError(OtlpflowError, ValueError):
    """An invalid setting; the message names it."""


class ShutdownError(OtlpflowError):
    """The pipeline has been shut down."""


class FlushTimeout(OtlpflowError, TimeoutError):
    """flush() or shutdown() reached its timeout first; `stats` holds the counts then."""

    def __init__(self, code, message, stats):
        super().__init__(code, message)
        self.stats = stats


def _error(code, context):
    msg = "%s: %s" % (context, _library().otlpflow_result_message(code).decode())
    if code == INVALID_CONFIG:
        return ConfigError(code, msg)
    if code == SHUTDOWN:
        return ShutdownError(code, msg)
    if code in (INVALID_ARGUMENT, INVALID_UTF8, NULL_ARGUMENT, TOO_MANY_ATTRIBUTES, INVALID_SCOPE):
        return ValueError(msg)
    return OtlpflowError(code, msg)


def _recorded(code, context):
    """True if a record call took the record, False if it was refused and
    counted (full, too large, rate limited, over the memory budget); raises
    for invalid arguments."""
    if code == OK:
        return True
    if code in (FULL, TOO_LARGE, RATE_LIMITED, MEMORY):
        return False
    raise _error(code, context)


def _check(code, context):
    if code != OK:
        raise _error(code, context)


def _str(text):
    """A Str pointing into `data` (which the caller keeps alive)."""
    data = text.encode("utf-8") if isinstance(text, str) else bytes(text)
    return _ffi.Str(data, len(data)), data


_KINDS = _spans.KINDS
_CODES = _spans.STATUS
_COMPRESSION = {"none": 0, "gzip": 1, "zstd": 2}
_PROTOCOL = {"grpc": 0, "http/protobuf": 1}


# Attribute keys, span names and most values repeat from call to call:
# their encoded form is kept (bounded; never evicted, so a handed-out
# pointer stays valid). Dict operations are atomic under the GIL.
_STR_CACHE = {}
_STR_CACHE_MAX = 8192


class _Keep:
    """Holds the Python objects a C struct points into, for one call."""

    __slots__ = ("items",)

    def __init__(self):
        self.items = []

    def str(self, text):
        hit = _STR_CACHE.get(text)
        if hit is not None:
            return hit[0]  # the cache keeps its bytes alive
        s, data = _str(text)
        self.items.append(data)
        if len(_STR_CACHE) < _STR_CACHE_MAX and isinstance(text, str) and len(text) <= 128:
            _STR_CACHE[text] = (s, data)
        return s


def _fill_value(v, value, keep, allow_array=True):
    if isinstance(value, bool):
        v.kind, v.boolean = _ffi.BOOL, value
    elif isinstance(value, int):
        v.kind, v.i64 = _ffi.I64, value
    elif isinstance(value, float):
        v.kind, v.f64 = _ffi.F64, value
    elif isinstance(value, str):
        v.kind, v.str = _ffi.STR, keep.str(value)
    elif isinstance(value, (bytes, bytearray)):
        v.kind, v.str = _ffi.BYTES, keep.str(bytes(value))
    elif allow_array and isinstance(value, (list, tuple)):
        arr = (_ffi.Value * len(value))()
        for i, item in enumerate(value):
            _fill_value(arr[i], item, keep, allow_array=False)
        keep.items.append(arr)
        v.kind, v.array, v.array_len = _ffi.ARRAY, arr, len(value)
    else:
        raise TypeError("unsupported attribute value %r" % (value,))


def _attributes(attributes, keep):
    if not attributes:
        return None, 0
    items = list(attributes.items())
    arr = (_ffi.Attribute * len(items))()
    for i, (k, v) in enumerate(items):
        arr[i].key = keep.str(k)
        _fill_value(arr[i].value, v, keep)
    keep.items.append(arr)
    return arr, len(items)


def _id(value, size):
    if value is None:
        while True:
            raw = random.getrandbits(8 * size)
            if raw:
                return raw.to_bytes(size, "little")
    value = bytes(value)
    if len(value) != size:
        raise ValueError("id must be %d bytes, got %d" % (size, len(value)))
    return value


class _Guard:
    """A native handle and the calls using it: `with guard as h:` hands the
    handle to a call (ShutdownError once closed); `take()` withdraws it from
    new calls and waits for those in flight, so that the handle is freed
    only when no call can still be using it."""

    __slots__ = ("_cv", "_handle", "_busy")

    def __init__(self, handle):
        self._cv = threading.Condition(threading.Lock())
        self._handle, self._busy = handle, 0

    def __enter__(self):
        with self._cv:
            if self._handle is None:
                raise ShutdownError(SHUTDOWN, "the pipeline is closed")
            self._busy += 1
            return self._handle

    def __exit__(self, *exc):
        with self._cv:
            self._busy -= 1
            if self._busy == 0:
                self._cv.notify_all()
        return False

    def take(self):
        with self._cv:
            handle, self._handle = self._handle, None
            while self._busy:
                self._cv.wait()
            return handle


class Pipeline:
    """A running otlpflow pipeline (see the module docstring)."""

    def __init__(self, endpoint=None, protocol="grpc", compression="none", service_name=None,
                 service_version=None, resource=None, headers=None, policy="drop", max_wait=1.0,
                 shards=0, workers=0, linger=None, from_env=True, batch_spans=512, batch_interval=0.05,
                 **settings):
        if protocol not in _PROTOCOL:
            raise ConfigError(INVALID_CONFIG, "protocol must be one of %s" % ", ".join(sorted(_PROTOCOL)))
        if compression not in _COMPRESSION:
            raise ConfigError(INVALID_CONFIG, "compression must be one of none, gzip, zstd")
        if policy not in ("drop", "block"):
            raise ConfigError(INVALID_CONFIG, "policy must be 'drop' or 'block'")
        lib = self._lib = _library()
        cfg = ctypes.c_void_p()
        _check(lib.otlpflow_config_new(ctypes.byref(cfg)), "config")
        try:
            def setting(code, what):
                if code != OK:
                    raise self._config_error(cfg, code, what)
            if from_env:
                setting(lib.otlpflow_config_apply_env(cfg), "environment")
            keep = _Keep()
            if protocol != "grpc" or not from_env:
                setting(lib.otlpflow_config_set_protocol(cfg, _PROTOCOL[protocol]), "protocol")
            if endpoint is not None:
                setting(lib.otlpflow_config_set_endpoint(cfg, keep.str(endpoint)), "endpoint")
            if service_name is not None:
                setting(lib.otlpflow_config_set_service_name(cfg, keep.str(service_name)), "service_name")
            if service_version is not None:
                setting(lib.otlpflow_config_set_service_version(cfg, keep.str(service_version)), "service_version")
            for k, v in (resource or {}).items():
                val = _ffi.Value()
                _fill_value(val, v, keep, allow_array=False)
                setting(lib.otlpflow_config_add_resource_attribute(cfg, keep.str(k), ctypes.byref(val)), "resource")
            for k, v in (headers or {}).items():
                setting(lib.otlpflow_config_add_header(cfg, keep.str(k), keep.str(v)), "headers")
            if compression != "none" or not from_env:
                setting(lib.otlpflow_config_set_compression(cfg, _COMPRESSION[compression]), "compression")
            setting(lib.otlpflow_config_set_policy(cfg, 1 if policy == "block" else 0, int(max_wait * 1000)),
                    "policy")
            setting(lib.otlpflow_config_set_shards(cfg, shards), "shards")
            setting(lib.otlpflow_config_set_workers(cfg, workers), "workers")
            if linger is not None:
                setting(lib.otlpflow_config_set_linger_ms(cfg, int(linger * 1000)), "linger")
            for name, value in settings.items():
                if isinstance(value, bool):
                    value = "true" if value else "false"
                setting(lib.otlpflow_config_set(cfg, keep.str(name), keep.str(str(value))), name)
            handle = ctypes.c_void_p()
            setting(lib.otlpflow_pipeline_start(cfg, ctypes.byref(handle)), "start")
            self._guard = _Guard(handle)
        finally:
            lib.otlpflow_config_free(cfg)
        self._default_scope = self.scope("otlpflow.python", __version__)
        if batch_spans < 1 or not batch_interval > 0:
            raise ConfigError(INVALID_CONFIG, "batch_spans must be at least 1 and batch_interval positive")
        self._batch_spans = batch_spans
        self._buffers = {}
        # This pipeline's Span class: `p.span(...)` constructs it directly.
        self._span_class = type("Span", (Span,), {
            "__slots__": (),
            "_default_buffer": self._span_buffer(None),
            "_buffer_of": staticmethod(self._span_buffer),
        })
        self.span = self._span_class
        # The flush thread holds the pipeline weakly: a pipeline dropped
        # without close() is still collected (and closed by __del__).
        me = weakref.ref(self)

        def buffers():
            p = me()
            return None if p is None else list(p._buffers.values())
        self._flusher = _spans.Flusher(buffers, batch_interval)
        self._flusher.start()
        _LIVE.add(self)

    def _config_error(self, cfg, code, what):
        buf = ctypes.create_string_buffer(1024)
        n = ctypes.c_size_t()
        if self._lib.otlpflow_config_error(cfg, buf, len(buf), ctypes.byref(n)) == OK and n.value:
            return ConfigError(code, "%s: %s" % (what, buf.value.decode()))
        err = _error(code, what)
        return err if isinstance(err, Exception) else ConfigError(code, what)

    def scope(self, name, version=""):
        """Registers (or finds) an instrumentation scope."""
        sc = _ffi.Scope()
        keep = _Keep()
        with self._guard as h:
            _check(self._lib.otlpflow_pipeline_scope(h, keep.str(name), keep.str(version),
                                                     ctypes.byref(sc)), "scope")
        return sc

    def record_span(self, name, *, trace_id=None, span_id=None, parent_span_id=None, kind="internal",
                    start_time_unix_nano=None, end_time_unix_nano=None, attributes=None, events=None,
                    links=None, status=("unset", ""), scope=None):
        """Records a finished span. Returns True if accepted, False if refused
        (ring full or too large: counted in stats()). Raises ShutdownError
        after shutdown and ValueError/TypeError for invalid arguments."""
        keep = _Keep()
        s = _ffi.Span()
        ctypes.memmove(s.trace_id, _id(trace_id, 16), 16)
        ctypes.memmove(s.span_id, _id(span_id, 8), 8)
        if parent_span_id is not None:
            ctypes.memmove(s.parent_span_id, _id(parent_span_id, 8), 8)
        s.name = keep.str(name)
        try:
            s.kind = _KINDS[kind]
            s.status_code = _CODES[status[0]]
        except KeyError as e:
            raise ValueError("unknown kind or status %s" % e) from None
        s.status_message = keep.str(status[1])
        now = time.time_ns()
        s.end_time_unix_nano = now if end_time_unix_nano is None else end_time_unix_nano
        s.start_time_unix_nano = s.end_time_unix_nano if start_time_unix_nano is None else start_time_unix_nano
        s.attributes, s.attributes_len = _attributes(attributes, keep)
        if events:
            evs = (_ffi.Event * len(events))()
            for i, (t, ename, eattrs) in enumerate(events):
                evs[i].time_unix_nano = t
                evs[i].name = keep.str(ename)
                evs[i].attributes, evs[i].attributes_len = _attributes(eattrs, keep)
            keep.items.append(evs)
            s.events, s.events_len = evs, len(events)
        if links:
            ls = (_ffi.Link * len(links))()
            for i, (tid, sid, lattrs) in enumerate(links):
                ctypes.memmove(ls[i].trace_id, _id(tid, 16), 16)
                ctypes.memmove(ls[i].span_id, _id(sid, 8), 8)
                ls[i].attributes, ls[i].attributes_len = _attributes(lattrs, keep)
            keep.items.append(ls)
            s.links, s.links_len = ls, len(links)
        sc = self._default_scope if scope is None else scope
        with self._guard as h:
            code = self._lib.otlpflow_pipeline_record_span(h, ctypes.byref(sc), ctypes.byref(s))
        return _recorded(code, "record_span")

    def record_log(self, body, severity=9, severity_text="", attributes=None, time_unix_nano=None,
                   trace_id=None, span_id=None, event_name="", scope=None):
        """Records one log record (severity: the OTLP number, 9 INFO, 13
        WARN, 17 ERROR). Returns True, or False if it was refused (counted:
        full, rate limited, memory)."""
        keep = _Keep()
        rec = _ffi.LogRecord()
        now = time.time_ns()
        rec.time_unix_nano = now if time_unix_nano is None else time_unix_nano
        rec.observed_time_unix_nano = now
        rec.severity_number = severity
        rec.severity_text = keep.str(severity_text)
        if body is not None:
            rec.has_body = True
            _fill_value(rec.body, body, keep, allow_array=False)
        rec.attributes, rec.attributes_len = _attributes(attributes, keep)
        if trace_id:
            ctypes.memmove(rec.trace_id, _id(trace_id, 16), 16)
        if span_id:
            ctypes.memmove(rec.span_id, _id(span_id, 8), 8)
        rec.event_name = keep.str(event_name)
        sc = self._default_scope if scope is None else scope
        with self._guard as h:
            code = self._lib.otlpflow_pipeline_record_log(h, ctypes.byref(sc), ctypes.byref(rec))
        return _recorded(code, "record_log")

    def _instrument(self, kind, name, unit, description, bounds=None, scope=None):
        keep = _Keep()
        out = ctypes.c_void_p()
        bounds = list(bounds or [])
        arr = (ctypes.c_double * len(bounds))(*bounds) if bounds else None
        sc = self._default_scope if scope is None else scope
        with self._guard as h:
            _check(self._lib.otlpflow_pipeline_instrument(
                h, ctypes.byref(sc), kind, keep.str(name), keep.str(unit), keep.str(description),
                arr, len(bounds), ctypes.byref(out)), "instrument %s" % name)
        return Instrument(self._lib, out.value, name)

    def counter(self, name, unit="", description="", scope=None):
        """A monotonic counter: `add(n, attributes)` with whole n >= 0."""
        return self._instrument(1, name, unit, description, scope=scope)

    def up_down_counter(self, name, unit="", description="", scope=None):
        """A counter that can go down: `add(n, attributes)` with whole n."""
        return self._instrument(2, name, unit, description, scope=scope)

    def gauge(self, name, unit="", description="", scope=None):
        """A gauge: `set(value, attributes)`."""
        return self._instrument(3, name, unit, description, scope=scope)

    def histogram(self, name, unit="", description="", bounds=None, scope=None):
        """An explicit-bucket histogram: `record(value, attributes)`."""
        return self._instrument(4, name, unit, description, bounds, scope=scope)

    def collect_metrics(self):
        """Collects every instrument now; returns the points recorded."""
        n = ctypes.c_uint64()
        with self._guard as h:
            _check(self._lib.otlpflow_pipeline_collect_metrics(h, ctypes.byref(n)), "collect_metrics")
        return n.value

    def span(self, name, attributes=None, kind="internal", trace_id=None, parent_span_id=None, scope=None,
             parent=None, links=None):
        """A span timed by a `with` block and recorded when it ends (status
        error and an `exception` event if the block raised). Inside another
        span (this thread's or asyncio task's current one) it continues that
        span's trace as its child; `parent` (a Span or a SpanContext from
        `otlpflow.propagation.extract`) names the parent explicitly.
        Recorded spans wait in a bounded buffer (see `batch_spans`).

        (Replaced on each pipeline by its own Span class, which takes the
        same arguments: one Python call less per span.)"""
        return self._span_class(name, attributes, kind, trace_id, parent_span_id, scope, parent, links)

    def _span_buffer(self, scope):
        sc = self._default_scope if scope is None else scope
        buf = self._buffers.get(sc.id)
        if buf is None:
            buf = self._buffers.setdefault(sc.id, _spans.SpanBuffer(self._sender(sc), self._batch_spans))
        return buf

    def _sender(self, sc):
        lib, guard = self._lib, self._guard
        accepted, refused = ctypes.c_size_t(), ctypes.c_size_t()
        ref_sc, ref_a, ref_r = ctypes.byref(sc), ctypes.byref(accepted), ctypes.byref(refused)

        def send(data):
            with guard as h:
                _check(lib.otlpflow_pipeline_record_marshalled_spans(h, ref_sc, data, len(data), ref_a, ref_r),
                       "span hand-over")
            return accepted.value, refused.value
        return send

    def _hand_over(self):
        for buf in list(getattr(self, "_buffers", {}).values()):
            buf.hand_over()

    def stats(self):
        """The counters as a dict (never blocks)."""
        st = _ffi.Stats()
        with self._guard as h:
            _check(self._lib.otlpflow_pipeline_stats(h, ctypes.byref(st)), "stats")
        return self._with_buffers(st.to_dict())

    def _with_buffers(self, d):
        bufs = list(getattr(self, "_buffers", {}).values())
        d["python_buffered"] = sum(len(b.spans) for b in bufs)
        d["python_handed_over"] = sum(b.handed_over for b in bufs)
        return d

    def health(self):
        """'healthy', 'degraded' (some export attempts failing) or 'down'."""
        out = ctypes.c_uint32()
        with self._guard as h:
            _check(self._lib.otlpflow_pipeline_health(h, ctypes.byref(out)), "health")
        return ("healthy", "degraded", "down")[out.value]

    def last_error(self):
        """The last export error, or None."""
        buf = ctypes.create_string_buffer(4096)
        n = ctypes.c_size_t()
        with self._guard as h:
            _check(self._lib.otlpflow_pipeline_last_error(h, buf, len(buf), ctypes.byref(n)), "last_error")
        return buf.value.decode() or None

    def _timed(self, fn, timeout, what):
        self._hand_over()
        st = _ffi.Stats()
        with self._guard as h:
            code = fn(h, int(timeout * 1000), ctypes.byref(st))
        if code == TIMEOUT:
            raise FlushTimeout(code, "%s: timed out after %ss" % (what, timeout), self._with_buffers(st.to_dict()))
        _check(code, what)
        return self._with_buffers(st.to_dict())

    def flush(self, timeout=10.0):
        """Waits until everything recorded so far is exported or failed;
        returns the stats. Raises FlushTimeout at the timeout."""
        return self._timed(self._lib.otlpflow_pipeline_flush, timeout, "flush")

    def shutdown(self, timeout=10.0):
        """Flushes (up to `timeout`), stops the workers, returns the final stats."""
        return self._timed(self._lib.otlpflow_pipeline_shutdown, timeout, "shutdown")

    def close(self):
        """Shuts down (if needed) and frees the native pipeline. Calls made
        from other threads meanwhile finish first; later ones raise
        ShutdownError: the native pipeline is never used after it is freed."""
        flusher = getattr(self, "_flusher", None)
        if flusher is not None:
            flusher.stop()
        guard = getattr(self, "_guard", None)
        if guard is not None and guard._handle is not None:
            try:
                self._hand_over()
            except OtlpflowError:
                pass
        handle = guard.take() if guard else None
        if handle:
            self._lib.otlpflow_pipeline_free(handle)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        try:
            self.shutdown()
        except ShutdownError:
            pass
        self.close()
        return False

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


class Instrument:
    """A lock-free instrument of a pipeline (see Pipeline.counter and the
    others). `add`, `set` and `record` are the same native call."""

    def __init__(self, lib, handle, name):
        self._lib, self._guard, self.name = lib, _Guard(handle), name

    def record(self, value, attributes=None):
        keep = _Keep()
        attrs, n = _attributes(attributes, keep)
        with self._guard as h:
            _check(self._lib.otlpflow_instrument_record(h, float(value), attrs, n),
                   "instrument %s" % self.name)

    add = record
    set = record

    def close(self):
        handle = self._guard.take()
        if handle:
            self._lib.otlpflow_instrument_free(handle)

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


# Python logging levels to OTLP severity numbers (the OpenTelemetry
# Python SDK's mapping: DEBUG 5, INFO 9, WARNING 13, ERROR 17, CRITICAL 21).
def _severity(levelno):
    if levelno >= 50:
        return 21
    if levelno >= 40:
        return 17
    if levelno >= 30:
        return 13
    if levelno >= 20:
        return 9
    if levelno >= 10:
        return 5
    return 1


class LoggingHandler(logging.Handler):
    """A logging.Handler that sends Python log records through otlpflow as
    OTLP log records: the formatted message as body, the level as severity,
    the logger name, file, line and thread as attributes (semantic
    convention names), and `extra` fields whose values are str, int, float
    or bool as attributes too. Never blocks the caller under the default
    policy; refused records are counted in the pipeline's stats."""

    _STANDARD = frozenset(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime"}

    def __init__(self, pipeline, level=logging.NOTSET, scope=None):
        super().__init__(level)
        self.pipeline = pipeline
        self.scope = scope

    def emit(self, record):
        try:
            attributes = {
                "code.function.name": record.funcName,
                "code.file.path": record.pathname,
                "code.line.number": record.lineno,
                "thread.name": record.threadName,
                "log.logger": record.name,
            }
            for key, value in vars(record).items():
                if key not in self._STANDARD and isinstance(value, (str, int, float, bool)):
                    attributes[key] = value
            if record.exc_info and record.exc_info[0] is not None:
                attributes["exception.type"] = record.exc_info[0].__name__
                attributes["exception.message"] = str(record.exc_info[1])
            self.pipeline.record_log(
                self.format(record),
                severity=_severity(record.levelno),
                severity_text=record.levelname,
                attributes=attributes,
                time_unix_nano=int(record.created * 1e9),
                scope=self.scope,
            )
        except Exception:
            self.handleError(record)


# Live pipelines, for the fork and exit hooks.
_LIVE = weakref.WeakSet()


def current_span():
    """The current span of this thread or asyncio task (a Span, a remote
    SpanContext, or None)."""
    return CURRENT.get()


def _before_fork():
    # Spans waiting in Python go to the engine first, so that the child
    # does not inherit (and send again) the parent's.
    for p in list(_LIVE):
        try:
            p._hand_over()
        except Exception:
            pass


def _restart_in_child():
    # The child starts with empty buffers (the parent handed its spans
    # over before the fork), fresh locks (another thread may have held
    # one at the fork) and its own flush thread: threads do not survive
    # fork.
    for p in list(_LIVE):
        for buf in p._buffers.values():
            buf.spans = []
            buf._lock = threading.Lock()
        p._flusher.start()


def _at_exit():
    _before_fork()


import atexit  # noqa: E402

atexit.register(_at_exit)


def _after_fork_in_child():
    # The native library restarts its engine in the child by itself (it
    # registers pthread_atfork hooks); calling the hook again is harmless and
    # covers a library loaded in a way that bypassed them.
    if _lib is not None:
        _lib.otlpflow_fork_child()
    _restart_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_before_fork, after_in_child=_after_fork_in_child)
