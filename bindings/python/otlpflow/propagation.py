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

import re
from typing import Mapping, MutableMapping, Optional

from ._spans import CURRENT, SpanContext

__all__ = ["inject", "extract", "format_traceparent", "parse_traceparent", "parse_tracestate"]

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
        ctx.trace_state = parse_tracestate(ts)
    return ctx


# W3C Trace Context, tracestate: a key is lower-case letters, digits and
# `_-*/` (a simple key, at most 256 characters starting with a letter, or
# `tenant@system`); a value is at most 256 printable ASCII characters but
# `,` and `=`, not ending in a space.
_KEY = re.compile(r"(?:[a-z][a-z0-9_\-*/]{0,255}|[a-z0-9][a-z0-9_\-*/]{0,240}@[a-z][a-z0-9_\-*/]{0,13})\Z")
_VALUE = re.compile(r"[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]\Z")


def parse_tracestate(value: str) -> str:
    """A `tracestate` value as it is propagated: its list-members joined by
    commas, or "" when it is not a valid one (a member that is not
    `key=value` by the specification's grammar, a key twice, more than 32
    members, more than 512 characters), which the specification has a
    vendor discard rather than pass on. It was kept as it came: a CR LF in
    it went into the span and out again in `inject`'s headers."""
    if len(value) > 512:
        return ""
    members, keys = [], set()
    for member in value.split(","):
        member = member.strip(" \t")
        if not member:
            continue
        key, eq, val = member.partition("=")
        if not eq or not _KEY.match(key) or not _VALUE.match(val) or key in keys:
            return ""
        keys.add(key)
        members.append(member)
    return ",".join(members) if len(members) <= 32 else ""


def inject(headers: MutableMapping[str, str], span=None) -> None:
    """Writes `traceparent` (and `tracestate` when there is one) for `span`,
    by default the current span; nothing when there is none."""
    span = CURRENT.get() if span is None else span
    if span is None:
        return
    headers["traceparent"] = format_traceparent(span.trace_id, span.span_id, span.trace_flags)
    if span.trace_state:
        headers["tracestate"] = span.trace_state
