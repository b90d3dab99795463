//! The embedded OTLP receiver: OTLP/gRPC (an `h2` server) and, when asked,
//! OTLP/HTTP (hyper, HTTP/1.1 and cleartext HTTP/2 on one port), on
//! loopback. It decompresses gzip and zstd, checks every request, counts
//! spans, requests and bytes, and can inject faults for tests. Tests,
//! benchmarks and the CLI's `demo` and `sink` start it; it runs on its own
//! thread with its own runtime.
//!
//! Checking: [`Verify::Full`] decodes every request with the
//! `opentelemetry-proto` types (tests); [`Verify::Walk`] walks the wire format
//! without allocating and fully decodes one request in `sample_every`
//! (benchmarks and the demo). A request that does not decode is an error in
//! the counts and in its response, never a crash.

pub mod walk;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use base64::Engine;
use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Full};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use parking_lot::Mutex;
use prost::Message;

use crate::config::Compression;
use crate::otlp::compress::decompress;
use crate::otlp::status::{RetryInfo, RpcAny, RpcDuration, RpcStatus, RETRY_INFO_TYPE};
use crate::record::Signal;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;

/// gRPC path of the OTLP trace service.
pub const TRACE_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";
/// OTLP/HTTP path of traces.
pub const HTTP_TRACE_PATH: &str = "/v1/traces";
use crate::otlp::{signal_of_grpc_path as grpc_signal, signal_of_http_path as http_signal};

/// The largest decompressed message the sink accepts.
const MAX_MESSAGE: usize = 256 << 20;

/// How the sink checks requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verify {
    /// Decode every request with prost.
    Full,
    /// Walk every request; fully decode one in `sample_every`.
    Walk {
        /// Decode one request in this many (at least 1).
        sample_every: u64,
    },
}

/// Sink options.
#[derive(Debug, Clone)]
pub struct SinkOptions {
    /// Address for OTLP/gRPC; port 0 picks a free one.
    pub grpc_addr: SocketAddr,
    /// Address for OTLP/HTTP (HTTP/1.1 and h2c), if wanted.
    pub http_addr: Option<SocketAddr>,
    /// How requests are checked.
    pub verify: Verify,
    /// Keep every decoded request (tests only: memory grows with traffic).
    pub keep_requests: bool,
    /// Serve both ports over TLS with this certificate chain and key (PEM).
    pub tls: Option<SinkTls>,
    /// Added to every request before it is answered: a slow or distant
    /// receiver.
    pub latency: Duration,
    /// Requests the receiver serves at once; more are refused as throttled
    /// (gRPC RESOURCE_EXHAUSTED with a 10 ms RetryInfo, HTTP 429): a
    /// receiver with a capacity, for the adaptive concurrency.
    pub max_concurrent: Option<usize>,
}

/// The receiver's TLS identity (tests make one with rcgen).
#[derive(Debug, Clone)]
pub struct SinkTls {
    /// The certificate chain, PEM.
    pub cert_pem: String,
    /// The private key, PEM.
    pub key_pem: String,
    /// Require client certificates signed by this CA (PEM): mutual TLS.
    pub client_ca_pem: Option<String>,
}

impl Default for SinkOptions {
    fn default() -> Self {
        SinkOptions {
            grpc_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            http_addr: None,
            latency: Duration::ZERO,
            max_concurrent: None,
            verify: Verify::Full,
            keep_requests: false,
            tls: None,
        }
    }
}

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

/// What the sink has counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct SinkCounts {
    /// Spans in requests that were accepted (less any partial rejections).
    pub spans: u64,
    /// Log records accepted (less partial rejections).
    pub logs: u64,
    /// Metric data points accepted (less partial rejections).
    pub metric_points: u64,
    /// Requests accepted.
    pub requests: u64,
    /// Request bytes as received (compressed, framed).
    pub bytes_wire: u64,
    /// Message bytes after decompression.
    pub bytes_raw: u64,
    /// Requests refused because they did not decode (or an unknown encoding).
    pub errors: u64,
    /// Requests answered with an injected fault.
    pub injected: u64,
    /// Connections accepted.
    pub connections: u64,
    /// The largest request body received, in bytes on the wire.
    pub max_request_bytes: u64,
    /// Requests refused because `max_concurrent` were being served.
    pub throttled: u64,
}

#[derive(Default)]
struct Counters {
    spans: AtomicU64,
    logs: AtomicU64,
    metric_points: AtomicU64,
    requests: AtomicU64,
    bytes_wire: AtomicU64,
    bytes_raw: AtomicU64,
    errors: AtomicU64,
    injected: AtomicU64,
    connections: AtomicU64,
    max_request: AtomicU64,
    sampled: AtomicU64,
    throttled: AtomicU64,
    /// Requests being processed now.
    active: AtomicU64,
}

struct Shared {
    opts: SinkOptions,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    counters: Counters,
    faults: Mutex<VecDeque<Fault>>,
    kept: Mutex<Vec<ExportTraceServiceRequest>>,
    kept_logs: Mutex<Vec<ExportLogsServiceRequest>>,
    kept_metrics: Mutex<Vec<ExportMetricsServiceRequest>>,
    last_headers: Mutex<Option<http::HeaderMap>>,
}

/// A running embedded receiver. Dropping it stops it.
pub struct Sink {
    addr: SocketAddr,
    http_addr: Option<SocketAddr>,
    shared: Arc<Shared>,
    stop: Option<tokio::sync::watch::Sender<bool>>,
    thread: Option<JoinHandle<()>>,
}

impl Sink {
    /// Starts the receiver on its own thread and returns once it listens.
    pub fn start(opts: SinkOptions) -> std::io::Result<Sink> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let listener = runtime.block_on(tokio::net::TcpListener::bind(opts.grpc_addr))?;
        let addr = listener.local_addr()?;
        let http_listener = match opts.http_addr {
            Some(a) => Some(runtime.block_on(tokio::net::TcpListener::bind(a))?),
            None => None,
        };
        let http_addr = match &http_listener {
            Some(l) => Some(l.local_addr()?),
            None => None,
        };
        let acceptor = match &opts.tls {
            Some(t) => Some(tokio_rustls::TlsAcceptor::from(crate::tls::server_config(
                &t.cert_pem,
                &t.key_pem,
                t.client_ca_pem.as_deref(),
            )?)),
            None => None,
        };
        let shared = Arc::new(Shared {
            acceptor,
            opts,
            counters: Counters::default(),
            faults: Mutex::new(VecDeque::new()),
            kept: Mutex::new(Vec::new()),
            kept_logs: Mutex::new(Vec::new()),
            kept_metrics: Mutex::new(Vec::new()),
            last_headers: Mutex::new(None),
        });
        let (tx, rx) = tokio::sync::watch::channel(false);
        let s2 = shared.clone();
        let thread = std::thread::Builder::new()
            .name("otlpflow-sink".into())
            .spawn(move || {
                let local = tokio::task::LocalSet::new();
                local.block_on(&runtime, async move {
                    if let Some(l) = http_listener {
                        tokio::task::spawn_local(accept_loop(
                            l,
                            s2.clone(),
                            rx.clone(),
                            http_connection,
                        ));
                    }
                    accept_loop(listener, s2, rx, grpc_connection).await;
                });
            })?;
        Ok(Sink {
            addr,
            http_addr,
            shared,
            stop: Some(tx),
            thread: Some(thread),
        })
    }

    /// The OTLP/gRPC address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn scheme(&self) -> &'static str {
        if self.shared.acceptor.is_some() {
            "https"
        } else {
            "http"
        }
    }

    /// The `http://` (or `https://`) endpoint of OTLP/gRPC.
    pub fn endpoint(&self) -> String {
        format!("{}://{}", self.scheme(), self.addr)
    }

    /// The base endpoint of OTLP/HTTP, if it was started.
    pub fn http_endpoint(&self) -> Option<String> {
        self.http_addr.map(|a| format!("{}://{a}", self.scheme()))
    }

    /// The counts so far.
    pub fn counts(&self) -> SinkCounts {
        let c = &self.shared.counters;
        SinkCounts {
            spans: c.spans.load(Relaxed),
            logs: c.logs.load(Relaxed),
            metric_points: c.metric_points.load(Relaxed),
            requests: c.requests.load(Relaxed),
            bytes_wire: c.bytes_wire.load(Relaxed),
            bytes_raw: c.bytes_raw.load(Relaxed),
            errors: c.errors.load(Relaxed),
            injected: c.injected.load(Relaxed),
            connections: c.connections.load(Relaxed),
            max_request_bytes: c.max_request.load(Relaxed),
            throttled: c.throttled.load(Relaxed),
        }
    }

    /// Answers the next `times` requests with `fault`.
    pub fn inject(&self, fault: Fault, times: usize) {
        let mut q = self.shared.faults.lock();
        q.extend(std::iter::repeat_n(fault, times));
    }

    /// Answers the next `n` requests with gRPC status `code`.
    pub fn fail_next(&self, n: u64, code: u32) {
        self.inject(
            Fault::GrpcStatus {
                code,
                retry_info: None,
            },
            n as usize,
        );
    }

    /// The headers of the last request received (with `keep_requests`).
    pub fn last_headers(&self) -> Option<http::HeaderMap> {
        self.shared.last_headers.lock().clone()
    }

    /// Takes the requests kept so far (with `keep_requests`).
    pub fn take_requests(&self) -> Vec<ExportTraceServiceRequest> {
        std::mem::take(&mut *self.shared.kept.lock())
    }

    /// Takes the logs requests kept so far (with `keep_requests`).
    pub fn take_log_requests(&self) -> Vec<ExportLogsServiceRequest> {
        std::mem::take(&mut *self.shared.kept_logs.lock())
    }

    /// Takes the metrics requests kept so far (with `keep_requests`).
    pub fn take_metric_requests(&self) -> Vec<ExportMetricsServiceRequest> {
        std::mem::take(&mut *self.shared.kept_metrics.lock())
    }

    /// Stops the receiver and returns its final counts.
    pub fn stop(mut self) -> SinkCounts {
        self.shutdown();
        self.counts()
    }

    fn shutdown(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(true);
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The result of checking one request.
enum Outcome {
    /// Accepted: respond OK, with a partial success if `rejected > 0`.
    Accept { rejected: u64, message: String },
    /// Refused with a fault or an error.
    Refuse(Refusal),
}

enum Refusal {
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
    fn bad(shared: &Shared, message: String) -> Refusal {
        shared.counters.errors.fetch_add(1, Relaxed);
        Refusal::Grpc {
            code: 3,
            message,
            retry_info: None,
        }
    }
}

/// Checks and counts one OTLP message (`payload` as received, with its
/// encoding), after applying any injected fault. Shared by both protocols.
async fn process(
    shared: &Shared,
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

fn response_message(rejected: u64, message: String) -> Vec<u8> {
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

fn status_details(code: u32, message: &str, retry_info: Option<Duration>) -> Option<String> {
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

// ---------------------------------------------------------------- OTLP/gRPC

/// Accepts connections until stopped, handing each (after the TLS
/// handshake, if any) to `serve` on its own task.
async fn accept_loop<F, Fut>(
    listener: tokio::net::TcpListener,
    shared: Arc<Shared>,
    mut stop: tokio::sync::watch::Receiver<bool>,
    serve: F,
) where
    F: Fn(Box<dyn crate::tls::IoStream>, Arc<Shared>) -> Fut + Copy + 'static,
    Fut: std::future::Future<Output = ()> + 'static,
{
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            accepted = listener.accept() => {
                let Ok((tcp, _)) = accepted else { continue };
                let _ = tcp.set_nodelay(true);
                shared.counters.connections.fetch_add(1, Relaxed);
                let shared = shared.clone();
                tokio::task::spawn_local(async move {
                    if let Some(io) = accept_io(tcp, &shared).await {
                        serve(io, shared).await;
                    }
                });
            }
        }
    }
}

/// The accepted connection, after the TLS handshake when serving TLS.
async fn accept_io(
    tcp: tokio::net::TcpStream,
    shared: &Shared,
) -> Option<Box<dyn crate::tls::IoStream>> {
    match &shared.acceptor {
        None => Some(Box::new(tcp)),
        Some(a) => match a.accept(tcp).await {
            Ok(s) => Some(Box::new(s)),
            Err(_) => None,
        },
    }
}

async fn grpc_connection(tcp: Box<dyn crate::tls::IoStream>, shared: Arc<Shared>) {
    let handshake = h2::server::Builder::new()
        .initial_window_size(8 << 20)
        .initial_connection_window_size(32 << 20)
        .max_frame_size(1 << 20)
        .max_concurrent_streams(256)
        .handshake::<_, Bytes>(tcp)
        .await;
    let Ok(mut conn) = handshake else { return };
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

async fn grpc_stream(
    req: http::Request<h2::RecvStream>,
    mut respond: h2::server::SendResponse<Bytes>,
    shared: Arc<Shared>,
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
        None | Some("identity") => Ok(Compression::None),
        Some("gzip") => Ok(Compression::Gzip),
        Some("zstd") => Ok(Compression::Zstd),
        Some(other) => Err(format!("grpc-encoding {other} is not supported")),
    };
    let mut data = BytesMut::new();
    while let Some(chunk) = body.data().await {
        let Ok(chunk) = chunk else { return };
        let _ = body.flow_control().release_capacity(chunk.len());
        data.extend_from_slice(&chunk);
    }
    let outcome = match (refusal, encoding) {
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
            if data.len() < 5 {
                Outcome::Refuse(Refusal::bad(&shared, "truncated gRPC frame".into()))
            } else {
                let compressed = data[0] == 1;
                let len = u32::from_be_bytes([data[1], data[2], data[3], data[4]]) as usize;
                if data.len() != 5 + len {
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
                    let (o, ga) =
                        process(&shared, signal, &parts.headers, enc, &data[5..], data.len()).await;
                    if ga {
                        goaway.notify_one();
                    }
                    o
                }
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
}

// ---------------------------------------------------------------- OTLP/HTTP

async fn http_connection(io: Box<dyn crate::tls::IoStream>, shared: Arc<Shared>) {
    let service = hyper::service::service_fn(move |req| {
        let shared = shared.clone();
        async move { http_request(req, &shared).await }
    });
    let mut builder =
        hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
    builder
        .http2()
        .initial_stream_window_size(8 << 20)
        .initial_connection_window_size(32 << 20)
        .max_frame_size(1 << 20);
    let _ = builder
        .serve_connection(hyper_util::rt::TokioIo::new(io), service)
        .await;
}

type HttpResponse = http::Response<Full<Bytes>>;

fn http_response(status: u16, body: Vec<u8>, retry_after: Option<String>) -> HttpResponse {
    let mut b = http::Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, "application/x-protobuf");
    if let Some(ra) = retry_after {
        b = b.header(http::header::RETRY_AFTER, ra);
    }
    b.body(Full::new(Bytes::from(body)))
        .unwrap_or_else(|_| http::Response::new(Full::new(Bytes::new())))
}

fn http_error(
    status: u16,
    code: i32,
    message: String,
    retry_after: Option<String>,
) -> HttpResponse {
    let body = RpcStatus {
        code,
        message,
        details: vec![],
    }
    .encode_to_vec();
    http_response(status, body, retry_after)
}

async fn http_request(
    req: http::Request<hyper::body::Incoming>,
    shared: &Shared,
) -> Result<HttpResponse, std::io::Error> {
    let (parts, body) = req.into_parts();
    if parts.version == http::Version::HTTP_11 && parts.uri.scheme().is_some() {
        // An origin server is asked in origin-form (RFC 9112 §3.2.1); many
        // (Python's http.server among them) refuse the absolute form.
        shared.counters.errors.fetch_add(1, Relaxed);
        return Ok(http_error(
            400,
            3,
            "absolute-form request target sent to an origin server".into(),
            None,
        ));
    }
    let Some(signal) = http_signal(parts.uri.path()) else {
        return Ok(http_error(
            404,
            12,
            format!("no such path {}", parts.uri.path()),
            None,
        ));
    };
    if parts.method != http::Method::POST {
        return Ok(http_error(405, 12, "use POST".into(), None));
    }
    let ctype = parts
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !ctype.starts_with("application/x-protobuf") {
        shared.counters.errors.fetch_add(1, Relaxed);
        return Ok(http_error(
            415,
            3,
            format!("unsupported content-type {ctype:?}"),
            None,
        ));
    }
    let encoding = match parts
        .headers
        .get(http::header::CONTENT_ENCODING)
        .map(|v| v.to_str().unwrap_or("?"))
    {
        None | Some("identity") => Compression::None,
        Some("gzip") => Compression::Gzip,
        Some("zstd") => Compression::Zstd,
        Some(other) => {
            shared.counters.errors.fetch_add(1, Relaxed);
            return Ok(http_error(
                415,
                3,
                format!("unsupported content-encoding {other}"),
                None,
            ));
        }
    };
    let data = match http_body_util::Limited::new(body, MAX_MESSAGE)
        .collect()
        .await
    {
        Ok(c) => c.to_bytes(),
        Err(e) => return Ok(http_error(400, 3, format!("reading body: {e}"), None)),
    };
    let (outcome, _) = process(shared, signal, &parts.headers, encoding, &data, data.len()).await;
    Ok(match outcome {
        Outcome::Accept { rejected, message } => {
            http_response(200, response_message(rejected, message), None)
        }
        Outcome::Refuse(Refusal::Reset) => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "injected reset",
            ))
        }
        Outcome::Refuse(Refusal::Http {
            status,
            message,
            retry_after,
        }) => http_error(status, 14, message, retry_after),
        Outcome::Refuse(Refusal::Grpc { code, message, .. }) => {
            let status = match code {
                3 => 400,
                // RESOURCE_EXHAUSTED is HTTP's Too Many Requests.
                8 => 429,
                _ => 500,
            };
            http_error(status, code as i32, message, None)
        }
    })
}

/// Decodes a request with the opentelemetry-proto types, checks it, and
/// returns its number of records (spans, log records, data points).
fn decode_full(message: &[u8], signal: Signal, shared: &Shared) -> Result<u64, String> {
    match signal {
        Signal::Traces => decode_traces(message, shared),
        Signal::Logs => decode_logs(message, shared),
        Signal::Metrics => decode_metrics(message, shared),
    }
}

fn decode_logs(message: &[u8], shared: &Shared) -> Result<u64, String> {
    let req = ExportLogsServiceRequest::decode(message)
        .map_err(|e| format!("ExportLogsServiceRequest: {e}"))?;
    let mut n = 0u64;
    for rl in &req.resource_logs {
        for sl in &rl.scope_logs {
            for l in &sl.log_records {
                if !matches!(l.trace_id.len(), 0 | 16) || !matches!(l.span_id.len(), 0 | 8) {
                    return Err("log record with invalid trace or span id".into());
                }
                if !(0..=24).contains(&l.severity_number) {
                    return Err(format!("severity number {}", l.severity_number));
                }
            }
            n += sl.log_records.len() as u64;
        }
    }
    if shared.opts.keep_requests {
        shared.kept_logs.lock().push(req);
    }
    Ok(n)
}

fn decode_metrics(message: &[u8], shared: &Shared) -> Result<u64, String> {
    use opentelemetry_proto::tonic::metrics::v1::metric::Data;
    let req = ExportMetricsServiceRequest::decode(message)
        .map_err(|e| format!("ExportMetricsServiceRequest: {e}"))?;
    let mut n = 0u64;
    for rm in &req.resource_metrics {
        for sm in &rm.scope_metrics {
            let mut names = std::collections::HashSet::new();
            for m in &sm.metrics {
                if m.name.is_empty() {
                    return Err("metric without a name".into());
                }
                // A scope carries each metric once, with all its points.
                if !names.insert((
                    &m.name,
                    &m.unit,
                    &m.description,
                    m.data.as_ref().map(std::mem::discriminant),
                )) {
                    return Err(format!("metric {} appears twice in one scope", m.name));
                }
                n += match &m.data {
                    Some(Data::Gauge(g)) => g.data_points.len(),
                    Some(Data::Sum(s)) => s.data_points.len(),
                    Some(Data::Histogram(h)) => {
                        for p in &h.data_points {
                            if !p.explicit_bounds.is_empty()
                                && p.bucket_counts.len() != p.explicit_bounds.len() + 1
                            {
                                return Err(format!(
                                    "histogram {}: buckets and bounds disagree",
                                    m.name
                                ));
                            }
                            if p.bucket_counts.iter().sum::<u64>() != p.count {
                                return Err(format!(
                                    "histogram {}: count is not the buckets' sum",
                                    m.name
                                ));
                            }
                        }
                        h.data_points.len()
                    }
                    Some(Data::ExponentialHistogram(h)) => {
                        for p in &h.data_points {
                            let buckets: u64 = [&p.positive, &p.negative]
                                .iter()
                                .filter_map(|b| b.as_ref())
                                .flat_map(|b| b.bucket_counts.iter())
                                .sum();
                            if buckets + p.zero_count != p.count {
                                return Err(format!("exponential histogram {}: count is not zero_count plus the buckets", m.name));
                            }
                        }
                        h.data_points.len()
                    }
                    Some(Data::Summary(s)) => s.data_points.len(),
                    None => return Err(format!("metric {} has no data", m.name)),
                } as u64;
            }
        }
    }
    if shared.opts.keep_requests {
        shared.kept_metrics.lock().push(req);
    }
    Ok(n)
}

fn decode_traces(message: &[u8], shared: &Shared) -> Result<u64, String> {
    let req = ExportTraceServiceRequest::decode(message)
        .map_err(|e| format!("ExportTraceServiceRequest: {e}"))?;
    let mut spans = 0u64;
    for rs in &req.resource_spans {
        for ss in &rs.scope_spans {
            for s in &ss.spans {
                if s.trace_id.len() != 16 || s.span_id.len() != 8 {
                    return Err("span with invalid trace or span id".into());
                }
            }
            spans += ss.spans.len() as u64;
        }
    }
    if shared.opts.keep_requests {
        shared.kept.lock().push(req);
    }
    Ok(spans)
}
