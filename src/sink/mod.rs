//! The embedded OTLP receiver: an `h2` server for OTLP/gRPC on loopback that
//! decompresses gzip and zstd, checks every request and counts spans,
//! requests and bytes. Tests, benchmarks and the CLI's `demo` and `sink`
//! start it; it runs on its own thread with its own runtime.
//!
//! Checking: [`Verify::Full`] decodes every request with the
//! `opentelemetry-proto` types (tests); [`Verify::Walk`] walks the wire format
//! without allocating and fully decodes one request in `sample_every`
//! (benchmarks and the demo). A request that does not decode is an error in
//! the counts and in its gRPC status, never a crash.

pub mod walk;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::thread::JoinHandle;

use bytes::{Bytes, BytesMut};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use parking_lot::Mutex;
use prost::Message;

use crate::config::Compression;
use crate::export::compress::decompress;

/// gRPC path of the OTLP trace service.
pub const TRACE_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";
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
    /// Address to listen on; port 0 picks a free one.
    pub grpc_addr: SocketAddr,
    /// How requests are checked.
    pub verify: Verify,
    /// Keep every decoded request (tests only: memory grows with traffic).
    pub keep_requests: bool,
}

impl Default for SinkOptions {
    fn default() -> Self {
        SinkOptions {
            grpc_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            verify: Verify::Full,
            keep_requests: false,
        }
    }
}

/// What the sink has counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct SinkCounts {
    /// Spans in requests that were accepted.
    pub spans: u64,
    /// Requests accepted.
    pub requests: u64,
    /// Request bytes as received (compressed, framed).
    pub bytes_wire: u64,
    /// Message bytes after decompression.
    pub bytes_raw: u64,
    /// Requests refused because they did not decode (or an unknown encoding).
    pub errors: u64,
    /// Requests answered with an injected failure.
    pub injected: u64,
    /// Connections accepted.
    pub connections: u64,
}

#[derive(Default)]
struct Counters {
    spans: AtomicU64,
    requests: AtomicU64,
    bytes_wire: AtomicU64,
    bytes_raw: AtomicU64,
    errors: AtomicU64,
    injected: AtomicU64,
    connections: AtomicU64,
    sampled: AtomicU64,
    /// Injected failures still to answer, and their gRPC code.
    fail_next: AtomicU64,
    fail_code: AtomicU32,
}

struct Shared {
    opts: SinkOptions,
    counters: Counters,
    kept: Mutex<Vec<ExportTraceServiceRequest>>,
    last_headers: Mutex<Option<http::HeaderMap>>,
}

/// A running embedded receiver. Dropping it stops it.
pub struct Sink {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
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
        let shared = Arc::new(Shared {
            opts,
            counters: Counters::default(),
            kept: Mutex::new(Vec::new()),
            last_headers: Mutex::new(None),
        });
        let (tx, rx) = tokio::sync::oneshot::channel();
        let s2 = shared.clone();
        let thread = std::thread::Builder::new()
            .name("otlpflow-sink".into())
            .spawn(move || {
                let local = tokio::task::LocalSet::new();
                local.block_on(&runtime, serve(listener, s2, rx));
            })?;
        Ok(Sink {
            addr,
            shared,
            stop: Some(tx),
            thread: Some(thread),
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The `http://` endpoint to give a pipeline.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The counts so far.
    pub fn counts(&self) -> SinkCounts {
        let c = &self.shared.counters;
        SinkCounts {
            spans: c.spans.load(Relaxed),
            requests: c.requests.load(Relaxed),
            bytes_wire: c.bytes_wire.load(Relaxed),
            bytes_raw: c.bytes_raw.load(Relaxed),
            errors: c.errors.load(Relaxed),
            injected: c.injected.load(Relaxed),
            connections: c.connections.load(Relaxed),
        }
    }

    /// Answers the next `n` requests with gRPC status `code` instead of
    /// accepting them (fault injection for tests).
    pub fn fail_next(&self, n: u64, code: u32) {
        self.shared.counters.fail_code.store(code, Relaxed);
        self.shared.counters.fail_next.store(n, Relaxed);
    }

    /// The headers of the last request received (tests check what clients
    /// send).
    pub fn last_headers(&self) -> Option<http::HeaderMap> {
        self.shared.last_headers.lock().clone()
    }

    /// Takes the requests kept so far (with `keep_requests`).
    pub fn take_requests(&self) -> Vec<ExportTraceServiceRequest> {
        std::mem::take(&mut *self.shared.kept.lock())
    }

    /// Stops the receiver and returns its final counts.
    pub fn stop(mut self) -> SinkCounts {
        self.shutdown();
        self.counts()
    }

    fn shutdown(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
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

async fn serve(
    listener: tokio::net::TcpListener,
    shared: Arc<Shared>,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) {
    loop {
        tokio::select! {
            _ = &mut stop => return,
            accepted = listener.accept() => {
                let Ok((tcp, _)) = accepted else { continue };
                let _ = tcp.set_nodelay(true);
                shared.counters.connections.fetch_add(1, Relaxed);
                tokio::task::spawn_local(connection(tcp, shared.clone()));
            }
        }
    }
}

async fn connection(tcp: tokio::net::TcpStream, shared: Arc<Shared>) {
    let handshake = h2::server::Builder::new()
        .initial_window_size(8 << 20)
        .initial_connection_window_size(32 << 20)
        .max_frame_size(1 << 20)
        .max_concurrent_streams(256)
        .handshake::<_, Bytes>(tcp)
        .await;
    let Ok(mut conn) = handshake else { return };
    while let Some(next) = conn.accept().await {
        let Ok((req, respond)) = next else { return };
        tokio::task::spawn_local(stream(req, respond, shared.clone()));
    }
}

/// A gRPC status to answer with.
struct Status {
    code: u32,
    message: String,
}

impl Status {
    fn new(code: u32, message: impl Into<String>) -> Status {
        Status {
            code,
            message: message.into(),
        }
    }
}

async fn stream(
    req: http::Request<h2::RecvStream>,
    mut respond: h2::server::SendResponse<Bytes>,
    shared: Arc<Shared>,
) {
    let result = handle(req, &shared).await;
    let ok = result.is_ok();
    let mut headers = http::Response::builder()
        .status(200)
        .header("content-type", "application/grpc");
    match result {
        Ok(()) => {
            let Ok(resp) = headers.body(()) else { return };
            let Ok(mut send) = respond.send_response(resp, false) else {
                return;
            };
            // An empty ExportTraceServiceResponse, framed.
            let _ = send.send_data(Bytes::from_static(&[0, 0, 0, 0, 0]), false);
            let mut trailers = http::HeaderMap::new();
            trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
            let _ = send.send_trailers(trailers);
        }
        Err(status) => {
            // Trailers-only response.
            headers = headers.header("grpc-status", status.code.to_string());
            let msg = status
                .message
                .replace(|c: char| !c.is_ascii_graphic() && c != ' ', "?");
            if let Ok(v) = http::HeaderValue::from_str(&msg) {
                headers = headers.header("grpc-message", v);
            }
            if let Ok(resp) = headers.body(()) {
                let _ = respond.send_response(resp, true);
            }
        }
    }
    let _ = ok;
}

async fn handle(req: http::Request<h2::RecvStream>, shared: &Shared) -> Result<(), Status> {
    let c = &shared.counters;
    let (parts, mut body) = req.into_parts();
    if shared.opts.keep_requests {
        *shared.last_headers.lock() = Some(parts.headers.clone());
    }
    if parts.uri.path() != TRACE_PATH {
        return Err(Status::new(
            12,
            format!("unknown method {}", parts.uri.path()),
        ));
    }
    let encoding = match parts
        .headers
        .get("grpc-encoding")
        .map(|v| v.to_str().unwrap_or("?"))
    {
        None | Some("identity") => Compression::None,
        Some("gzip") => Compression::Gzip,
        Some("zstd") => Compression::Zstd,
        Some(other) => {
            c.errors.fetch_add(1, Relaxed);
            return Err(Status::new(
                12,
                format!("grpc-encoding {other} is not supported"),
            ));
        }
    };
    let mut data = BytesMut::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.map_err(|e| Status::new(1, format!("reading request: {e}")))?;
        let _ = body.flow_control().release_capacity(chunk.len());
        data.extend_from_slice(&chunk);
    }
    let wire = data.len() as u64;
    if c.fail_next.load(Relaxed) > 0 {
        let left = c.fail_next.fetch_sub(1, Relaxed);
        if left > 0 {
            c.injected.fetch_add(1, Relaxed);
            return Err(Status::new(c.fail_code.load(Relaxed), "injected failure"));
        }
        c.fail_next.store(0, Relaxed);
    }
    let bad = |m: String| {
        c.errors.fetch_add(1, Relaxed);
        Status::new(3, m)
    };
    if data.len() < 5 {
        return Err(bad("truncated gRPC frame".into()));
    }
    let compressed = data[0] == 1;
    let len = u32::from_be_bytes([data[1], data[2], data[3], data[4]]) as usize;
    if data.len() != 5 + len {
        return Err(bad(format!(
            "gRPC frame says {len} bytes, body has {}",
            data.len() - 5
        )));
    }
    let payload = &data[5..];
    let decompressed;
    let message: &[u8] = if compressed {
        if encoding == Compression::None {
            return Err(bad("compressed frame without grpc-encoding".into()));
        }
        decompressed = decompress(encoding, payload, MAX_MESSAGE)
            .map_err(|e| bad(format!("decompressing: {e}")))?;
        &decompressed
    } else {
        payload
    };
    let spans = match shared.opts.verify {
        Verify::Full => decode_full(message, shared).map_err(bad)?,
        Verify::Walk { sample_every } => {
            let n =
                walk::count_spans(message).map_err(|e| bad(format!("malformed request: {e}")))?;
            let k = c.sampled.fetch_add(1, Relaxed);
            if k % sample_every.max(1) == 0 {
                let full = decode_full(message, shared).map_err(bad)?;
                if full != n {
                    return Err(bad(format!("walk counted {n} spans, prost decoded {full}")));
                }
            }
            n
        }
    };
    c.spans.fetch_add(spans, Relaxed);
    c.requests.fetch_add(1, Relaxed);
    c.bytes_wire.fetch_add(wire, Relaxed);
    c.bytes_raw.fetch_add(message.len() as u64, Relaxed);
    Ok(())
}

fn decode_full(message: &[u8], shared: &Shared) -> Result<u64, String> {
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
