//! The receiver's OTLP/gRPC side: an `h2` server connection, and one task
//! per stream that gathers the framed message, processes it and answers
//! with a message and trailers, or a trailers-only status.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use super::held::Held;
use super::request::{process, response_message, status_details, Outcome, Refusal};
use super::{SinkState, MAX_MESSAGE};
use crate::config::Compression;
use crate::otlp::grpc::{read_prefix, GRPC_PREFIX};
use crate::otlp::signal_of_grpc_path as grpc_signal;
use crate::otlp::status::code::RESOURCE_EXHAUSTED;
use crate::record::Signal;

/// Serves one connection until the peer is done with it.
pub(super) async fn serve_connection(tcp: Box<dyn crate::tls::IoStream>, shared: Arc<SinkState>) {
    let handshake = h2::server::Builder::new()
        .initial_window_size(8 << 20)
        .initial_connection_window_size(32 << 20)
        .max_frame_size(1 << 20)
        .max_concurrent_streams(256)
        .max_header_list_size(super::MAX_HEADER_BYTES as u32)
        .handshake::<_, Bytes>(tcp);
    // A client that never finishes its preface is dropped after the timeout.
    let Ok(Ok(mut conn)) = tokio::time::timeout(shared.opts.header_timeout, handshake).await else {
        return;
    };
    let goaway = Arc::new(tokio::sync::Notify::new());
    loop {
        tokio::select! {
            next = conn.accept() => {
                let Some(Ok((req, respond))) = next else { break };
                tokio::task::spawn_local(grpc_stream(req, respond, shared.clone(), goaway.clone()));
            }
            _ = goaway.notified() => {
                // GOAWAY: in-flight streams finish, new ones are refused.
                conn.graceful_shutdown();
            }
        }
    }
    // Drive the connection until the peer is done with it.
    let _ = std::future::poll_fn(|cx| conn.poll_closed(cx)).await;
}

/// Receives, processes and answers one gRPC call.
async fn grpc_stream(
    req: http::Request<h2::RecvStream>,
    mut respond: h2::server::SendResponse<Bytes>,
    shared: Arc<SinkState>,
    goaway: Arc<tokio::sync::Notify>,
) {
    let (parts, mut body) = req.into_parts();
    let signal = grpc_signal(parts.uri.path());
    let refusal = if signal.is_none() {
        Some(Refusal::Grpc {
            code: 12,
            message: format!("unknown method {}", parts.uri.path()),
            retry_info: None,
        })
    } else {
        None
    };
    let signal = signal.unwrap_or(Signal::Traces);
    let encoding = match parts
        .headers
        .get("grpc-encoding")
        .map(|v| v.to_str().unwrap_or("?"))
    {
        None => Ok(Compression::None),
        Some(token) => Compression::from_token(token)
            .ok_or_else(|| format!("grpc-encoding {token} is not supported")),
    };
    // Gathers the framed message, never past what its prefix declares nor
    // past the limit: flow-control capacity is released only for bytes
    // kept, so a sender streaming on is held by its window until the reset.
    // From its prefix on, the message's declared size is held against the
    // receiver's bound (`held`) and its buffer allocated at once: a message
    // let in has room to finish. (Holding bytes as they came let ten 3 MiB
    // messages under an 8 MiB bound each take a share, and all ten were
    // refused.)
    let mut data = BytesMut::new();
    let mut overflow = None;
    let mut held = Held::new(&shared.buffered, shared.opts.max_buffered_bytes);
    let mut admitted = false;
    loop {
        let Ok(next) = tokio::time::timeout(shared.opts.body_timeout, body.data()).await else {
            // A body that stopped arriving gives its bytes back.
            shared.counters.errors.fetch_add(1, Relaxed);
            respond.send_reset(h2::Reason::CANCEL);
            return;
        };
        let Some(chunk) = next else { break };
        let Ok(chunk) = chunk else { return };
        data.extend_from_slice(&chunk);
        if let Some((_, declared)) = read_prefix(&data) {
            // Past the bound on bytes held, a message could never be let
            // in: too large, not a reason to retry.
            let limit = MAX_MESSAGE.min(shared.opts.max_buffered_bytes.saturating_sub(GRPC_PREFIX));
            if declared > limit {
                overflow = Some(Refusal::too_large(
                    &shared,
                    format!("gRPC message of {declared} bytes; the limit is {limit}"),
                ));
                break;
            }
            if data.len() > GRPC_PREFIX + declared {
                overflow = Some(Refusal::bad(
                    &shared,
                    format!("the body runs past the {declared} bytes its prefix declares"),
                ));
                break;
            }
            if !admitted {
                if !held.take(GRPC_PREFIX + declared) {
                    data = BytesMut::new();
                    overflow = Some(Refusal::busy(&shared));
                    break;
                }
                admitted = true;
                if data.capacity() < GRPC_PREFIX + declared {
                    let mut whole = BytesMut::with_capacity(GRPC_PREFIX + declared);
                    whole.extend_from_slice(&data);
                    data = whole;
                }
            }
        }
        let _ = body.flow_control().release_capacity(chunk.len());
    }
    let unread = overflow.is_some();
    let outcome = match (overflow.or(refusal), encoding) {
        (Some(r), _) => Outcome::Refuse(r),
        (None, Err(m)) => {
            shared.counters.errors.fetch_add(1, Relaxed);
            Outcome::Refuse(Refusal::Grpc {
                code: 12,
                message: m,
                retry_info: None,
            })
        }
        (None, Ok(enc)) => {
            if let Some((compressed, len)) = read_prefix(&data) {
                if data.len() != GRPC_PREFIX + len {
                    Outcome::Refuse(Refusal::bad(
                        &shared,
                        format!("gRPC frame says {len} bytes, body has {}", data.len() - 5),
                    ))
                } else if compressed && enc == Compression::None {
                    Outcome::Refuse(Refusal::bad(
                        &shared,
                        "compressed frame without grpc-encoding".into(),
                    ))
                } else {
                    let enc = if compressed { enc } else { Compression::None };
                    let message = &data[GRPC_PREFIX..];
                    let (o, ga) =
                        process(&shared, signal, &parts.headers, enc, message, data.len()).await;
                    if ga {
                        goaway.notify_one();
                    }
                    o
                }
            } else {
                Outcome::Refuse(Refusal::bad(&shared, "truncated gRPC frame".into()))
            }
        }
    };
    let headers = http::Response::builder().header("content-type", "application/grpc");
    match outcome {
        Outcome::Accept { rejected, message } => {
            let Ok(resp) = headers.status(200).body(()) else {
                return;
            };
            let Ok(mut send) = respond.send_response(resp, false) else {
                return;
            };
            let msg = response_message(rejected, message);
            let mut framed = Vec::with_capacity(5 + msg.len());
            framed.push(0);
            framed.extend_from_slice(&(msg.len() as u32).to_be_bytes());
            framed.extend_from_slice(&msg);
            let _ = send.send_data(Bytes::from(framed), false);
            let mut trailers = http::HeaderMap::new();
            trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
            let _ = send.send_trailers(trailers);
        }
        Outcome::Refuse(Refusal::Reset) => respond.send_reset(h2::Reason::INTERNAL_ERROR),
        Outcome::Refuse(Refusal::TooLarge(message)) => {
            // Trailers-only RESOURCE_EXHAUSTED.
            let b = headers
                .status(200)
                .header("grpc-status", RESOURCE_EXHAUSTED.to_string());
            let b = match http::HeaderValue::from_str(&message) {
                Ok(v) => b.header("grpc-message", v),
                Err(_) => b,
            };
            if let Ok(resp) = b.body(()) {
                let _ = respond.send_response(resp, true);
            }
        }
        Outcome::Refuse(Refusal::Http {
            status,
            retry_after,
            ..
        }) => {
            let mut b = headers.status(status);
            if let Some(ra) = retry_after {
                b = b.header(http::header::RETRY_AFTER, ra);
            }
            if let Ok(resp) = b.body(()) {
                let _ = respond.send_response(resp, true);
            }
        }
        Outcome::Refuse(Refusal::Redirect { status, location }) => {
            let b = headers.status(status);
            let b = match http::HeaderValue::from_str(&location) {
                Ok(v) => b.header(http::header::LOCATION, v),
                Err(_) => b,
            };
            if let Ok(resp) = b.body(()) {
                let _ = respond.send_response(resp, true);
            }
        }
        Outcome::Refuse(Refusal::Grpc {
            code,
            message,
            retry_info,
        }) => {
            // Trailers-only response.
            let mut b = headers.status(200).header("grpc-status", code.to_string());
            let msg = message.replace(|c: char| !c.is_ascii_graphic() && c != ' ', "?");
            if let Ok(v) = http::HeaderValue::from_str(&msg) {
                b = b.header("grpc-message", v);
            }
            if let Some(details) = status_details(code, &message, retry_info) {
                b = b.header("grpc-status-details-bin", details);
            }
            if let Ok(resp) = b.body(()) {
                let _ = respond.send_response(resp, true);
            }
        }
    }
    if unread {
        // Dropping the body unread makes h2 reset the stream, which tells a
        // sender still streaming to stop (RFC 9113 §8.1). h2 discards the
        // stream's frames not yet written when it resets, so the body (its
        // window unreleased: the sender is stalled meanwhile) is held a
        // moment for the answer to go out first.
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    drop(body);
}
