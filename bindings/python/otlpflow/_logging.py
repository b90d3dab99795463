"""The logging.Handler that sends Python log records as OTLP log records."""

import logging

from ._spans import _message


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
            # Each may be None: threadName under `logging.logThreads =
            # False` (an optimization the logging docs suggest), funcName in
            # a record from `makeLogRecord`. A None made record_log raise,
            # and every such record was lost to handleError.
            attributes = {
                key: value
                for key, value in (
                    ("code.function.name", record.funcName),
                    ("code.file.path", record.pathname),
                    ("code.line.number", record.lineno),
                    ("thread.name", record.threadName),
                    ("log.logger", record.name),
                )
                if value is not None
            }
            for key, value in vars(record).items():
                if key not in self._STANDARD and isinstance(value, (str, int, float, bool)):
                    attributes[key] = value
            if record.exc_info and record.exc_info[0] is not None:
                attributes["exception.type"] = record.exc_info[0].__name__
                attributes["exception.message"] = _message(record.exc_info[1])
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
