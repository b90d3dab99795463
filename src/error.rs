//! The errors of the safe Rust API.
//!
//! Setup and control calls return [`Error`], an opaque value that says whose
//! fault a failure was (the caller's, the configuration's, the remote end's,
//! or otlpflow's own) and carries context. Recording returns [`RecordError`],
//! a plain value: a refusal on the hot path never allocates.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Config,
    Timeout,
    Shutdown,
    Internal,
}

/// An error from configuring, starting, flushing or stopping a pipeline.
#[derive(Debug, Clone)]
pub struct Error {
    kind: Kind,
    message: String,
}

impl Error {
    /// The message without the kind in front of it (to wrap it in
    /// another message of the same kind).
    pub(crate) fn message(&self) -> &str {
        &self.message
    }

    pub(crate) fn config(message: impl Into<String>) -> Self {
        Error {
            kind: Kind::Config,
            message: message.into(),
        }
    }
    pub(crate) fn timeout(message: impl Into<String>) -> Self {
        Error {
            kind: Kind::Timeout,
            message: message.into(),
        }
    }
    pub(crate) fn shutdown() -> Self {
        Error {
            kind: Kind::Shutdown,
            message: "the pipeline has been shut down".into(),
        }
    }
    pub(crate) fn internal(message: impl Into<String>) -> Self {
        Error {
            kind: Kind::Internal,
            message: message.into(),
        }
    }

    /// An invalid setting: the message names it.
    pub fn is_config(&self) -> bool {
        self.kind == Kind::Config
    }
    /// A deadline passed before the work was done.
    pub fn is_timeout(&self) -> bool {
        self.kind == Kind::Timeout
    }
    /// The pipeline was already shut down.
    pub fn is_shutdown(&self) -> bool {
        self.kind == Kind::Shutdown
    }
    /// A failure inside otlpflow itself (a thread could not start, say).
    pub fn is_internal(&self) -> bool {
        self.kind == Kind::Internal
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let whose = match self.kind {
            Kind::Config => "configuration error",
            Kind::Timeout => "timed out",
            Kind::Shutdown => "shut down",
            Kind::Internal => "internal error",
        };
        write!(f, "{whose}: {}", self.message)
    }
}

impl std::error::Error for Error {}

/// Why a record was refused on the hot path. Each refusal is also counted in
/// the stats under the same reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordError {
    /// The shard ring was full (after waiting, under the `Block` policy).
    Full,
    /// The encoded record is larger than a ring can hold.
    TooLarge,
    /// The pipeline is shut down.
    Shutdown,
    /// The scope handle belongs to another pipeline.
    InvalidScope,
    /// Over the ingest rate limit.
    RateLimited,
    /// Over the memory budget.
    Memory,
    /// The system's memory use is over `system_memory_limit`.
    SystemMemory,
    /// The record is malformed (a log severity over 24, a metric point
    /// without a name or with buckets that do not match its bounds).
    Invalid,
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RecordError::Full => "ring full: record dropped",
            RecordError::TooLarge => "record larger than the ring's maximum record size",
            RecordError::Shutdown => "pipeline is shut down",
            RecordError::InvalidScope => "scope handle belongs to another pipeline",
            RecordError::RateLimited => "over the ingest rate limit: record dropped",
            RecordError::SystemMemory => "system memory use over its limit: record dropped",
            RecordError::Memory => "over the memory budget: record dropped",
            RecordError::Invalid => "malformed record: dropped",
        })
    }
}

impl std::error::Error for RecordError {}

/// Text from the other end of a connection (a server's error message, a
/// partial-success message) made safe to print: control characters (ESC,
/// newlines) are escaped, so that it cannot move a terminal's cursor or
/// forge log lines, and it is cut at 512 characters.
pub(crate) fn printable(remote: &str) -> String {
    let mut out = String::with_capacity(remote.len().min(512));
    for (n, c) in remote.chars().enumerate() {
        if n == 512 {
            out.push_str("...");
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod printable_tests {
    #[test]
    fn remote_text_cannot_drive_a_terminal() {
        let evil = "ok\x1b[2J\r\nFAKE LOG LINE\u{7}";
        let p = super::printable(evil);
        assert!(!p.chars().any(char::is_control), "{p:?}");
        assert!(p.contains("\\u{1b}[2J\\r\\nFAKE LOG LINE"), "{p}");
        assert_eq!(super::printable(&"x".repeat(600)).len(), 515);
    }
}
