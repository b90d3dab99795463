//! Connections that move no bytes for `SinkOptions::idle_timeout` are
//! closed. The receiver serves at most `max_connections` at once and closes
//! any more at accept, so without this a client that opened that many
//! connections, sent an HTTP/2 preface on each and then nothing, kept every
//! other client out for as long as it liked (1,024 such connections:
//! `otlpflow gen` then exported 0 of 1,000 spans). Activity is counted by
//! the stream itself, a relaxed add per read or write that moved bytes, and
//! looked at once per timeout: a connection is closed between one and two
//! timeouts after its last byte.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::tls::IoStream;

/// A stream that counts the reads and writes that moved bytes.
pub(super) struct Counted {
    inner: Box<dyn IoStream>,
    activity: Arc<AtomicU64>,
}

impl Counted {
    pub(super) fn new(inner: Box<dyn IoStream>, activity: Arc<AtomicU64>) -> Counted {
        Counted { inner, activity }
    }
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.fetch_add(1, Relaxed);
        }
        r
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, data);
        if let Poll::Ready(Ok(n)) = r {
            if n > 0 {
                self.activity.fetch_add(1, Relaxed);
            }
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = r {
            if n > 0 {
                self.activity.fetch_add(1, Relaxed);
            }
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Runs `serve` until it ends or `activity` has not moved for a whole
/// `idle`: then `on_idle` is called and `serve`, and with it the
/// connection, dropped.
pub(super) async fn serve_until_idle(
    serve: impl Future<Output = ()>,
    activity: &AtomicU64,
    idle: Duration,
    on_idle: impl FnOnce(),
) {
    let mut serve = std::pin::pin!(serve);
    let mut seen = activity.load(Relaxed);
    loop {
        tokio::select! {
            _ = &mut serve => return,
            _ = tokio::time::sleep(idle) => {
                let now = activity.load(Relaxed);
                if now == seen {
                    on_idle();
                    return;
                }
                seen = now;
            }
        }
    }
}
