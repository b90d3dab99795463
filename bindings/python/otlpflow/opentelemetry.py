"""The OpenTelemetry Python SDK, exporting through otlpflow: one line changed.

    from opentelemetry.sdk.trace import TracerProvider
    import otlpflow, otlpflow.opentelemetry

    pipeline = otlpflow.Pipeline(endpoint="http://collector:4317")
    provider = TracerProvider(resource=...)
    provider.add_span_processor(otlpflow.opentelemetry.SpanProcessor(pipeline))   # the one line

instead of `BatchSpanProcessor(OTLPSpanExporter(...))`. A finished span is
handed to the engine at once (the same bounded buffer as `Pipeline.span`):
no Python batch thread, no Python protobuf, no grpcio. Likewise
`LogRecordProcessor` for the SDK's logs (so `LoggingHandler` setups keep
working) and `MetricExporter` for a `PeriodicExportingMetricReader`.

Without changing a line: the package registers `otlpflow` as an exporter
for each signal, so the SDK's own set-up from the environment (what
`opentelemetry-instrument` runs) exports through otlpflow with

    OTEL_TRACES_EXPORTER=otlpflow OTEL_METRICS_EXPORTER=otlpflow \
    OTEL_LOGS_EXPORTER=otlpflow opentelemetry-instrument python app.py

The SDK wraps `SpanExporter` and `LogRecordExporter` in its batch
processors (a Python queue and thread in front of otlpflow: the one-line
processors above skip them). Exporters made that way, with no pipeline
given, share one pipeline configured from the environment
(`OTEL_EXPORTER_OTLP_*`), shut down with the last of them.

What arrives is what the SDK's own OTLP exporter sends, field by field,
with these differences (each a choice, see the README):
- span and link `flags` carry the W3C trace flags in bits 0-7, as the OTLP
  specification asks (the SDK's exporter sends only the is-remote bits);
- a link's `trace_state` is sent (the SDK's exporter leaves it out);
- a scope's `schema_url` is not sent;
- metrics: exemplars are not sent, and exponential histograms are refused
  (counted as `dropped_invalid`); the SDK's default aggregations make none;
- logs: a structured body or attribute value (a mapping, or a sequence
  holding one or a sequence) is sent as its JSON text, where the SDK's
  exporter sends an OTLP `kvlist` or nested array (otlpflow's C ABI carries
  scalars and flat arrays); an attribute whose value is None is left out
  and counted in the record's `dropped_attributes_count`.

The resource is the SDK's (the first one seen), unless the pipeline was
given one of its own (a service name, version or resource attribute; the
environment's OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES do not count,
as the SDK's resource reads them too).
`shutdown()` of a provider flushes the pipeline; it shuts it down only when
the processor was made with `owns_pipeline=True` (a pipeline shared by the
tracer, logger and meter providers outlives each of them).
"""

from __future__ import annotations

import json
import os
import threading
from typing import Any, Dict, Optional, Tuple

from opentelemetry.sdk import trace as sdk_trace
from opentelemetry.sdk.metrics import export as sdk_metrics_export
from opentelemetry.sdk.trace import export as sdk_trace_export

try:
    from opentelemetry.sdk._logs import LogRecordProcessor as _SdkLogRecordProcessor
except ImportError:  # an SDK without the logs API
    _SdkLogRecordProcessor = object
try:  # SDK 1.39 and later; before, LogExporter and LogExportResult
    from opentelemetry.sdk._logs.export import LogRecordExporter as _SdkLogExporter
    from opentelemetry.sdk._logs.export import LogRecordExportResult as _LogResult
except ImportError:
    try:
        from opentelemetry.sdk._logs.export import LogExporter as _SdkLogExporter
        from opentelemetry.sdk._logs.export import LogExportResult as _LogResult
    except ImportError:  # an SDK without the logs API
        _SdkLogExporter, _LogResult = object, None

from . import Pipeline

__all__ = ["SpanProcessor", "LogRecordProcessor", "MetricExporter", "SpanExporter", "LogRecordExporter"]

# OTLP span flags: bit 8 says whether bit 9 (the parent is remote) is known.
_HAS_IS_REMOTE, _IS_REMOTE = 0x100, 0x200


def _flags(ctx, parent_or_self) -> int:
    flags = _HAS_IS_REMOTE | (int(ctx.trace_flags) & 0xFF if ctx is not None else 0)
    if parent_or_self is not None and parent_or_self.is_remote:
        flags |= _IS_REMOTE
    return flags


def _state(ctx) -> str:
    ts = getattr(ctx, "trace_state", None)
    return ts.to_header() if ts else ""


def _attrs(attributes) -> Optional[Dict[str, Any]]:
    return dict(attributes) if attributes else None


_CACHED_SCOPES = 4096


class _Shared:
    """The pipeline of the exporters the SDK makes from the environment
    (with no pipeline given): one for every signal, configured from the
    environment when the first of them is first given something, shut
    down with the last. An exporter given nothing (its signal unused, or
    OTEL_SDK_DISABLED=true, where the SDK records nothing) starts none."""

    lock = threading.Lock()
    pipeline: Optional[Pipeline] = None
    users = 0

    @classmethod
    def acquire_for(cls, common) -> Pipeline:
        """`common`'s pipeline, the shared one taken for it if it has none
        yet (once, even with two threads asking)."""
        with cls.lock:
            if common._pipeline is None:
                if cls.pipeline is None:
                    cls.pipeline = Pipeline()
                cls.users += 1
                common._pipeline = cls.pipeline
            return common._pipeline

    @classmethod
    def _after_fork_in_child(cls) -> None:
        # A thread of the parent may have held the lock at the fork; the
        # child has no such thread. The pipeline itself carries over (the
        # engine restarts in the child on its next call).
        cls.lock = threading.Lock()

    @classmethod
    def release(cls, timeout: float) -> None:
        with cls.lock:
            cls.users -= 1
            p, last = cls.pipeline, cls.users == 0
            if last:
                cls.pipeline = None
        if p is None:
            return
        try:
            if last:
                p.shutdown(timeout=timeout)
            else:
                p.flush(timeout=timeout)
        except Exception:
            pass


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_Shared._after_fork_in_child)


class _Common:
    """The pipeline, the SDK's resource (adopted once) and the scopes."""

    def __init__(self, pipeline: Optional[Pipeline], flush_timeout: float, owns_pipeline: bool):
        # No pipeline: the shared one (an exporter the SDK made by name),
        # taken when something first needs it.
        self.shared = pipeline is None
        self._pipeline = pipeline
        self.flush_timeout = flush_timeout
        self.owns_pipeline = owns_pipeline
        self._scopes: Dict[Tuple, Any] = {}
        self._resource_seen = False
        self._released = False

    @property
    def pipeline(self) -> Pipeline:
        p = self._pipeline
        return p if p is not None else _Shared.acquire_for(self)

    def adopt(self, resource) -> None:
        if not self._resource_seen and resource is not None:
            self._resource_seen = True
            self.pipeline.adopt_resource(dict(resource.attributes))

    def scope(self, scope):
        """The pipeline scope of an SDK InstrumentationScope (cached)."""
        if scope is None:
            return None
        attrs = getattr(scope, "attributes", None)
        key = (scope.name, scope.version or "", tuple(sorted(attrs.items())) if attrs else ())
        sc = self._scopes.get(key)
        if sc is None:
            sc = self.pipeline.scope(scope.name, scope.version or "", dict(attrs or {}))
            # Bounded as the pipeline's own table is by default: past it a
            # scope is looked up each time (and answered with the overflow
            # scope by a full pipeline).
            if len(self._scopes) < _CACHED_SCOPES:
                self._scopes[key] = sc
        return sc

    def force_flush(self, timeout_millis: Optional[float]) -> bool:
        timeout = self.flush_timeout if timeout_millis is None else timeout_millis / 1000.0
        if self._pipeline is None:
            return True  # a shared pipeline never taken: nothing to flush
        try:
            self.pipeline.flush(timeout=timeout)
            return True
        except Exception:
            return False

    def shutdown(self) -> None:
        """Flushes; shuts the pipeline down only if this processor owns it
        (one pipeline often serves a tracer, a logger and a meter provider,
        and the first provider's shutdown must not end the others)."""
        if self.shared:
            if not self._released and self._pipeline is not None:
                self._released = True
                _Shared.release(self.flush_timeout)
        elif self.owns_pipeline:
            try:
                self.pipeline.shutdown(timeout=self.flush_timeout)
            except Exception:
                pass
        else:
            self.force_flush(None)


class SpanProcessor(sdk_trace.SpanProcessor):
    """Hands each ended span (all its fields) to otlpflow at once. With no
    pipeline, the one shared by the exporters made from the environment."""

    def __init__(self, pipeline: Optional[Pipeline] = None, flush_timeout: float = 30.0,
                 owns_pipeline: bool = False):
        self._c = _Common(pipeline, flush_timeout, owns_pipeline)
        self._buffers: Dict[int, Any] = {}

    def on_start(self, span, parent_context=None) -> None:
        pass

    def on_end(self, span) -> None:
        self._add(span)

    def _add(self, span):
        """Adds the span to its scope's buffer; returns the buffer."""
        c = self._c
        if not c._resource_seen:
            c.adopt(span.resource)
        sc = c.scope(span.instrumentation_scope)
        buf = self._buffers.get(id(sc)) if sc is not None else None
        if buf is None:
            buf = c.pipeline._span_buffer(sc)
            if sc is not None:
                self._buffers[id(sc)] = buf
        ctx = span.get_span_context()
        parent = span.parent
        events = [(e.timestamp, e.name, _attrs(e.attributes), e.dropped_attributes) for e in span.events] or None
        links = [(lk.context.trace_id, lk.context.span_id, _attrs(lk.attributes), _state(lk.context),
                  _flags(lk.context, lk.context), lk.dropped_attributes) for lk in span.links] or None
        status = span.status
        rec = [span.name, span.kind.value + 1, ctx.trace_id, ctx.span_id, parent.span_id if parent else 0,
               span.start_time, span.end_time, _attrs(span.attributes), events, status.status_code.value,
               status.description or "", links, _state(ctx), _flags(ctx, parent), span.dropped_attributes,
               span.dropped_events, span.dropped_links]
        buf.add(rec)
        return buf

    def shutdown(self) -> None:
        self._c.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._c.force_flush(timeout_millis)


_SCALARS = (str, bytes, bool, int, float)


def _flat(value):
    """A log body or attribute value as otlpflow's C ABI carries it:
    scalars and flat sequences of scalars as they are; a mapping, a
    sequence holding one or a sequence, or another object, as JSON text (a
    mapping's keys as strings, what JSON cannot hold by its `str`). Sent as
    they were, a nested value made the whole record `dropped_invalid`, a
    mapping attribute vanished and a mapping body arrived as Python's repr."""
    if isinstance(value, _SCALARS):
        return value
    if isinstance(value, (list, tuple)) and all(isinstance(v, _SCALARS) for v in value):
        return value
    try:
        return json.dumps(value, default=str, ensure_ascii=False, allow_nan=True)
    except (TypeError, ValueError):  # keys JSON cannot hold, a cycle
        return str(value)


class LogRecordProcessor(_SdkLogRecordProcessor):
    """Hands each emitted log record to otlpflow at once. With no pipeline,
    the one shared by the exporters made from the environment."""

    def __init__(self, pipeline: Optional[Pipeline] = None, flush_timeout: float = 30.0,
                 owns_pipeline: bool = False):
        self._c = _Common(pipeline, flush_timeout, owns_pipeline)

    def on_emit(self, log_data) -> None:
        # SDK 1.3x passes LogData(log_record, instrumentation_scope); later
        # ones a ReadWriteLogRecord(log_record, resource, scope).
        rec = log_data.log_record
        c = self._c
        resource = getattr(log_data, "resource", None) or getattr(rec, "resource", None)
        if not c._resource_seen:
            c.adopt(resource)
        sc = c.scope(getattr(log_data, "instrumentation_scope", None))
        severity = rec.severity_number.value if rec.severity_number is not None else 0
        body = None if rec.body is None else _flat(rec.body)
        dropped = getattr(log_data, "dropped_attributes", None)
        if dropped is None:
            dropped = getattr(rec, "dropped_attributes", 0)
        attributes = {}
        for k, v in (rec.attributes or {}).items():
            if v is None:
                # No value to send (OTLP's empty AnyValue has no C ABI
                # form): counted as dropped, on the record itself.
                dropped += 1
            else:
                attributes[k] = _flat(v)
        try:
            self._c.pipeline.record_log(
                body, severity=severity, severity_text=rec.severity_text or "", attributes=attributes,
                time_unix_nano=rec.timestamp or rec.observed_timestamp,
                observed_time_unix_nano=rec.observed_timestamp,
                trace_id=rec.trace_id or None, span_id=rec.span_id or None,
                flags=int(rec.trace_flags or 0), event_name=getattr(rec, "event_name", None) or "",
                dropped_attributes_count=dropped, scope=sc)
        except (OverflowError, TypeError, ValueError):
            # A value the C ABI cannot carry (an int past 64 bits, say):
            # the record is counted, not raised into the caller's logging
            # call, as the span processor's refused spans are.
            self._c.pipeline.count_invalid("logs")

    def emit(self, log_data) -> None:  # the older name of on_emit
        self.on_emit(log_data)

    def shutdown(self) -> None:
        self._c.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._c.force_flush(timeout_millis)


class MetricExporter(sdk_metrics_export.MetricExporter):
    """A metric exporter for the SDK's PeriodicExportingMetricReader: each
    data point goes to otlpflow's pipeline (gauges, sums and explicit
    histograms). With no pipeline (`OTEL_METRICS_EXPORTER=otlpflow`), the
    one shared by the exporters made from the environment. It asks the SDK
    for the temporality `OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE`
    names, per instrument kind as the SDK's OTLP exporter does;
    `preferred_temporality` overrides it kind by kind."""

    def __init__(self, pipeline: Optional[Pipeline] = None, flush_timeout: float = 30.0,
                 owns_pipeline: bool = False,
                 preferred_temporality=None, preferred_aggregation=None):
        temporality = _temporality_preference()
        temporality.update(preferred_temporality or {})
        super().__init__(preferred_temporality=temporality,
                         preferred_aggregation=preferred_aggregation)
        self._c = _Common(pipeline, flush_timeout, owns_pipeline)

    def export(self, metrics_data, timeout_millis: float = 10_000, **kwargs):
        p, ok = self._c.pipeline, True
        for rm in metrics_data.resource_metrics:
            if not self._c._resource_seen:
                self._c.adopt(rm.resource)
            for sm in rm.scope_metrics:
                sc = self._c.scope(sm.scope)
                for m in sm.metrics:
                    data = m.data
                    common = dict(unit=m.unit or "", description=m.description or "", scope=sc)
                    for pt in data.data_points:
                        try:
                            ok &= self._point(p, m.name, data, pt, common)
                        except (OverflowError, TypeError, ValueError):
                            # As the log processor does (an int past 64 bits).
                            p.count_invalid("metrics")
                            ok = False
        return (sdk_metrics_export.MetricExportResult.SUCCESS if ok
                else sdk_metrics_export.MetricExportResult.FAILURE)

    @staticmethod
    def _point(p, name, data, pt, common) -> bool:
        """Records one SDK data point; whether it was accepted."""
        from opentelemetry.sdk.metrics.export import Gauge, Histogram, Sum
        if isinstance(data, Histogram):
            return p.record_metric_point(
                name, kind="histogram", attributes=_attrs(pt.attributes),
                start_time_unix_nano=pt.start_time_unix_nano or 0, time_unix_nano=pt.time_unix_nano,
                temporality=_temporality(data), flags=getattr(pt, "flags", 0) or 0,
                histogram=(pt.count, pt.sum, list(pt.explicit_bounds), list(pt.bucket_counts),
                           pt.min, pt.max), **common)
        if isinstance(data, (Sum, Gauge)):
            return p.record_metric_point(
                name, pt.value, kind="sum" if isinstance(data, Sum) else "gauge",
                attributes=_attrs(pt.attributes), start_time_unix_nano=pt.start_time_unix_nano or 0,
                time_unix_nano=pt.time_unix_nano, flags=getattr(pt, "flags", 0) or 0,
                temporality=_temporality(data) if isinstance(data, Sum) else "cumulative",
                monotonic=bool(getattr(data, "is_monotonic", False)), **common)
        # An exponential histogram: not in the C ABI.
        p.count_invalid("metrics")
        return False

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return self._c.force_flush(timeout_millis)

    def shutdown(self, timeout_millis: float = 30_000, **kwargs) -> None:
        self._c.shutdown()


def _temporality_preference() -> Dict[type, Any]:
    """The temporality per instrument kind that
    OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE asks for (the OTLP
    exporters' variable): `delta` makes counters, observable counters and
    histograms delta; `lowmemory` counters and histograms only; anything
    else (`cumulative`, unset) keeps all cumulative. Up-down counters and
    gauges stay cumulative."""
    from opentelemetry.sdk.metrics import (Counter, Histogram, ObservableCounter, ObservableGauge,
                                           ObservableUpDownCounter, UpDownCounter)
    delta = sdk_metrics_export.AggregationTemporality.DELTA
    cumulative = sdk_metrics_export.AggregationTemporality.CUMULATIVE
    kinds = (Counter, UpDownCounter, Histogram, ObservableCounter, ObservableUpDownCounter, ObservableGauge)
    out = {kind: cumulative for kind in kinds}
    preference = os.environ.get("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", "").strip().lower()
    if preference in ("delta", "lowmemory"):
        out[Counter] = out[Histogram] = delta
        if preference == "delta":
            out[ObservableCounter] = delta
    return out


def _temporality(data) -> str:
    return "delta" if int(data.aggregation_temporality) == 1 else "cumulative"


class SpanExporter(sdk_trace_export.SpanExporter):
    """A span exporter for the SDK's own set-up by name
    (`OTEL_TRACES_EXPORTER=otlpflow`, or a `BatchSpanProcessor` made by
    hand): each span of a batch goes to otlpflow as `SpanProcessor` hands it
    over, and the batch is handed to the engine before `export` returns.
    Where the code can change, `SpanProcessor` skips the SDK's queue and
    thread. With no pipeline, the one shared by the exporters made from the
    environment."""

    def __init__(self, pipeline: Optional[Pipeline] = None, flush_timeout: float = 30.0,
                 owns_pipeline: bool = False):
        self._processor = SpanProcessor(pipeline, flush_timeout, owns_pipeline)

    def export(self, spans):
        touched = {}
        for span in spans:
            buf = self._processor._add(span)
            touched[id(buf)] = buf
        for buf in touched.values():
            buf.hand_over()
        return sdk_trace_export.SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        self._processor.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._processor.force_flush(timeout_millis)


class LogRecordExporter(_SdkLogExporter):
    """A log exporter for the SDK's own set-up by name
    (`OTEL_LOGS_EXPORTER=otlpflow`): each record of a batch goes to otlpflow
    as `LogRecordProcessor` hands it over. With no pipeline, the one shared
    by the exporters made from the environment."""

    def __init__(self, pipeline: Optional[Pipeline] = None, flush_timeout: float = 30.0,
                 owns_pipeline: bool = False):
        self._processor = LogRecordProcessor(pipeline, flush_timeout, owns_pipeline)

    def export(self, batch):
        for log_data in batch:
            self._processor.on_emit(log_data)
        return _LogResult.SUCCESS

    def shutdown(self) -> None:
        self._processor.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._processor.force_flush(timeout_millis)
