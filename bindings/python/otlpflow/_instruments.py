"""Instruments: counters, gauges and histograms aggregated natively."""

from ._native import _Guard, _Keep, _attributes, _check


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
