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
use super::{walk, Fault, SinkState, Verify, MAX_MESSAGE};
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
    Reset,
}

impl Refusal {
    pub(super) fn bad(shared: &SinkState, message: String) -> Refusal {
        shared.counters.errors.fetch_add(1, Relaxed);
        Refusal::Grpc {
            code: 3,
            message,
            retry_info: None,
        }
    }
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
            Fault::Reset => return (Outcome::Refuse(Refusal::Reset), false),
            Fault::Delay(d) => tokio::time::sleep(d).await,
            Fault::GoAway => goaway = true,
            Fault::PartialSuccess { rejected, message } => partial = Some((rejected, message)),
        }
    }
    let decompressed;
    let message: &[u8] = match encoding {
        Compression::None => payload,
        enc => match decompress(enc, payload, MAX_MESSAGE) {
            Ok(d) => {
                decompressed = d;
                &decompressed
            }
            Err(e) => {
                return (
                    Outcome::Refuse(Refusal::bad(shared, format!("decompressing: {e}"))),
                    false,
                )
            }
        },
    };
    let spans = match shared.opts.verify {
        Verify::Full => decode_full(message, signal, shared),
        Verify::Walk { sample_every } => match walk::count_records(message, signal) {
            Err(e) => Err(format!("malformed request: {e}")),
            Ok(n) => {
                let k = c.sampled.fetch_add(1, Relaxed);
                if k % sample_every.max(1) == 0 {
                    match decode_full(message, signal, shared) {
                        Ok(full) if full != n => {
                            Err(format!("walk counted {n} records, prost decoded {full}"))
                        }
                        Ok(_) => Ok(n),
                        Err(e) => Err(e),
                    }
                } else {
                    Ok(n)
                }
            }
        },
    };
    let spans = match spans {
        Ok(n) => n,
        Err(m) => return (Outcome::Refuse(Refusal::bad(shared, m)), false),
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
    c.bytes_raw.fetch_add(message.len() as u64, Relaxed);
    (
        Outcome::Accept {
            rejected,
            message: msg,
        },
        goaway,
    )
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
