//! gRPC status codes and the `google.rpc` messages OTLP errors carry
//! (`Status`, `RetryInfo`), and HTTP's `Retry-After`: what a receiver says
//! when it refuses, shared by the exporter (which reads it) and the
//! embedded receiver (which writes it).

use std::time::Duration;

use prost::Message;

/// gRPC status codes (grpc/grpc `doc/statuscodes.md`), the full table even
/// where this exporter does not name a code yet.
#[allow(dead_code, missing_docs)] // each constant is the code the spec names
pub mod code {
    pub const OK: u32 = 0;
    pub const CANCELLED: u32 = 1;
    pub const UNKNOWN: u32 = 2;
    pub const INVALID_ARGUMENT: u32 = 3;
    pub const DEADLINE_EXCEEDED: u32 = 4;
    pub const PERMISSION_DENIED: u32 = 7;
    pub const RESOURCE_EXHAUSTED: u32 = 8;
    pub const ABORTED: u32 = 10;
    pub const OUT_OF_RANGE: u32 = 11;
    pub const UNIMPLEMENTED: u32 = 12;
    pub const INTERNAL: u32 = 13;
    pub const UNAVAILABLE: u32 = 14;
    pub const DATA_LOSS: u32 = 15;
    pub const UNAUTHENTICATED: u32 = 16;
}

/// `google.rpc.Status`, as carried in `grpc-status-details-bin` and in
/// OTLP/HTTP error bodies.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct RpcStatus {
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(string, tag = "2")]
    pub message: String,
    #[prost(message, repeated, tag = "3")]
    pub details: Vec<RpcAny>,
}

/// `google.protobuf.Any`.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct RpcAny {
    #[prost(string, tag = "1")]
    pub type_url: String,
    #[prost(bytes = "vec", tag = "2")]
    pub value: Vec<u8>,
}

/// `google.rpc.RetryInfo`.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct RetryInfo {
    #[prost(message, optional, tag = "1")]
    pub retry_delay: Option<RpcDuration>,
}

/// `google.protobuf.Duration`.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct RpcDuration {
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

/// The type URL of `google.rpc.RetryInfo` inside an `Any`.
pub(crate) const RETRY_INFO_TYPE: &str = "type.googleapis.com/google.rpc.RetryInfo";

/// The `RetryInfo` delay in a `google.rpc.Status`, if any (negative delays
/// are ignored, absurd ones capped at an hour).
pub(crate) fn retry_info_delay(status: &RpcStatus) -> Option<Duration> {
    status
        .details
        .iter()
        .filter(|d| d.type_url == RETRY_INFO_TYPE)
        .find_map(|d| RetryInfo::decode(&d.value[..]).ok()?.retry_delay)
        .filter(|d| d.seconds >= 0 && d.nanos >= 0)
        .map(|d| {
            (Duration::from_secs(d.seconds as u64) + Duration::from_nanos(d.nanos as u64))
                .min(Duration::from_secs(3600))
        })
}

/// Parses `Retry-After`: delay-seconds or an HTTP-date (RFC 9110 §10.2.3).
pub(crate) fn parse_retry_after(value: &str, now: std::time::SystemTime) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs.min(3600)));
    }
    let when = httpdate::parse_http_date(v).ok()?;
    Some(
        when.duration_since(now)
            .unwrap_or(Duration::ZERO)
            .min(Duration::from_secs(3600)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_info_and_retry_after() {
        let info = RetryInfo {
            retry_delay: Some(RpcDuration {
                seconds: 1,
                nanos: 500_000_000,
            }),
        };
        let st = RpcStatus {
            code: 8,
            message: "slow down".into(),
            details: vec![RpcAny {
                type_url: RETRY_INFO_TYPE.into(),
                value: info.encode_to_vec(),
            }],
        };
        assert_eq!(retry_info_delay(&st), Some(Duration::from_millis(1500)));
        assert_eq!(retry_info_delay(&RpcStatus::default()), None);
        let now = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(30));
        assert_eq!(
            parse_retry_after(&later, now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }
}
