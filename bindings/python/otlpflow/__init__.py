"""otlpflow for Python: record spans through otlpflow's lock-free engine.

    import otlpflow
    with otlpflow.Pipeline(endpoint="http://localhost:4317", service_name="api") as p:
        with p.span("GET /items", attributes={"http.request.method": "GET"}) as span:
            span.set_attribute("http.response.status_code", 200)
        print(p.stats())

Recording never blocks by default (policy="drop", unless the environment's
OTLPFLOW_POLICY says otherwise); a refused span is counted
in stats() and `record_span` returns False. Setup and control errors raise
OtlpflowError subclasses carrying the C result code. A Pipeline may be used
from any number of threads at once, and keeps working in both processes after
os.fork(): the child restarts the engine on its next call.
"""

from __future__ import annotations

import atexit
import ctypes
import os
import threading
import time
import weakref
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

from . import _config, _ffi, _native, _spans
from ._instruments import Instrument
from ._logging import LoggingHandler
from ._native import *  # noqa: F401,F403  (the result codes and errors)
from ._native import (Result, OtlpflowError, ConfigError, ShutdownError, FlushTimeout, version, _library,
                      _recorded, _check, _Keep, _fill_value, _attributes, _id, _c_span, _fits, _millis, _U32, _U64,
                      _I64, INVALID_CONFIG, OK, TIMEOUT)
from ._spans import CURRENT, Span, SpanContext, SpanTemplate


class AttributeSet:
    """Attributes encoded once on the native side (`Pipeline.attribute_set`)."""

    __slots__ = ("attributes", "_handle")

    def __init__(self, handle, attributes):
        self._handle, self.attributes = handle, dict(attributes)

    def _live(self):
        return self._handle

    def __repr__(self):
        return "AttributeSet(%d attributes)" % len(self.attributes)


__all__ = ["Pipeline", "Span", "SpanContext", "SpanTemplate", "AttributeSet", "Instrument", "LoggingHandler",
           "Result", "OtlpflowError", "ConfigError", "ShutdownError", "FlushTimeout", "current_span", "version"]
__version__ = "0.1.0"

class Pipeline:
    """A running otlpflow pipeline (see the module docstring)."""

    def __init__(self, endpoint: Optional[str] = None, protocol: str = "grpc", compression: str = "none",
                 service_name: Optional[str] = None, service_version: Optional[str] = None,
                 resource: Optional[Mapping[str, Any]] = None, headers: Optional[Mapping[str, str]] = None,
                 policy: Optional[str] = None, max_wait: Optional[float] = None, shards: int = 0, workers: int = 0,
                 linger: Optional[float] = None, from_env: bool = True, batch_spans: int = 128,
                 batch_interval: float = 0.05, **settings: Union[str, int, float, bool]) -> None:
        lib = self._lib = _library()
        self._guard = _config.start(
            lib, endpoint=endpoint, protocol=protocol, compression=compression, service_name=service_name,
            service_version=service_version, resource=resource, headers=headers, policy=policy,
            max_wait=max_wait, shards=shards, workers=workers, linger=linger, from_env=from_env,
            settings=settings)
        self._default_scope = self.scope("otlpflow.python", __version__)
        if batch_spans < 1 or not batch_interval > 0:
            raise ConfigError(INVALID_CONFIG, "batch_spans must be at least 1 and batch_interval positive")
        # 128 by default: a batch of span records walked while its objects
        # are still in the core's cache. With 512 the same loop had
        # 0.78x-1.01x the throughput at 1.0x-1.28x the CPU a span in seven
        # interleaved pairs (BENCHMARKS, "A smaller Python hand-over"); the
        # two native calls a batch (0.3-0.35 us each from Python here) cost
        # under 10 ns a span at 128.
        self._batch_spans = batch_spans
        self._buffers = {}
        # Native template and attribute-set handles: freed after the
        # pipeline, when no hand-over can use them any more.
        self._templates, self._sets = [], []
        self._templates_lock = threading.Lock()
        # This pipeline's span function: `p.span(...)` calls it directly.
        self._span = self.span = _spans.span_maker(self._span_buffer(None), self._span_buffer)
        # The flush thread holds the pipeline weakly: a pipeline dropped
        # without close() is still collected (and closed by __del__).
        me = weakref.ref(self)

        def buffers():
            p = me()
            return None if p is None else list(p._buffers.values())
        self._flusher = _spans.Flusher(buffers, batch_interval)
        self._flusher.start()
        _LIVE.add(self)

    def scope(self, name: str, version: str = "", attributes: Optional[Mapping[str, Any]] = None) -> _ffi.Scope:
        """Registers (or finds) an instrumentation scope."""
        sc = _ffi.Scope()
        keep = _Keep()
        with self._guard as h:
            if attributes:
                attrs, n = _attributes(attributes, keep)
                code = self._lib.otlpflow_pipeline_scope_with_attributes(
                    h, keep.str(name), keep.str(version), attrs, n, ctypes.byref(sc))
            else:
                code = self._lib.otlpflow_pipeline_scope(h, keep.str(name), keep.str(version), ctypes.byref(sc))
        _check(code, "scope")
        return sc

    def count_invalid(self, signal: str) -> None:
        """Counts one record of `signal` ("traces", "logs", "metrics") the
        host could not hand over as offered and dropped (`dropped_invalid`)."""
        with self._guard as h:
            _check(self._lib.otlpflow_pipeline_count_invalid(h, _ffi.SIGNAL_NAMES.index(signal)), "count_invalid")

    def adopt_resource(self, attributes: Mapping[str, Any]) -> bool:
        """Uses `attributes` as the resource from now on if the pipeline was
        given none (no service name, version or resource attribute; those
        of OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES do not count, as
        the SDK's resource holds them too): what the OpenTelemetry SDK
        drop-ins do with the SDK's resource. Once
        only; returns whether it happened."""
        keep = _Keep()
        attrs, n = _attributes(attributes, keep)
        out = ctypes.c_bool()
        with self._guard as h:
            _check(self._lib.otlpflow_pipeline_adopt_resource(h, attrs, n, ctypes.byref(out)), "adopt_resource")
        return out.value

    def record_span(self, name: str, *, scope=None, **fields):
        """Records a finished span. Returns True if accepted, False if refused
        (ring full or too large: counted in stats()). Raises ShutdownError
        after shutdown and ValueError/TypeError for invalid arguments.
        Fields: trace_id, span_id, parent_span_id, kind, start_time_unix_nano,
        end_time_unix_nano, attributes, events ((time, name, attributes)...),
        links ((trace_id, span_id, attributes)...), status ((code, message))."""
        keep = _Keep()
        s = _c_span(keep, name, **fields)
        sc = self._default_scope if scope is None else scope
        with self._guard as h:
            code = self._lib.otlpflow_pipeline_record_span(h, ctypes.byref(sc), ctypes.byref(s))
        return _recorded(code, "record_span")

    def record_batch(self, spans: Sequence[Mapping[str, Any]], *, wait: bool = False, timeout: float = 10.0,
                     scope=None) -> Dict[str, Any]:
        """Records spans given as dicts of `record_span`'s arguments (`name`
        and the fields). Without `wait`, returns {"accepted": n, "dropped":
        n}. With `wait=True`, blocks until the receiver has answered for
        every span (or `timeout` seconds pass) and returns how they ended:
        records, delivered, rejected (partial success), dropped_<reason>,
        failed_<reason>, message, and "complete" (False on timeout: the rest
        are still on their way). Delivery is at least once."""
        keep = _Keep()
        arr = (_ffi.Span * max(len(spans), 1))()
        for i, fields in enumerate(spans):
            fields = dict(fields)
            arr[i] = _c_span(keep, fields.pop("name"), **fields)
        sc = self._default_scope if scope is None else scope
        if not wait:
            accepted, dropped = ctypes.c_size_t(), ctypes.c_size_t()
            with self._guard as h:
                _check(self._lib.otlpflow_pipeline_record_batch(
                    h, ctypes.byref(sc), arr, len(spans), ctypes.byref(accepted), ctypes.byref(dropped)),
                    "record_batch")
            return {"accepted": accepted.value, "dropped": dropped.value}
        out = _ffi.Delivery()
        with self._guard as h:
            code = self._lib.otlpflow_pipeline_record_batch_wait(
                h, ctypes.byref(sc), arr, len(spans), max(0, int(timeout * 1000)), ctypes.byref(out))
        if code != Result.TIMEOUT:
            _check(code, "record_batch")
        d = out.to_dict()
        d["complete"] = code == Result.OK
        return d

    async def send(self, spans: Sequence[Mapping[str, Any]], *, timeout: float = 10.0, scope=None):
        """`record_batch(spans, wait=True)` for asyncio: the wait runs in the
        loop's default executor, so the event loop keeps running."""
        import asyncio
        import functools
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, functools.partial(
            self.record_batch, spans, wait=True, timeout=timeout, scope=scope))

    def record_log(self, body, severity=9, severity_text="", attributes=None, time_unix_nano=None,
                   trace_id=None, span_id=None, event_name="", scope=None, observed_time_unix_nano=None,
                   flags=0, dropped_attributes_count=0, attribute_set=None):
        """Records one log record (severity: the OTLP number, 9 INFO, 13
        WARN, 17 ERROR). Returns True, or False if it was refused (counted:
        full, rate limited, memory). `attribute_set` (from
        `attribute_set()`) puts its attributes before `attributes`."""
        keep = _Keep()
        rec = _ffi.LogRecord()
        now = time.time_ns()
        rec.time_unix_nano = now if time_unix_nano is None else _fits(time_unix_nano, _U64, "time_unix_nano")
        rec.observed_time_unix_nano = (now if observed_time_unix_nano is None
                                       else _fits(observed_time_unix_nano, _U64, "observed_time_unix_nano"))
        rec.flags = _fits(flags, _U32, "flags")
        rec.dropped_attributes_count = _fits(dropped_attributes_count, _U32, "dropped_attributes_count")
        rec.severity_number = _fits(severity, _U32, "severity")
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
            if attribute_set is None:
                code = self._lib.otlpflow_pipeline_record_log(h, ctypes.byref(sc), ctypes.byref(rec))
            else:
                code = self._lib.otlpflow_pipeline_record_log_with_set(
                    h, ctypes.byref(sc), ctypes.byref(rec), attribute_set._live())
        return _recorded(code, "record_log")

    def record_metric_point(self, name: str, value=None, *, kind: str = "gauge", unit: str = "",
                            description: str = "", attributes=None, start_time_unix_nano: int = 0,
                            time_unix_nano: Optional[int] = None, temporality: str = "cumulative",
                            monotonic: bool = False, histogram=None, flags: int = 0, scope=None,
                            attribute_set=None) -> bool:
        """Records one data point the host aggregated itself: a "gauge" or
        "sum" `value` (int or float), or a "histogram" given as
        `histogram=(count, sum, bounds, bucket_counts, min, max)` (sum, min
        and max may be None). Returns True, or False if it was refused
        (counted). `attribute_set` (from `attribute_set()`) puts its
        attributes before `attributes`."""
        keep = _Keep()
        pt = _ffi.MetricPoint()
        pt.name, pt.unit, pt.description = keep.str(name), keep.str(unit), keep.str(description)
        pt.attributes, pt.attributes_len = _attributes(attributes, keep)
        pt.start_time_unix_nano = _fits(start_time_unix_nano, _U64, "start_time_unix_nano")
        pt.time_unix_nano = time.time_ns() if time_unix_nano is None else _fits(time_unix_nano, _U64, "time_unix_nano")
        pt.flags = _fits(flags, _U32, "flags")
        try:
            pt.type_ = {"gauge": 1, "sum": 2, "histogram": 3}[kind]
            pt.temporality = {"delta": 1, "cumulative": 2}[temporality]
        except KeyError as e:
            raise ValueError("unknown metric kind or temporality %s" % e) from None
        pt.monotonic = monotonic
        if kind == "histogram":
            count, total, bounds, counts, lo, hi = histogram
            pt.count = _fits(count, _U64, "a histogram's count")
            pt.has_sum, pt.sum = total is not None, total or 0.0
            pt.has_min_max = lo is not None and hi is not None
            pt.min, pt.max = (lo, hi) if pt.has_min_max else (0.0, 0.0)
            b = (ctypes.c_double * len(bounds))(*bounds)
            c = (ctypes.c_uint64 * len(counts))(*(_fits(n, _U64, "a bucket count") for n in counts))
            keep.items += [b, c]
            pt.bounds, pt.bounds_len = b, len(bounds)
            pt.bucket_counts, pt.bucket_counts_len = c, len(counts)
        elif isinstance(value, float):
            pt.is_double, pt.as_double = True, value
        else:
            pt.as_int = _fits(int(value), _I64, "an int metric value")
        sc = self._default_scope if scope is None else scope
        with self._guard as h:
            if attribute_set is None:
                code = self._lib.otlpflow_pipeline_record_metric(h, ctypes.byref(sc), ctypes.byref(pt))
            else:
                code = self._lib.otlpflow_pipeline_record_metric_with_set(
                    h, ctypes.byref(sc), ctypes.byref(pt), attribute_set._live())
        return _recorded(code, "record_metric_point")

    def span_template(self, name: str, attributes: Optional[Mapping[str, Any]] = None,
                      kind: Union[str, int] = "internal", scope=None) -> SpanTemplate:
        """A kind of span whose name, kind and static attributes are encoded
        once: `with template.span(attributes) as s:` then costs what
        recording the span's own fields costs (see `SpanTemplate`). Make
        templates once (per route, say), not per span: each lives as long
        as the pipeline."""
        code = kind if isinstance(kind, int) else _spans.KINDS[kind]
        keep = _Keep()
        attrs, n = _attributes(attributes, keep)
        sc = self._default_scope if scope is None else scope
        out = ctypes.c_void_p()
        with self._guard as h:
            _check(self._lib.otlpflow_pipeline_span_template(h, ctypes.byref(sc), keep.str(name), code, attrs, n,
                                                             ctypes.byref(out)), "span_template %s" % name)
        with self._templates_lock:
            self._templates.append(out.value)
        _spans.TEMPLATE_NAMES[out.value] = name
        return SpanTemplate(out.value, name, code, attributes, self._span, scope)

    def attribute_set(self, attributes: Mapping[str, Any]) -> "AttributeSet":
        """Attributes encoded once, for `record_log` and
        `record_metric_point` (`attribute_set=`): they go before the
        record's own. Freed with the pipeline."""
        keep = _Keep()
        attrs, n = _attributes(attributes, keep)
        out = ctypes.c_void_p()
        _check(self._lib.otlpflow_attribute_set_new(attrs, n, ctypes.byref(out)), "attribute_set")
        with self._templates_lock:
            self._sets.append(out.value)
        return AttributeSet(out.value, attributes)

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

    def counter(self, name: str, unit: str = "", description: str = "", scope=None) -> Instrument:
        """A monotonic counter: `add(n, attributes)` with whole n >= 0."""
        return self._instrument(1, name, unit, description, scope=scope)

    def up_down_counter(self, name: str, unit: str = "", description: str = "", scope=None) -> Instrument:
        """A counter that can go down: `add(n, attributes)` with whole n."""
        return self._instrument(2, name, unit, description, scope=scope)

    def gauge(self, name: str, unit: str = "", description: str = "", scope=None) -> Instrument:
        """A gauge: `set(value, attributes)`."""
        return self._instrument(3, name, unit, description, scope=scope)

    def histogram(self, name: str, unit: str = "", description: str = "", bounds: Optional[Sequence[float]] = None,
                  scope=None) -> Instrument:
        """An explicit-bucket histogram: `record(value, attributes)`."""
        return self._instrument(4, name, unit, description, bounds, scope=scope)

    def collect_metrics(self) -> int:
        """Collects every instrument now; returns the points recorded."""
        n = ctypes.c_uint64()
        with self._guard as h:
            _check(self._lib.otlpflow_pipeline_collect_metrics(h, ctypes.byref(n)), "collect_metrics")
        return n.value

    def span(self, name: str, attributes: Optional[Mapping[str, Any]] = None, kind: Union[str, int] = "internal",
             trace_id: Union[None, int, bytes] = None, parent_span_id: Union[None, int, bytes] = None, scope=None,
             parent: Union[None, Span, SpanContext] = None, links: Optional[list] = None) -> Span:
        """A span timed by a `with` block and recorded when it ends (status
        error and an `exception` event if the block raised). Inside another
        span (this thread's or asyncio task's current one) it continues that
        span's trace as its child; `parent` (a Span or a SpanContext from
        `otlpflow.propagation.extract`) names the parent explicitly.
        `kind` is "internal", "server", "client", "producer", "consumer"
        or "unspecified", in lower case or OpenTelemetry's upper case
        ("SERVER"), or the OTLP number. Recorded spans wait in a bounded
        buffer (see `batch_spans`).

        (Replaced on each pipeline by its own function of the same
        arguments: one Python call less per span.)"""
        return self._span(name, attributes, kind, trace_id, parent_span_id, scope, parent, links)

    def _span_buffer(self, scope):
        sc = self._default_scope if scope is None else scope
        buf = self._buffers.get(sc.id)
        if buf is None:
            buf = self._buffers.setdefault(sc.id, _spans.SpanBuffer(*self._senders(sc), self._batch_spans))
        return buf

    def _senders(self, sc):
        """The scope's two hand-overs: the span records as marshal bytes,
        and (on CPython) as the objects themselves, None where unavailable;
        see `_spans.SpanBuffer.hand_over`."""
        lib, guard = self._lib, self._guard
        accepted, refused = ctypes.c_size_t(), ctypes.c_size_t()
        ref_sc, ref_a, ref_r = ctypes.byref(sc), ctypes.byref(accepted), ctypes.byref(refused)

        def send(data):
            with guard as h:
                _check(lib.otlpflow_pipeline_record_marshalled_spans(h, ref_sc, data, len(data), ref_a, ref_r),
                       "span hand-over")
            return accepted.value, refused.value

        objects = _native._object_handover()
        if objects is None:
            return send, None
        stage, api = objects
        record_staged = lib.otlpflow_pipeline_record_staged_spans

        def send_objects(batch):
            # Staged with the GIL held (the objects are read), recorded
            # without it (from the copy). Not staged (a batch too large to
            # walk), or staged over by a hand-over that ran in between on
            # this thread (a signal handler's): None, and the caller
            # marshals the batch instead.
            with guard as h:
                if stage(api, batch) != Result.OK:
                    return None
                rc = record_staged(h, ref_sc, ref_a, ref_r)
                if rc == Result.INVALID_ARGUMENT:
                    return None
                _check(rc, "span hand-over")
            return accepted.value, refused.value
        return send, send_objects

    def _hand_over(self):
        for buf in list(getattr(self, "_buffers", {}).values()):
            buf.hand_over()

    def stats(self) -> Dict[str, int]:
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

    def endpoint_stats(self) -> List[Dict[str, Any]]:
        """Per endpoint of each signal (one per signal when nothing is
        routed): a dict with signal, endpoint (`host:port`), exported,
        requests, request_errors, failed and breaker_open (never blocks)."""
        out = []
        count = ctypes.c_size_t()
        es = _ffi.EndpointStats()
        with self._guard as h:
            i = 0
            while True:
                rc = self._lib.otlpflow_pipeline_endpoint_stats(h, i, ctypes.byref(es), ctypes.byref(count))
                if rc == Result.INVALID_ARGUMENT and i >= count.value:
                    break
                _check(rc, "endpoint_stats")
                out.append(es.to_dict())
                i += 1
        return out

    def health(self) -> str:
        """'healthy', 'degraded' (some export attempts failing) or 'down'."""
        out = ctypes.c_uint32()
        with self._guard as h:
            _check(self._lib.otlpflow_pipeline_health(h, ctypes.byref(out)), "health")
        return ("healthy", "degraded", "down")[out.value]

    def last_error(self) -> Optional[str]:
        """The last export error, or None."""
        buf = ctypes.create_string_buffer(4096)
        n = ctypes.c_size_t()
        with self._guard as h:
            _check(self._lib.otlpflow_pipeline_last_error(h, buf, len(buf), ctypes.byref(n)), "last_error")
        return buf.value.decode() or None

    def _timed(self, fn, timeout, what):
        ms = _millis(timeout, what + " timeout")
        self._hand_over()
        st = _ffi.Stats()
        with self._guard as h:
            code = fn(h, ms, ctypes.byref(st))
        if code == TIMEOUT:
            raise FlushTimeout(code, "%s: timed out after %ss" % (what, timeout), self._with_buffers(st.to_dict()))
        _check(code, what)
        return self._with_buffers(st.to_dict())

    def flush(self, timeout: float = 10.0) -> Dict[str, int]:
        """Waits until everything recorded so far is exported or failed;
        returns the stats. Raises FlushTimeout at the timeout."""
        return self._timed(self._lib.otlpflow_pipeline_flush, timeout, "flush")

    def shutdown(self, timeout: float = 10.0) -> Dict[str, int]:
        """Flushes (up to `timeout`), stops the workers, returns the final stats."""
        return self._timed(self._lib.otlpflow_pipeline_shutdown, timeout, "shutdown")

    def close(self) -> None:
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
        lock = getattr(self, "_templates_lock", None)
        if lock is not None:
            with lock:
                for t in self._templates:
                    self._lib.otlpflow_span_template_free(t)
                    _spans.TEMPLATE_NAMES.pop(t, None)
                for a in self._sets:
                    self._lib.otlpflow_attribute_set_free(a)
                self._templates, self._sets = [], []

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


# Live pipelines, for the fork and exit hooks.
_LIVE = weakref.WeakSet()


def current_span() -> Union[None, Span, SpanContext]:
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
    # At interpreter exit a pipeline still open is closed: what waits in
    # Python is handed over and the engine flushes for up to 5 s (as
    # otlpflow_pipeline_free does), so a script that never called
    # shutdown() still delivers what it recorded. (The OpenTelemetry SDK's
    # providers do the same at exit.)
    for p in list(_LIVE):
        try:
            p.close()
        except Exception:
            pass


atexit.register(_at_exit)


def _after_fork_in_child():
    # The native library restarts its engine in the child by itself (it
    # registers pthread_atfork hooks); calling the hook again is harmless and
    # covers a library loaded in a way that bypassed them.
    if _native._lib is not None:
        _native._lib.otlpflow_fork_child()
    _restart_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_before_fork, after_in_child=_after_fork_in_child)
