//! Faults the receiver can be told to answer with, for tests of retries,
//! throttling and recovery.

use std::time::Duration;

/// A fault the sink answers one request with (tests of retries and
/// recovery).
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// Answer with this gRPC status (over OTLP/HTTP: HTTP 500), with a
    /// `RetryInfo` delay in `grpc-status-details-bin` if given.
    GrpcStatus {
        /// The gRPC code.
        code: u32,
        /// The RetryInfo delay.
        retry_info: Option<Duration>,
    },
    /// Answer with this HTTP status and `Retry-After` value (both
    /// protocols: gRPC clients map the status to a code).
    HttpStatus {
        /// The HTTP status.
        status: u16,
        /// The Retry-After header value, verbatim.
        retry_after: Option<String>,
    },
    /// Answer with this 3xx status and `Location` (OTLP/HTTP; a gRPC
    /// client sees the status alone).
    Redirect {
        /// The HTTP status.
        status: u16,
        /// The Location header value, verbatim.
        location: String,
    },
    /// Accept, but report `rejected` spans as refused (partial success);
    /// those are not counted as received.
    PartialSuccess {
        /// Spans refused.
        rejected: u64,
        /// The message.
        message: String,
    },
    /// Wait this long, then accept.
    Delay(Duration),
    /// Reset the stream (gRPC, HTTP/2) or close the connection (HTTP/1.1)
    /// without answering.
    Reset,
    /// Accept, then send GOAWAY on the connection (HTTP/2): later requests
    /// must go to a new connection.
    GoAway,
}
