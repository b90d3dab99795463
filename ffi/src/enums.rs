//! The C ABI's enumerations: `#[repr(u32)]`, named in the header, with
//! stable numbers. Struct fields and parameters that take one are plain
//! `uint32_t` (a value C wrote need not be a valid variant, and an invalid
//! Rust enum would be undefined behaviour), decoded here, in one place, by
//! `from_u32`, which turns an unknown number into
//! `OTLPFLOW_RESULT_INVALID_ARGUMENT`.

use crate::otlpflow_result;

/// Gives a C enum its checked decoding from `u32` (the enum itself is
/// written out, so that cbindgen, which does not expand macros, sees it).
macro_rules! decode {
    ($name:ident { $($variant:ident),+ $(,)? }) => {
        impl $name {
            /// The variant numbered `v`, or `InvalidArgument`. (Some enums are
            /// only written by the library, and decoded in tests.)
            #[allow(dead_code)]
            pub(crate) fn from_u32(v: u32) -> Result<$name, otlpflow_result> {
                $( if v == $name::$variant as u32 { return Ok($name::$variant); } )+
                Err(otlpflow_result::InvalidArgument)
            }
        }
    };
}

/// Kinds of `otlpflow_value`.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum otlpflow_value_kind {
    /// `str`: UTF-8 text.
    Str = 1,
    /// `boolean`.
    Bool = 2,
    /// `i64`.
    I64 = 3,
    /// `f64`.
    F64 = 4,
    /// `str` holding raw bytes (need not be UTF-8).
    Bytes = 5,
    /// `array`/`array_len`: an array of scalar values (no nested arrays).
    Array = 6,
}

decode!(otlpflow_value_kind {
    Str,
    Bool,
    I64,
    F64,
    Bytes,
    Array
});

/// Metric types of `otlpflow_metric_point.type`.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum otlpflow_metric_type {
    /// A gauge: `as_int` or `as_double`.
    Gauge = 1,
    /// A sum: `as_int` or `as_double`, `monotonic`, `temporality`.
    Sum = 2,
    /// An explicit-bucket histogram: `count`, `bounds`, `bucket_counts`,
    /// optional `sum`, `min`, `max`, and `temporality`.
    Histogram = 3,
}

decode!(otlpflow_metric_type {
    Gauge,
    Sum,
    Histogram
});

/// Kinds of instrument for `otlpflow_pipeline_instrument`.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum otlpflow_instrument_kind {
    /// Monotonic counter: `record` adds a non-negative whole number.
    Counter = 1,
    /// Up-down counter: `record` adds a whole number.
    UpDownCounter = 2,
    /// Gauge: `record` sets the value.
    Gauge = 3,
    /// Histogram: `record` records a value.
    Histogram = 4,
}

decode!(otlpflow_instrument_kind {
    Counter,
    UpDownCounter,
    Gauge,
    Histogram
});

/// Compression of request bodies (`otlpflow_config_set_compression`).
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum otlpflow_compression {
    /// None (the OTLP default).
    None = 0,
    /// gzip (every OTLP receiver accepts it).
    Gzip = 1,
    /// zstd (smaller and faster; not every receiver accepts it).
    Zstd = 2,
}

decode!(otlpflow_compression { None, Gzip, Zstd });

/// What a full ring does (`otlpflow_config_set_policy`).
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum otlpflow_policy {
    /// Refuse the record at once, counted (the default).
    DropNewest = 0,
    /// Block the recording thread up to `max_wait_ms`, then refuse.
    Block = 1,
}

decode!(otlpflow_policy { DropNewest, Block });

/// The export protocol (`otlpflow_config_set_protocol`).
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum otlpflow_protocol {
    /// OTLP/gRPC (default port 4317).
    Grpc = 0,
    /// OTLP/HTTP with protobuf bodies over HTTP/1.1 (default port 4318).
    HttpProtobuf = 1,
}

decode!(otlpflow_protocol { Grpc, HttpProtobuf });

/// The export path's health (`otlpflow_pipeline_health`).
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum otlpflow_health {
    /// The last attempts succeeded (or none was made yet).
    Healthy = 0,
    /// Some attempts fail, some endpoint's circuit breaker is open, or
    /// round trips are slow.
    Degraded = 1,
    /// Every endpoint in use has its circuit breaker open.
    Down = 2,
}

decode!(otlpflow_health {
    Healthy,
    Degraded,
    Down
});

/// `otlpflow_span.kind`, as OTLP numbers it.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum otlpflow_span_kind {
    /// Unspecified.
    Unspecified = 0,
    /// An internal operation.
    Internal = 1,
    /// The server side of a request.
    Server = 2,
    /// The client side of a request.
    Client = 3,
    /// Sending a message.
    Producer = 4,
    /// Receiving a message.
    Consumer = 5,
}

decode!(otlpflow_span_kind {
    Unspecified,
    Internal,
    Server,
    Client,
    Producer,
    Consumer
});

/// `otlpflow_span.status_code`, as OTLP numbers it.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum otlpflow_status_code {
    /// Unset (the default).
    Unset = 0,
    /// The operation succeeded.
    Ok = 1,
    /// The operation failed.
    Error = 2,
}

decode!(otlpflow_status_code { Unset, Ok, Error });

/// The signals, indexing the `*_by_signal` arrays of `otlpflow_stats`.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum otlpflow_signal {
    /// Spans.
    Traces = 0,
    /// Log records.
    Logs = 1,
    /// Metric data points.
    Metrics = 2,
}

decode!(otlpflow_signal {
    Traces,
    Logs,
    Metrics
});

/// Why records were refused at ingest: indexes `otlpflow_stats.dropped`.
/// `otlpflow_drop_reason_name` names each.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum otlpflow_drop_reason {
    /// The ring was full.
    Full = 0,
    /// Larger than a ring record may be.
    TooLarge = 1,
    /// Offered after shutdown began.
    Shutdown = 2,
    /// Invalid input.
    Invalid = 3,
    /// Over an ingest rate limit.
    RateLimited = 4,
    /// Over the memory budget.
    Memory = 5,
    /// The system's memory use over `system_memory_limit`.
    SystemMemory = 6,
}

decode!(otlpflow_drop_reason {
    Full,
    TooLarge,
    Shutdown,
    Invalid,
    RateLimited,
    Memory,
    SystemMemory
});

/// Why accepted records failed for good: indexes
/// `otlpflow_stats.failed_by_reason`. `otlpflow_fail_reason_name` names
/// each.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum otlpflow_fail_reason {
    /// A permanent error (refused, untrusted certificate, malformed).
    Permanent = 0,
    /// Retries ran out on a retryable error.
    Exhausted = 1,
    /// Waiting for a retry, evicted for newer data.
    Evicted = 2,
    /// Unsent at shutdown's deadline.
    Shutdown = 3,
    /// In flight in the parent at a fork.
    Fork = 4,
}

decode!(otlpflow_fail_reason {
    Permanent,
    Exhausted,
    Evicted,
    Shutdown,
    Fork
});

impl otlpflow_span_kind {
    pub(crate) fn to_rust(self) -> otlpflow::SpanKind {
        use otlpflow::SpanKind as K;
        match self {
            otlpflow_span_kind::Unspecified => K::Unspecified,
            otlpflow_span_kind::Internal => K::Internal,
            otlpflow_span_kind::Server => K::Server,
            otlpflow_span_kind::Client => K::Client,
            otlpflow_span_kind::Producer => K::Producer,
            otlpflow_span_kind::Consumer => K::Consumer,
        }
    }
}

impl otlpflow_status_code {
    pub(crate) fn to_rust(self) -> otlpflow::StatusCode {
        match self {
            otlpflow_status_code::Unset => otlpflow::StatusCode::Unset,
            otlpflow_status_code::Ok => otlpflow::StatusCode::Ok,
            otlpflow_status_code::Error => otlpflow::StatusCode::Error,
        }
    }
}

impl otlpflow_compression {
    pub(crate) fn to_rust(self) -> otlpflow::Compression {
        match self {
            otlpflow_compression::None => otlpflow::Compression::None,
            otlpflow_compression::Gzip => otlpflow::Compression::Gzip,
            otlpflow_compression::Zstd => otlpflow::Compression::Zstd,
        }
    }
}

impl otlpflow_health {
    pub(crate) fn of(h: otlpflow::Health) -> otlpflow_health {
        match h {
            otlpflow::Health::Healthy => otlpflow_health::Healthy,
            otlpflow::Health::Degraded => otlpflow_health::Degraded,
            otlpflow::Health::Down => otlpflow_health::Down,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// The C tables match the engine's: same count, same order.
    #[test]
    fn reason_and_signal_numbers_match_the_engine() {
        for r in otlpflow::DropReason::ALL {
            let c = otlpflow_drop_reason::from_u32(*r as u32).unwrap();
            assert_eq!(format!("{c:?}"), format!("{r:?}"));
        }
        assert!(otlpflow_drop_reason::from_u32(otlpflow::DropReason::COUNT as u32).is_err());
        for r in otlpflow::FailReason::ALL {
            let c = otlpflow_fail_reason::from_u32(*r as u32).unwrap();
            assert_eq!(format!("{c:?}"), format!("{r:?}"));
        }
        assert!(otlpflow_fail_reason::from_u32(otlpflow::FailReason::COUNT as u32).is_err());
        for s in otlpflow::Signal::ALL {
            let c = otlpflow_signal::from_u32(s.index() as u32).unwrap();
            assert_eq!(format!("{c:?}"), format!("{s:?}"));
        }
        assert_eq!(
            otlpflow_span_kind::from_u32(2).unwrap().to_rust(),
            otlpflow::SpanKind::Server
        );
        assert_eq!(
            otlpflow_span_kind::from_u32(6),
            Err(otlpflow_result::InvalidArgument)
        );
    }
}
