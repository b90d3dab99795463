//! One request's way through the receiver, whatever the protocol: the
//! capacity check, an injected fault if one is queued, decompression,
//! checking, counting; and the answers it can get.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use base64::Engine;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceResponse,
};
use prost::Message;

use super::verify::decode_full;
use super::{walk, Fault, SinkState, Verify, MAX_DECODED, MAX_MESSAGE};
use crate::config::Compression;
use crate::otlp::compress::decompress;
use crate::otlp::status::{RetryInfo, RpcAny, RpcDuration, RpcStatus, RETRY_INFO_TYPE};
use crate::record::Signal;

/// The result of checking one request.
pub(super) enum Outcome {
    /// Accepted: respond OK, with a partial success if `rejected > 0`.
    Accept { rejected: u64, message: String },
    /// Refused with a fault or an error.
    Refuse(Refusal),
}

/// Why a request was not accepted, and how to say so.
pub(super) enum Refusal {
    Grpc {
        code: u32,
        message: String,
        retry_info: Option<Duration>,
    },
    Http {
        status: u16,
        message: String,
        retry_after: Option<String>,
    },
    /// A 3xx and where it leads.
    Redirect {
        status: u16,
        location: String,
    },
    Reset,
    /// Too large to process: gRPC RESOURCE_EXHAUSTED (without RetryInfo, so
    /// not retried), HTTP 413.
    TooLarge(String),
}

impl Refusal {
    pub(super) fn too_large(shared: &SinkState, message: String) -> Refusal {
        shared.counters.errors.fetch_add(1, Relaxed);
        Refusal::TooLarge(message)
    }

    /// The receiver holds all the request bytes it may
    /// (`max_buffered_bytes`): RESOURCE_EXHAUSTED with a RetryInfo of a
    /// second (HTTP 429), counted as throttled.
    pub(super) fn busy(shared: &SinkState) -> Refusal {
        shared.counters.throttled.fetch_add(1, Relaxed);
        Refusal::Grpc {
            code: crate::otlp::status::code::RESOURCE_EXHAUSTED,
            message: busy_message(shared),
            retry_info: Some(BUSY_RETRY),
        }
    }

    pub(super) fn bad(shared: &SinkState, message: String) -> Refusal {
        shared.counters.errors.fetch_add(1, Relaxed);
        Refusal::Grpc {
            code: 3,
            message,
            retry_info: None,
        }
    }
}

/// How long a client refused for want of room (`Refusal::busy`) is asked
/// to wait.
pub(super) const BUSY_RETRY: Duration = Duration::from_secs(1);

/// Why a request was refused for want of room.
pub(super) fn busy_message(shared: &SinkState) -> String {
    format!(
        "the receiver holds {} bytes of requests, its limit",
        shared.opts.max_buffered_bytes
    )
}

/// Checks and counts one OTLP message (`payload` as received, with its
/// encoding), after applying any injected fault. SinkState by both protocols.
pub(super) async fn process(
    shared: &SinkState,
    signal: Signal,
    headers: &http::HeaderMap,
    encoding: Compression,
    payload: &[u8],
    wire: usize,
) -> (Outcome, bool) {
    if shared.opts.keep_requests {
        *shared.last_headers.lock() = Some(headers.clone());
    }
    let c = &shared.counters;
    // Counts this request as active until it is answered.
    struct Active<'a>(&'a AtomicU64);
    impl Drop for Active<'_> {
        fn drop(&mut self) {
            self.0.fetch_sub(1, Relaxed);
        }
    }
    let active = c.active.fetch_add(1, Relaxed) + 1;
    let _active = Active(&c.active);
    if shared
        .opts
        .max_concurrent
        .is_some_and(|max| active > max as u64)
    {
        c.throttled.fetch_add(1, Relaxed);
        return (
            Outcome::Refuse(Refusal::Grpc {
                code: crate::otlp::status::code::RESOURCE_EXHAUSTED,
                message: "receiver at capacity".into(),
                retry_info: Some(Duration::from_millis(10)),
            }),
            false,
        );
    }
    if !shared.opts.latency.is_zero() {
        tokio::time::sleep(shared.opts.latency).await;
    }
    let fault = shared.faults.lock().pop_front();
    let mut goaway = false;
    let mut partial = None;
    if let Some(f) = fault {
        c.injected.fetch_add(1, Relaxed);
        match f {
            Fault::GrpcStatus { code, retry_info } => {
                return (
                    Outcome::Refuse(Refusal::Grpc {
                        code,
                        message: "injected failure".into(),
                        retry_info,
                    }),
                    false,
                )
            }
            Fault::HttpStatus {
                status,
                retry_after,
            } => {
                return (
                    Outcome::Refuse(Refusal::Http {
                        status,
                        message: "injected failure".into(),
                        retry_after,
                    }),
                    false,
                )
            }
            Fault::Redirect { status, location } => {
                return (
                    Outcome::Refuse(Refusal::Redirect { status, location }),
                    false,
                )
            }
            Fault::Reset => return (Outcome::Refuse(Refusal::Reset), false),
            Fault::Delay(d) => tokio::time::sleep(d).await,
            Fault::GoAway => goaway = true,
            Fault::PartialSuccess { rejected, message } => partial = Some((rejected, message)),
        }
    }
    let sample = match shared.opts.verify {
        Verify::Full => true,
        Verify::Walk { sample_every } => c.sampled.fetch_add(1, Relaxed) % sample_every.max(1) == 0,
    };
    let keep = shared.opts.keep_requests.then_some(shared);
    let how = Checking {
        verify: shared.opts.verify,
        sample,
        limits: Limits::RECEIVER,
    };
    let checked = check_and_keep(signal, encoding, payload, how, keep);
    let (spans, raw_len) = match checked {
        Ok(counted) => counted,
        Err(Invalid::Malformed(m)) => return (Outcome::Refuse(Refusal::bad(shared, m)), false),
        Err(Invalid::TooLarge(m)) => {
            return (Outcome::Refuse(Refusal::too_large(shared, m)), false)
        }
    };
    let (rejected, msg) = partial.unwrap_or((0, String::new()));
    let rejected = rejected.min(spans);
    match signal {
        Signal::Traces => &c.spans,
        Signal::Logs => &c.logs,
        Signal::Metrics => &c.metric_points,
    }
    .fetch_add(spans - rejected, Relaxed);
    c.requests.fetch_add(1, Relaxed);
    c.bytes_wire.fetch_add(wire as u64, Relaxed);
    c.max_request.fetch_max(wire as u64, Relaxed);
    c.bytes_raw.fetch_add(raw_len as u64, Relaxed);
    (
        Outcome::Accept {
            rejected,
            message: msg,
        },
        goaway,
    )
}

/// Checks one OTLP message as the receiver does (see `check_and_keep`),
/// for fuzzing and for tools: the record count and the decompressed
/// length, or why it was refused. `how.limits` is the receiver's own with
/// [`Limits::RECEIVER`]; a fuzzer sets it low, so that a compression bomb
/// reaches the limit in a fraction of a millisecond instead of inflating
/// 64 MiB on every run.
pub fn check(
    signal: Signal,
    encoding: Compression,
    payload: &[u8],
    how: Checking,
) -> Result<(u64, usize), Invalid> {
    check_and_keep(signal, encoding, payload, how, None)
}

/// How [`check`] checks a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checking {
    /// Walk it, or decode it in full.
    pub verify: Verify,
    /// With `Verify::Walk`, decode this one in full too.
    pub sample: bool,
    /// Its bounds.
    pub limits: Limits,
}

/// What bounds the receiver's memory for one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The largest message, on the wire and decompressed.
    pub max_message: usize,
    /// The most a full decode may allocate (see `walk::decode_cost`).
    pub max_decoded: u64,
}

impl Limits {
    /// The receiver's own: 64 MiB a message, 256 MiB a full decode.
    pub const RECEIVER: Limits = Limits {
        max_message: MAX_MESSAGE,
        max_decoded: MAX_DECODED,
    };
}

/// Why `check` refused a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invalid {
    /// It does not decompress, walk or decode as the signal's request.
    Malformed(String),
    /// Past a limit: decompressed size, or what a full decode would take.
    TooLarge(String),
}

/// Checks one OTLP message as the receiver does, whatever the protocol:
/// decompresses `payload` (never past `how.limits.max_message`), then walks
/// it (`Verify::Walk`) or decodes it with prost (`Verify::Full`, or a
/// walked request chosen by `how.sample`), the full decode only after
/// `walk::decode_cost` shows it stays under `how.limits.max_decoded`.
/// Returns the number of records and the decompressed length. `keep` keeps
/// the decoded request (tests). Allocates at most the sum of the two
/// limits.
pub(super) fn check_and_keep(
    signal: Signal,
    encoding: Compression,
    payload: &[u8],
    how: Checking,
    keep: Option<&SinkState>,
) -> Result<(u64, usize), Invalid> {
    let Checking {
        verify,
        sample,
        limits: Limits {
            max_message,
            max_decoded,
        },
    } = how;
    let decompressed;
    let message: &[u8] = match encoding {
        Compression::None if payload.len() > max_message => {
            return Err(Invalid::TooLarge(format!(
                "message of {} bytes; the limit is {max_message}",
                payload.len()
            )))
        }
        Compression::None => payload,
        enc => match decompress(enc, payload, max_message) {
            Ok(d) => {
                decompressed = d;
                &decompressed
            }
            Err(e) if e.kind() == std::io::ErrorKind::FileTooLarge => {
                return Err(Invalid::TooLarge(format!(
                    "decompressed message over {max_message} bytes"
                )))
            }
            Err(e) => return Err(Invalid::Malformed(format!("decompressing: {e}"))),
        },
    };
    // A full decode allocates; the walk does not. Before any full decode,
    // its allocations are bounded from the wire bytes (`walk::decode_cost`).
    let affordable = || walk::decode_cost(message) <= max_decoded;
    let records = match verify {
        Verify::Full if !affordable() => {
            return Err(Invalid::TooLarge(format!(
                "request would decode to more than {max_decoded} bytes"
            )))
        }
        Verify::Full => decode_full(message, signal, keep),
        Verify::Walk { .. } => match walk::count_records(message, signal) {
            Err(e) => Err(format!("malformed request: {e}")),
            // The sampled decode is skipped for a request too large to
            // decode: the walk has checked and counted it.
            Ok(n) if sample && affordable() => match decode_full(message, signal, keep) {
                Ok(full) if full != n => {
                    Err(format!("walk counted {n} records, prost decoded {full}"))
                }
                Ok(_) => Ok(n),
                Err(e) => Err(e),
            },
            Ok(n) => Ok(n),
        },
    };
    records
        .map(|n| (n, message.len()))
        .map_err(Invalid::Malformed)
}

pub(super) fn response_message(rejected: u64, message: String) -> Vec<u8> {
    let resp = ExportTraceServiceResponse {
        partial_success: (rejected > 0 || !message.is_empty()).then_some(
            ExportTracePartialSuccess {
                rejected_spans: rejected as i64,
                error_message: message,
            },
        ),
    };
    resp.encode_to_vec()
}

pub(super) fn status_details(
    code: u32,
    message: &str,
    retry_info: Option<Duration>,
) -> Option<String> {
    let d = retry_info?;
    let st = RpcStatus {
        code: code as i32,
        message: message.to_owned(),
        details: vec![RpcAny {
            type_url: RETRY_INFO_TYPE.into(),
            value: RetryInfo {
                retry_delay: Some(RpcDuration {
                    seconds: d.as_secs() as i64,
                    nanos: d.subsec_nanos() as i32,
                }),
            }
            .encode_to_vec(),
        }],
    };
    Some(base64::engine::general_purpose::STANDARD_NO_PAD.encode(st.encode_to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::otlp::compress::Compressor;

    #[test]
    fn the_limits_given_are_the_limits_kept() {
        // 50,000 empty `resource_spans`: 100,000 valid bytes, no spans, and
        // a full decode of 50,000 messages (25.7 MB by `decode_cost`).
        let request = [0x0a, 0x00].repeat(50_000);
        let gzip = Compressor::new(Compression::Gzip, 6)
            .compress(&[&request], request.len(), 0)
            .unwrap();
        assert!(gzip.len() < 1_000, "{} bytes", gzip.len());
        let walk = Verify::Walk { sample_every: 1 };
        let small = Limits {
            max_message: 64 << 10,
            max_decoded: 1 << 20,
        };
        let how = |verify, sample, limits| Checking {
            verify,
            sample,
            limits,
        };
        // The receiver's own limits take it, walked and decoded.
        for verify in [walk, Verify::Full] {
            assert_eq!(
                check(
                    Signal::Traces,
                    Compression::Gzip,
                    &gzip,
                    how(verify, true, Limits::RECEIVER)
                ),
                Ok((0, request.len()))
            );
        }
        // Past a smaller message limit, compressed or not.
        for (encoding, payload) in [(Compression::Gzip, &gzip), (Compression::None, &request)] {
            match check(Signal::Traces, encoding, payload, how(walk, false, small)) {
                Err(Invalid::TooLarge(m)) => assert!(m.contains("65536"), "{m}"),
                other => panic!("{encoding:?}: {other:?}"),
            }
        }
        // Within it, but past the decode limit: refused before decoding; the
        // walk alone, which allocates nothing, still takes it.
        let part = &request[..60_000];
        let none = Compression::None;
        match check(Signal::Traces, none, part, how(Verify::Full, true, small)) {
            Err(Invalid::TooLarge(m)) => assert!(m.contains("1048576"), "{m}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            check(Signal::Traces, none, part, how(walk, false, small)),
            Ok((0, part.len()))
        );
    }
}
