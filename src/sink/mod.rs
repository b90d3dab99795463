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

mod fault;
mod grpc;
mod held;
mod http;
mod idle;
mod request;
mod verify;
pub mod walk;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use parking_lot::Mutex;

pub use fault::Fault;
pub use request::{check, Checking, Invalid, Limits};
pub use verify::Verify;

/// gRPC path of the OTLP trace service.
pub const TRACE_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";
/// OTLP/HTTP path of traces.
pub const HTTP_TRACE_PATH: &str = "/v1/traces";

/// The largest message the sink accepts, on the wire and decompressed (as
/// the exporter's default `max_request_bytes`).
pub(crate) const MAX_MESSAGE: usize = 64 << 20;
/// The most a full decode of one request may allocate (see
/// `walk::decode_cost`): with `MAX_MESSAGE`, what bounds the receiver's
/// memory per request.
pub(crate) const MAX_DECODED: u64 = 256 << 20;
/// The largest request head (HTTP/1.1) or header list (HTTP/2) accepted.
pub(crate) const MAX_HEADER_BYTES: usize = 16 << 10;

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
    /// How long a client may take to finish a TLS handshake, an HTTP/2
    /// preface or an HTTP/1.1 request head before it is dropped (slow or
    /// half-open clients cannot hold connections forever).
    pub header_timeout: Duration,
    /// Connections served at once; more are closed on accept.
    pub max_connections: usize,
    /// A connection that moves no bytes for this long (up to twice it) is
    /// closed, so idle clients cannot hold `max_connections` for ever.
    pub idle_timeout: Duration,
    /// Request bytes held at once while their bodies arrive, over all
    /// connections and streams; a body that would pass it is refused as
    /// throttled (gRPC RESOURCE_EXHAUSTED with a RetryInfo, HTTP 429).
    pub max_buffered_bytes: usize,
    /// How long a request body may go without data before it is dropped
    /// (a stream that stalls mid-body cannot hold its bytes forever).
    pub body_timeout: Duration,
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
            header_timeout: Duration::from_secs(10),
            max_connections: 1024,
            idle_timeout: Duration::from_secs(60),
            max_buffered_bytes: 256 << 20,
            body_timeout: Duration::from_secs(30),
        }
    }
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
    /// Requests refused because `max_concurrent` were being served, or
    /// because the receiver held `max_buffered_bytes` of request bodies.
    pub throttled: u64,
    /// Connections closed after `idle_timeout` without a byte.
    pub idle_closed: u64,
}

/// The live counts, written by connection tasks.
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
    idle_closed: AtomicU64,
    /// Requests being processed now.
    active: AtomicU64,
    /// Connections open now.
    open: AtomicU64,
}

/// What the receiver's connection tasks share: options, TLS acceptor,
/// counts, injected faults and kept requests.
struct SinkState {
    opts: SinkOptions,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    counters: Counters,
    faults: Mutex<VecDeque<Fault>>,
    kept: Mutex<Vec<ExportTraceServiceRequest>>,
    kept_logs: Mutex<Vec<ExportLogsServiceRequest>>,
    kept_metrics: Mutex<Vec<ExportMetricsServiceRequest>>,
    last_headers: Mutex<Option<::http::HeaderMap>>,
    last_http_target: Mutex<Option<String>>,
    /// Request bytes held now (`held::Held`).
    buffered: std::sync::atomic::AtomicUsize,
}

/// A running embedded receiver. Dropping it stops it.
pub struct Sink {
    addr: SocketAddr,
    http_addr: Option<SocketAddr>,
    shared: Arc<SinkState>,
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
        let shared = Arc::new(SinkState {
            acceptor,
            opts,
            counters: Counters::default(),
            faults: Mutex::new(VecDeque::new()),
            kept: Mutex::new(Vec::new()),
            kept_logs: Mutex::new(Vec::new()),
            kept_metrics: Mutex::new(Vec::new()),
            last_headers: Mutex::new(None),
            last_http_target: Mutex::new(None),
            buffered: Default::default(),
        });
        let (tx, rx) = tokio::sync::watch::channel(false);
        let s2 = shared.clone();
        let thread = std::thread::Builder::new()
            .name("otlpflow-sink".into())
            .spawn(move || {
                crate::threads::mark_own();
                let local = tokio::task::LocalSet::new();
                local.block_on(&runtime, async move {
                    if let Some(l) = http_listener {
                        tokio::task::spawn_local(accept_loop(
                            l,
                            s2.clone(),
                            rx.clone(),
                            http::serve_connection,
                        ));
                    }
                    accept_loop(listener, s2, rx, grpc::serve_connection).await;
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
            idle_closed: c.idle_closed.load(Relaxed),
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
    pub fn last_headers(&self) -> Option<::http::HeaderMap> {
        self.shared.last_headers.lock().clone()
    }

    /// The path and query of the last OTLP/HTTP request (with
    /// `keep_requests`).
    pub fn last_http_target(&self) -> Option<String> {
        self.shared.last_http_target.lock().clone()
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

/// Accepts connections until stopped, handing each (after the TLS
/// handshake, if any) to `serve` on its own task.
async fn accept_loop<F, Fut>(
    listener: tokio::net::TcpListener,
    shared: Arc<SinkState>,
    mut stop: tokio::sync::watch::Receiver<bool>,
    serve: F,
) where
    F: Fn(Box<dyn crate::tls::IoStream>, Arc<SinkState>) -> Fut + Copy + 'static,
    Fut: std::future::Future<Output = ()> + 'static,
{
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            accepted = listener.accept() => {
                let Ok((tcp, _)) = accepted else { continue };
                let c = &shared.counters;
                if c.open.load(Relaxed) >= shared.opts.max_connections as u64 {
                    // Over the cap: closed at once, counted as an error.
                    c.errors.fetch_add(1, Relaxed);
                    continue;
                }
                let _ = tcp.set_nodelay(true);
                c.connections.fetch_add(1, Relaxed);
                c.open.fetch_add(1, Relaxed);
                let shared = shared.clone();
                tokio::task::spawn_local(async move {
                    if let Some(io) = accept_io(tcp, &shared).await {
                        let activity = Arc::new(AtomicU64::new(0));
                        let io = Box::new(idle::Counted::new(io, activity.clone()));
                        let idle = shared.opts.idle_timeout;
                        let closed = || {
                            shared.counters.idle_closed.fetch_add(1, Relaxed);
                        };
                        idle::serve_until_idle(serve(io, shared.clone()), &activity, idle, closed)
                            .await;
                    }
                    shared.counters.open.fetch_sub(1, Relaxed);
                });
            }
        }
    }
}

/// The accepted connection, after the TLS handshake when serving TLS.
async fn accept_io(
    tcp: tokio::net::TcpStream,
    shared: &SinkState,
) -> Option<Box<dyn crate::tls::IoStream>> {
    match &shared.acceptor {
        None => Some(Box::new(tcp)),
        // A client that stalls its handshake is dropped after the timeout.
        Some(a) => match tokio::time::timeout(shared.opts.header_timeout, a.accept(tcp)).await {
            Ok(Ok(s)) => Some(Box::new(s)),
            _ => None,
        },
    }
}
