//! One HTTP/2 client connection with several streams in flight, shared by
//! the OTLP/gRPC exporter and OTLP/HTTP over HTTP/2. Reconnects on the next
//! request after the connection breaks or the server sends GOAWAY (requests
//! refused by a GOAWAY fail with a transport error, which is retried).

use super::tls::Connector;
use super::{ExportError, MAX_RESPONSE};
use bytes::Bytes;
use h2::client::SendRequest;

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

pub(crate) struct H2Conn {
    connector: Connector,
    conn: tokio::sync::Mutex<Option<SendRequest<Bytes>>>,
}

impl H2Conn {
    pub fn new(connector: Connector) -> H2Conn {
        H2Conn {
            connector,
            conn: tokio::sync::Mutex::new(None),
        }
    }

    /// A handle on the connection, connecting first if there is none.
    async fn connection(&self) -> Result<SendRequest<Bytes>, ExportError> {
        let mut slot = self.conn.lock().await;
        if let Some(sr) = slot.as_ref() {
            return Ok(sr.clone());
        }
        let io = self.connector.connect().await?;
        let (sr, connection) = h2::client::Builder::new()
            .initial_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW)
            .max_frame_size(1 << 20)
            .handshake::<_, Bytes>(io)
            .await
            .map_err(|e| ExportError::Transport(format!("HTTP/2 handshake: {e}")))?;
        tokio::task::spawn_local(async move {
            let _ = connection.await;
        });
        *slot = Some(sr.clone());
        Ok(sr)
    }

    /// Sends `req` with `chunks` as its body and reads the whole response.
    /// A transport failure drops the connection, so the retry reconnects.
    pub async fn round_trip(
        &self,
        req: http::Request<()>,
        chunks: &[Bytes],
    ) -> Result<H2Response, ExportError> {
        let result = self.attempt(req, chunks).await;
        if let Err(ExportError::Transport(_) | ExportError::Tls(_)) = &result {
            *self.conn.lock().await = None;
        }
        result
    }

    async fn attempt(
        &self,
        req: http::Request<()>,
        chunks: &[Bytes],
    ) -> Result<H2Response, ExportError> {
        let sr = self.connection().await?;
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
        let response = response
            .await
            .map_err(|e| ExportError::Transport(format!("awaiting response: {e}")))?;
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
