"""W3C trace context in HTTP headers: `traceparent` and `tracestate`.

    headers = {}
    otlpflow.propagation.inject(headers)          # the current span's context
    ctx = otlpflow.propagation.extract(request.headers)
    with p.span("handle", parent=ctx): ...

`extract` takes any mapping with `.get` (case-insensitive lookups are the
caller's mapping's business: pass the headers object of your framework, or
a dict with lower-case keys). A malformed `traceparent` gives None, as the
W3C specification asks (the request starts a new trace).
"""

from typing import Mapping, MutableMapping, Optional

from ._spans import CURRENT, SpanContext

__all__ = ["inject", "extract", "format_traceparent", "parse_traceparent"]

_HEX = frozenset("0123456789abcdef")


def format_traceparent(trace_id: int, span_id: int, flags: int = 1) -> str:
    return "00-%032x-%016x-%02x" % (trace_id, span_id, flags & 0xFF)


def parse_traceparent(value: str) -> Optional[SpanContext]:
    """A SpanContext from a `traceparent` value, or None if it is not a
    valid one (version 00 exactly; a later version is read by its first
    four fields, as the specification allows)."""
    value = value.strip()
    parts = value.split("-")
    if len(parts) < 4:
        return None
    version, trace, span, flags = parts[:4]
    if len(version) != 2 or len(trace) != 32 or len(span) != 16 or len(flags) != 2:
        return None
    if not set(version + trace + span + flags) <= _HEX or version == "ff":
        return None
    if version == "00" and len(parts) != 4:
        return None
    tid, sid = int(trace, 16), int(span, 16)
    if not tid or not sid:
        return None
    return SpanContext(tid, sid, int(flags, 16))


def extract(headers: Mapping[str, str]) -> Optional[SpanContext]:
    """The remote parent carried by `headers`, or None."""
    tp = headers.get("traceparent") or headers.get("Traceparent")
    if not tp:
        return None
    ctx = parse_traceparent(tp)
    if ctx is not None:
        ts = headers.get("tracestate") or headers.get("Tracestate") or ""
        # Kept as it came (the specification's limit is 512 characters
        # worth keeping; longer ones are dropped rather than cut).
        ctx.trace_state = ts.strip() if len(ts) <= 512 else ""
    return ctx


def inject(headers: MutableMapping[str, str], span=None) -> None:
    """Writes `traceparent` (and `tracestate` when there is one) for `span`,
    by default the current span; nothing when there is none."""
    span = CURRENT.get() if span is None else span
    if span is None:
        return
    headers["traceparent"] = format_traceparent(span.trace_id, span.span_id, span.trace_flags)
    if span.trace_state:
        headers["tracestate"] = span.trace_state
