"""The native library, its result codes and errors, and the helpers that
build the C structs of the direct (unbuffered) calls."""

import ctypes
import enum
import random
import threading
import time

from . import _ffi, _spans

_lib = None
_lib_lock = threading.Lock()


def _library():
    global _lib
    with _lib_lock:
        if _lib is None:
            _lib = _ffi.load()
        return _lib


_objects = None


def _object_handover():
    """`(stage, api)` for handing span records over as the objects
    themselves (`otlpflow_python_stage_spans` and this interpreter's
    `PythonApi`), or None where they go through marshal (see
    `_ffi.python_api`). Made once per process."""
    global _objects
    with _lib_lock:
        if _objects is None:
            lib = _lib if _lib is not None else _ffi.load()
            api = _ffi.python_api()
            _objects = (_ffi.stage_function(lib), ctypes.byref(api), api) if api is not None else ()
        return _objects[:2] if _objects else None


def version() -> str:
    """The version of the loaded native library."""
    return _library().otlpflow_version().decode()


class Result(enum.IntEnum):
    """The C ABI's result codes (`otlpflow_result`)."""

    OK = 0
    NULL_ARGUMENT = 1
    INVALID_UTF8 = 2
    BUFFER_TOO_SMALL = 3
    INVALID_CONFIG = 4
    FULL = 5
    TOO_LARGE = 6
    SHUTDOWN = 7
    TIMEOUT = 8
    INVALID_ARGUMENT = 9
    TOO_MANY_ATTRIBUTES = 10
    INVALID_SCOPE = 11
    RATE_LIMITED = 12
    MEMORY = 13
    INVALID_HANDLE = 14
    INTERNAL = 15
    PANIC = 100


# The codes as module constants too (otlpflow.OK, ...).
(OK, NULL_ARGUMENT, INVALID_UTF8, BUFFER_TOO_SMALL, INVALID_CONFIG, FULL, TOO_LARGE, SHUTDOWN, TIMEOUT,
 INVALID_ARGUMENT, TOO_MANY_ATTRIBUTES, INVALID_SCOPE, RATE_LIMITED, MEMORY, INVALID_HANDLE, INTERNAL,
 PANIC) = tuple(Result)


def _code(code: int):
    """The Result for a code (an unknown one stays a plain int)."""
    try:
        return Result(code)
    except ValueError:
        return code


class OtlpflowError(Exception):
    """A failed call; `code` is the C result code."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = _code(code)


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
    """A Str pointing into `data` (which the caller keeps alive): a str, or
    bytes holding UTF-8 (the library checks them)."""
    if isinstance(text, str):
        data = text.encode("utf-8")
    elif isinstance(text, (bytes, bytearray, memoryview)):
        data = bytes(text)
    else:
        # bytes(5) is five NUL bytes: an int attribute key or span name went
        # out as NULs, and bytes(10**10) allocated ten gigabytes first.
        # Not the value itself: a header's value is a credential.
        raise TypeError("expected a str, got %s" % type(text).__name__)
    return _ffi.Str(data, len(data)), data


def _millis(seconds, what):
    """`seconds` as the whole milliseconds of a native u64 argument.
    ctypes keeps the low bits of a negative int: a linger of -1 s became
    one of 2**64 - 1000 ms (batches left only when full or flushed), a
    flush(-1) a wait without end. NaN and the infinities are refused too."""
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        raise TypeError("%s must be a number of seconds, got %s" % (what, type(seconds).__name__))
    if not 0 <= seconds < float(1 << 44):  # NaN fails this too; 2**44 s is over 500,000 years
        raise ValueError("%s must be a finite number of seconds, at least 0, got %r" % (what, seconds))
    return int(seconds * 1000)


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


# The ranges of the C ABI's integer fields. ctypes stores an int that does
# not fit by dropping its high bits (2**70 became 0, 2**63 became -2**63, a
# timestamp of -1 the year 2554), so every int a caller gives is checked
# against its field's range first.
_U32 = (0, (1 << 32) - 1)
_U64 = (0, (1 << 64) - 1)
_I64 = (-(1 << 63), (1 << 63) - 1)


def _fits(value, bounds, what):
    """`value`, an int within `bounds`, or OverflowError naming `what`."""
    lo, hi = bounds
    if not lo <= value <= hi:
        raise OverflowError("%s must be an integer from %d to %d" % (what, lo, hi))
    return value


def _fill_value(v, value, keep, allow_array=True):
    if isinstance(value, bool):
        v.kind, v.boolean = _ffi.BOOL, value
    elif isinstance(value, int):
        v.kind, v.i64 = _ffi.I64, _fits(value, _I64, "an int attribute value (OTLP's int_value)")
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
    if isinstance(value, int):
        # As the OpenTelemetry API and otlpflow's Span keep ids: big-endian.
        if value <= 0 or value >> (8 * size):
            raise ValueError("id must be a positive integer of at most %d bytes" % size)
        return value.to_bytes(size, "big")
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




def _c_span(keep, name, trace_id=None, span_id=None, parent_span_id=None, kind="internal",
            start_time_unix_nano=None, end_time_unix_nano=None, attributes=None, events=None,
            links=None, status=("unset", "")):
    """An otlpflow_span for `record_span`'s arguments, pointing into `keep`."""
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
    s.end_time_unix_nano = now if end_time_unix_nano is None else _fits(end_time_unix_nano, _U64, "end_time_unix_nano")
    s.start_time_unix_nano = (s.end_time_unix_nano if start_time_unix_nano is None
                              else _fits(start_time_unix_nano, _U64, "start_time_unix_nano"))
    s.attributes, s.attributes_len = _attributes(attributes, keep)
    if events:
        evs = (_ffi.Event * len(events))()
        for i, (t, ename, eattrs) in enumerate(events):
            evs[i].time_unix_nano = _fits(t, _U64, "an event's time")
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
    return s
