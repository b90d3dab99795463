"""Spans from Python at close to native speed: the `with p.span(...)` path.

A finished span becomes one tuple appended to its scope's buffer (a list:
appending is atomic under the GIL, so recording threads take no lock).
When a buffer holds `batch_spans` spans, the thread that filled it hands
them over: on CPython in two native calls, one that reads the list of span
records itself into a native copy (the GIL held) and one that records the
copy (the GIL released); elsewhere, or when a batch is too large to walk,
as `marshal.dumps(spans, 4)`, one C-speed call, and
`otlpflow_pipeline_record_marshalled_spans`, which reads the bytes in
Rust. A background thread hands over what waits longer than
`batch_interval`; `flush()`, `shutdown()`, `os.fork()` and interpreter exit
hand over everything first. So a span waits in Python at most
`batch_interval` seconds, the buffer holds at most `batch_spans` spans
plus one per recording thread, and `stats()` shows how many wait there
(`python_buffered`) and how many were handed over (`python_handed_over`).

Ids are made lazily: a span nobody asks the id of gets one from the native
side at hand-over; a span with a child, or whose context is injected into
headers, makes its ids here (random.getrandbits). Context follows
`contextvars`, so threads and asyncio tasks each see their own current span.
"""

import contextvars
import marshal
import random
import threading
import time
import traceback

_time_ns = time.time_ns
_getrandbits = random.getrandbits

# Either spelling: otlpflow's lower case, or OpenTelemetry's SpanKind names
# ("SERVER"). One plain dict: a lookup in it costs what it did with six
# keys, where a dict subclass or a try round it cost each span 190-500
# instructions.
KINDS = {"unspecified": 0, "internal": 1, "server": 2, "client": 3, "producer": 4, "consumer": 5}
KINDS.update({k.upper(): v for k, v in KINDS.items()})
STATUS = {"unset": 0, "ok": 1, "error": 2}
STATUS.update({k.upper(): v for k, v in STATUS.items()})

# The current span (or remote SpanContext) of this thread or task.
CURRENT = contextvars.ContextVar("otlpflow_current_span", default=None)


def _nonzero(bits):
    while True:
        v = _getrandbits(bits)
        if v:
            return v


def _as_int(value, size):
    """An id given as bytes (big-endian) or int, as an int."""
    if value is None:
        return 0
    if isinstance(value, int):
        if value < 0 or value >> (8 * size):
            raise ValueError("id must fit %d bytes" % size)
        return value
    value = bytes(value)
    if len(value) != size:
        raise ValueError("id must be %d bytes, got %d" % (size, len(value)))
    return int.from_bytes(value, "big")


def _message(exc):
    """`str(exc)`, or a stand-in when the exception's `__str__` itself
    raises: the span's exit must never replace the caller's exception with
    one of its own (as `traceback` prints such an exception)."""
    try:
        return str(exc)
    except Exception:
        return "<exception str() failed>"


class SpanContext:
    """The identity of a span, possibly in another process: what
    `propagation.extract` returns and what a child span continues."""

    __slots__ = ("trace_id", "span_id", "trace_flags", "trace_state", "is_remote")

    def __init__(self, trace_id, span_id, trace_flags=1, trace_state="", is_remote=True):
        self.trace_id, self.span_id = trace_id, span_id
        self.trace_flags, self.trace_state, self.is_remote = trace_flags, trace_state, is_remote

    @property
    def context(self):
        return self

    def __repr__(self):
        return "SpanContext(trace_id=%032x, span_id=%016x, flags=%02x)" % (
            self.trace_id, self.span_id, self.trace_flags)


# The positions of a span's record (the tuple layout the native side
# reads; see ffi/src/pyspans.rs). A span keeps its record as a list it
# fills in place, and hands the list itself over when it ends.
_NAME, _KIND, _TID, _SID, _PARENT, _START, _END, _ATTRS, _EVENTS, _STATUS, _MESSAGE, _LINKS, _STATE = range(13)


class Span:
    """A span being timed: `with p.span(...) as span:`. Add attributes,
    events, status and exceptions while it runs; it is recorded when the
    block ends."""

    __slots__ = ("_rec", "_buffer", "_token")

    def __init__(self, *args, **kwargs):
        raise TypeError("spans are made by Pipeline.span or SpanTemplate.span")

    @property
    def name(self):
        name = self._rec[_NAME]
        return name if name.__class__ is str else TEMPLATE_NAMES.get(name, "")

    @property
    def attributes(self):
        return self._rec[_ATTRS]

    @property
    def events(self):
        return self._rec[_EVENTS] or []

    @property
    def start(self):
        return self._rec[_START]

    @property
    def status(self):
        return self._rec[_STATUS], self._rec[_MESSAGE]

    @property
    def trace_id(self):
        """The trace id (an int, as the OpenTelemetry API has it)."""
        rec = self._rec
        tid = rec[_TID]
        if not tid:
            tid = rec[_TID] = _nonzero(128)
        elif tid.__class__ is bytes:
            tid = rec[_TID] = int.from_bytes(tid, "big")
        return tid

    @property
    def span_id(self):
        rec = self._rec
        if not rec[_SID]:
            rec[_SID] = _nonzero(64)
        return rec[_SID]

    @property
    def parent_span_id(self):
        parent = self._rec[_PARENT]
        return int.from_bytes(parent, "big") if parent.__class__ is bytes else parent

    @property
    def trace_state(self):
        return self._rec[_STATE]

    @property
    def trace_flags(self):
        return 1

    @property
    def context(self):
        return SpanContext(self.trace_id, self.span_id, 1, self.trace_state, is_remote=False)

    # A span that has ended takes no more changes, and ends once, as the
    # OpenTelemetry API specifies: its record may already be waiting in the
    # buffer (a change would go out with it), and a second end recorded the
    # span again, two spans with one span id.

    def set_attribute(self, key, value):
        if not self._rec[_END]:
            self._rec[_ATTRS][key] = value

    def set_attributes(self, attributes):
        if not self._rec[_END]:
            self._rec[_ATTRS].update(attributes)

    def add_event(self, name, attributes=None, timestamp=None):
        if self._rec[_END]:
            return
        ev = (_time_ns() if timestamp is None else timestamp, name,
              None if not attributes else attributes.copy() if attributes.__class__ is dict else dict(attributes))
        events = self._rec[_EVENTS]
        if events is None:
            self._rec[_EVENTS] = [ev]
        else:
            events.append(ev)

    def set_status(self, status, message=""):
        """status: "unset", "ok" or "error" (or "ERROR", OpenTelemetry's
        spelling; a message goes with error only, as the OpenTelemetry
        specification has it)."""
        code = status if status.__class__ is int else STATUS[status]
        rec = self._rec
        if rec[_END]:
            return
        rec[_STATUS] = code
        rec[_MESSAGE] = message if code == 2 else ""

    def record_exception(self, exc, attributes=None):
        """Adds an `exception` event with the semantic-convention attributes
        (type, message, stack trace)."""
        attrs = {
            "exception.type": type(exc).__qualname__,
            "exception.message": _message(exc),
            "exception.stacktrace": "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)),
        }
        if attributes:
            attrs.update(attributes)
        self.add_event("exception", attrs)

    def __enter__(self):
        self._token = CURRENT.set(self)
        return self

    def __exit__(self, exc_type, exc, tb):
        rec = self._rec
        if rec[_END]:
            return False
        end = _time_ns()
        if self._token is not None:
            CURRENT.reset(self._token)
            self._token = None
        if exc_type is not None:
            self.record_exception(exc)
            if rec[_STATUS] != 1:
                rec[_STATUS], rec[_MESSAGE] = 2, "%s: %s" % (exc_type.__name__, _message(exc))
        rec[_END] = end
        # SpanBuffer.add, inlined: one Python call less on every span.
        spans = self._buffer.spans
        spans.append(rec)
        if len(spans) >= self._buffer.limit:
            self._buffer.hand_over()
        return False

    def end(self, end_time=None):
        """Records the span (for spans used without `with`); once only."""
        rec = self._rec
        if rec[_END]:
            return
        rec[_END] = _time_ns() if end_time is None else end_time
        self._buffer.add(rec)


def span_maker(default_buffer, buffer_of):
    """The `span(...)` function of a pipeline whose spans go to
    `default_buffer`, or to `buffer_of(scope)` for another scope (see
    `Pipeline.span` for the arguments).

    A function that fills a bare `Span` rather than a class with an
    `__init__`: calling a class runs its `__init__` through the type's
    generic call path, which builds an argument tuple and a keyword dict
    first; this costs about 1,800 fewer instructions a span (callgrind)."""
    new = object.__new__

    def span(name, attributes=None, kind="internal", trace_id=None, parent_span_id=None, scope=None, parent=None,
             links=None):
        s = new(Span)
        s._buffer = default_buffer if scope is None else buffer_of(scope)
        if parent is None:
            parent = CURRENT.get()
        if parent is None:
            tid = parent_id = 0
            state = ""
        else:
            tid, parent_id, state = parent.trace_id, parent.span_id, parent.trace_state
        if trace_id is not None:
            tid = trace_id if trace_id.__class__ is bytes and len(trace_id) == 16 else _as_int(trace_id, 16)
        if parent_span_id is not None:
            parent_id = (parent_span_id if parent_span_id.__class__ is bytes and len(parent_span_id) == 8
                         else _as_int(parent_span_id, 8))
        # A copy, so that the caller may reuse its dict: `dict.copy` when it
        # is one (a method call the interpreter specializes; `dict(x)` goes
        # through the type's call).
        s._rec = [name, kind if kind.__class__ is int else KINDS[kind], tid, 0, parent_id, _time_ns(), 0,
                  {} if attributes is None else attributes.copy() if attributes.__class__ is dict
                  else dict(attributes), None, 0, "", links, state]
        s._token = None
        return s

    return span


# Template handle -> name, for `Span.name` of a span made from a template
# (its record carries the handle where the name goes).
TEMPLATE_NAMES = {}


class SpanTemplate:
    """A kind of span whose name, kind and static attributes the native side
    encoded once (`Pipeline.span_template`). `with template.span(...)`
    times a span like `Pipeline.span` does; its record carries the
    template's handle instead of name, kind and static attributes, so that
    less is marshalled and nothing static is encoded again. The span's own
    attributes come after the template's."""

    __slots__ = ("name", "kind", "attributes", "_handle", "_span", "_scope")

    def __init__(self, handle, name, kind, attributes, span, scope):
        self._handle, self.name, self.kind = handle, name, kind
        self.attributes = dict(attributes) if attributes else {}
        self._span, self._scope = span, scope

    def span(self, attributes=None, trace_id=None, parent_span_id=None, parent=None, links=None):
        """A span of this template, timed by a `with` block (see
        `Pipeline.span` for the arguments)."""
        return self._span(self._handle, attributes, 0, trace_id, parent_span_id, self._scope, parent, links)

    def __repr__(self):
        return "SpanTemplate(%r, kind=%r, %d attributes)" % (self.name, self.kind, len(self.attributes))


class SpanBuffer:
    """The spans of one scope waiting to be handed over (see the module
    docstring)."""

    __slots__ = ("spans", "limit", "_send", "_send_objects", "_lock", "handed_over", "refused", "__weakref__")

    def __init__(self, send, send_objects, limit):
        self.spans = []
        self.limit = limit
        self._send = send
        self._send_objects = send_objects
        self._lock = threading.Lock()
        self.handed_over = 0
        self.refused = 0

    def add(self, rec):
        """Appends one span record; hands the buffer over when it is full."""
        self.spans.append(rec)
        if len(self.spans) >= self.limit:
            self.hand_over()

    def hand_over(self):
        """Hands everything waiting to the engine. Spans appended while this
        runs stay for the next call: the slice and the delete each run
        whole under the GIL, and only the spans sliced are deleted."""
        with self._lock:
            n = len(self.spans)
            if not n:
                return
            batch = self.spans[:n]
            del self.spans[:n]
            if self._send_objects is not None:
                out = self._send_objects(batch)
                if out is not None:
                    self.handed_over += out[0] + out[1]
                    self.refused += out[1]
                    return
            try:
                data = marshal.dumps(batch, 4)
            except ValueError:
                data = marshal.dumps(_sorted_out(batch), 4)
            try:
                accepted, refused = self._send(data)
            except ValueError:
                # The native side could not read the batch (a value
                # marshal writes in a form it does not take): one span at
                # a time, a span it cannot read counted as invalid.
                accepted = refused = 0
                for rec in batch:
                    try:
                        a, r = self._send(marshal.dumps([rec], 4))
                    except ValueError:
                        a, r = self._send(marshal.dumps([None], 4))
                    accepted, refused = accepted + a, refused + r
            self.handed_over += accepted + refused
            self.refused += refused


def _sorted_out(batch):
    """The batch with each span that marshal cannot write (an attribute
    value of a type it does not know) replaced by None, which the native
    side refuses and counts as `dropped_invalid`: one bad span does not
    cost the others."""
    out = []
    for rec in batch:
        try:
            marshal.dumps(rec, 4)
            out.append(rec)
        except ValueError:
            out.append(None)
    return out


class Flusher:
    """One daemon thread per pipeline that hands over, every `interval`
    seconds, whatever waits in its buffers."""

    def __init__(self, buffers, interval):
        self._buffers, self._interval = buffers, interval
        self._stop = threading.Event()
        self._thread = None

    def start(self):
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="otlpflow-py-flush", daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.wait(self._interval):
            buffers = self._buffers()
            if buffers is None:
                return  # the pipeline is gone
            try:
                for b in buffers:
                    b.hand_over()
            except Exception:
                # A closed pipeline: nothing more to hand over.
                return
            del buffers

    def stop(self):
        self._stop.set()
        t = self._thread
        if t is not None and t is not threading.current_thread():
            t.join(5)
        self._thread = None
