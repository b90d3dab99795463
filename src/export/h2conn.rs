//! HTTP/2 client connections with several streams in flight, shared by the
//! OTLP/gRPC exporter and OTLP/HTTP over HTTP/2: a small pool of K
//! connections used in turn, each kept alive with PING (a connection whose
//! PING goes unanswered is dropped), closed after an idle timeout, and
//! re-established on the next request after it breaks or the server sends
//! GOAWAY (requests refused by a GOAWAY fail with a transport error, which
//! is retried on a new connection). The number of streams in flight on a
//! connection is bounded by the server's SETTINGS_MAX_CONCURRENT_STREAMS
//! through `SendRequest::ready`.

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use h2::client::SendRequest;

use super::connect::Connector;
use super::{ExportError, MAX_RESPONSE, MAX_RESPONSE_HEADERS};

/// HTTP/2 flow-control windows. h2's default of 64 KiB caps loopback
/// throughput near 1 GB/s; a batch is about 150 KB.
const STREAM_WINDOW: u32 = 8 << 20;
const CONNECTION_WINDOW: u32 = 32 << 20;

/// A whole HTTP/2 response.
pub(crate) struct H2Response {
    pub parts: http::response::Parts,
    pub body: Vec<u8>,
    pub trailers: Option<http::HeaderMap>,
}

/// Keepalive and idle settings of the pool.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PoolSettings {
    /// Connections per worker.
    pub connections: usize,
    /// Send a PING this often (zero: never).
    pub keepalive: Duration,
    /// Close a connection unused this long (zero: never).
    pub idle_timeout: Duration,
}

/// One pooled connection: its handle, and when a request last used it.
#[derive(Default)]
struct Slot {
    send: tokio::sync::Mutex<Option<SendRequest<Bytes>>>,
    last_used: Cell<Option<Instant>>,
    /// Bumped each time the slot gets a new connection, so that a keepalive
    /// task of an older connection never clears a newer one.
    generation: Cell<u64>,
}

pub(crate) struct H2Conn {
    connector: Connector,
    settings: PoolSettings,
    slots: Vec<Rc<Slot>>,
    next: Cell<usize>,
}

impl H2Conn {
    pub fn new(connector: Connector, settings: PoolSettings) -> H2Conn {
        H2Conn {
            connector,
            slots: (0..settings.connections.max(1))
                .map(|_| Rc::new(Slot::default()))
                .collect(),
            settings,
            next: Cell::new(0),
        }
    }

    /// The slot the next request uses (round robin).
    fn slot(&self) -> Rc<Slot> {
        let i = self.next.get();
        self.next.set((i + 1) % self.slots.len());
        self.slots[i].clone()
    }

    /// A handle on the slot's connection, connecting first if there is none.
    async fn connection(&self, slot: &Rc<Slot>) -> Result<SendRequest<Bytes>, ExportError> {
        let mut guard = slot.send.lock().await;
        if let Some(sr) = guard.as_ref() {
            return Ok(sr.clone());
        }
        let io = self.connector.connect().await?;
        let (sr, mut connection) = h2::client::Builder::new()
            .initial_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW)
            // Frames from the server are at most h2's default 16 KiB (a
            // response takes a few hundred bytes): with h2's limit of 5
            // CONTINUATION frames, a header block the server sends is
            // buffered to at most 96 KiB before it is decoded or refused
            // (h2 0.4's `calc_max_continuation_frames`; with the 1 MiB
            // frames this client used to allow, 6 MiB).
            .max_header_list_size(MAX_RESPONSE_HEADERS)
            // No server push (h2's client takes it by default, with no
            // limit on the streams a server reserves that way): OTLP has
            // no use for it, and a PUSH_PROMISE is then a protocol error.
            .enable_push(false)
            .handshake::<_, Bytes>(io)
            .await
            .map_err(|e| ExportError::Transport(format!("HTTP/2 handshake: {e}")))?;
        let ping = connection.ping_pong();
        tokio::task::spawn_local(async move {
            let _ = connection.await;
        });
        let generation = slot.generation.get() + 1;
        slot.generation.set(generation);
        slot.last_used.set(Some(Instant::now()));
        tokio::task::spawn_local(keepalive(
            Rc::downgrade(slot),
            generation,
            ping,
            self.settings,
        ));
        *guard = Some(sr.clone());
        Ok(sr)
    }

    /// Sends `req` with `chunks` as its body and reads the whole response.
    /// A transport failure drops the connection, so the retry reconnects.
    pub async fn round_trip(
        &self,
        req: http::Request<()>,
        chunks: &[Bytes],
    ) -> Result<H2Response, ExportError> {
        let slot = self.slot();
        let result = self.attempt(&slot, req, chunks).await;
        slot.last_used.set(Some(Instant::now()));
        if let Err(ExportError::Transport(_) | ExportError::Tls(_)) = &result {
            *slot.send.lock().await = None;
        }
        result
    }

    async fn attempt(
        &self,
        slot: &Rc<Slot>,
        req: http::Request<()>,
        chunks: &[Bytes],
    ) -> Result<H2Response, ExportError> {
        let sr = self.connection(slot).await?;
        let mut sr = sr
            .ready()
            .await
            .map_err(|e| ExportError::Transport(format!("connection not ready: {e}")))?;
        let (response, mut stream) = sr
            .send_request(req, chunks.is_empty())
            .map_err(|e| ExportError::Transport(format!("send request: {e}")))?;
        let last = chunks.len().saturating_sub(1);
        for (i, c) in chunks.iter().enumerate() {
            stream
                .send_data(c.clone(), i == last)
                .map_err(|e| ExportError::Transport(format!("send data: {e}")))?;
        }
        let response = response.await.map_err(response_error)?;
        let (parts, mut body) = response.into_parts();
        let mut data = Vec::new();
        while let Some(chunk) = body.data().await {
            let chunk =
                chunk.map_err(|e| ExportError::Transport(format!("reading response: {e}")))?;
            let _ = body.flow_control().release_capacity(chunk.len());
            if data.len() + chunk.len() > MAX_RESPONSE {
                return Err(ExportError::Protocol(format!(
                    "response larger than {MAX_RESPONSE} bytes"
                )));
            }
            data.extend_from_slice(&chunk);
        }
        let trailers = body
            .trailers()
            .await
            .map_err(|e| ExportError::Transport(format!("reading trailers: {e}")))?;
        Ok(H2Response {
            parts,
            body: data,
            trailers,
        })
    }
}

/// What an error awaiting a response means. h2 resets a stream itself with
/// PROTOCOL_ERROR when the response breaks HTTP/2's rules or its header
/// list passes `MAX_RESPONSE_HEADERS`: the receiver would answer the same
/// way again, so the error is permanent (gRPC clients report it as
/// INTERNAL, which OTLP does not retry). Anything else is the transport's.
fn response_error(e: h2::Error) -> ExportError {
    if e.is_reset() && e.is_library() && e.reason() == Some(h2::Reason::PROTOCOL_ERROR) {
        ExportError::Protocol(format!(
            "HTTP/2 response refused (malformed, or headers over {MAX_RESPONSE_HEADERS} bytes): {e}"
        ))
    } else {
        ExportError::Transport(format!("awaiting response: {e}"))
    }
}

/// Pings a connection every `keepalive`, and closes it (drops the slot's
/// handle) when a PING goes unanswered or it sat idle past `idle_timeout`.
/// Ends with the slot, or when the slot moves on to a newer connection.
async fn keepalive(
    slot: std::rc::Weak<Slot>,
    generation: u64,
    ping: Option<h2::PingPong>,
    settings: PoolSettings,
) {
    let tick = match (
        settings.keepalive.is_zero(),
        settings.idle_timeout.is_zero(),
    ) {
        (true, true) => return,
        (false, true) => settings.keepalive,
        (true, false) => settings.idle_timeout / 4,
        (false, false) => settings.keepalive.min(settings.idle_timeout / 4),
    }
    .max(Duration::from_millis(10));
    let mut ping = ping;
    let mut last_ping = Instant::now();
    loop {
        tokio::time::sleep(tick).await;
        let Some(s) = slot.upgrade() else { return };
        if s.generation.get() != generation {
            return;
        }
        let idle = s.last_used.get().map_or(Duration::ZERO, |t| t.elapsed());
        let mut close = !settings.idle_timeout.is_zero() && idle >= settings.idle_timeout;
        if !close && !settings.keepalive.is_zero() && last_ping.elapsed() >= settings.keepalive {
            last_ping = Instant::now();
            if let Some(p) = ping.as_mut() {
                let answered = tokio::time::timeout(
                    settings.keepalive.max(Duration::from_secs(1)),
                    p.ping(h2::Ping::opaque()),
                )
                .await;
                close = !matches!(answered, Ok(Ok(_)));
            }
        }
        if close {
            if s.generation.get() == generation {
                *s.send.lock().await = None;
            }
            return;
        }
    }
}
