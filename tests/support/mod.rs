//! What several test files share: the embedded receiver keeping what it
//! decoded and a prompt, lossless pipeline to it, scraping the Prometheus
//! endpoint, the small pipeline the
//! full-ring tests use, and an allocator that counts the calling thread's
//! allocations.
#![allow(dead_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::{Read, Write};
use std::net::SocketAddr;

use otlpflow::sink::{Sink, SinkOptions, Verify};
use otlpflow::{Pipeline, PipelineBuilder, Policy};

/// The embedded receiver on loopback, decoding every request in full and
/// keeping it for the test to read.
pub fn keeping_sink() -> Sink {
    Sink::start(SinkOptions {
        verify: Verify::Full,
        keep_requests: true,
        ..SinkOptions::default()
    })
    .expect("sink starts")
}

/// A pipeline to `sink` named `service` that loses nothing (Block) and
/// sends promptly: one worker, 5 ms linger (the bridge tests').
pub fn prompt_pipeline(sink: &Sink, service: &str) -> Pipeline {
    Pipeline::builder()
        .endpoint(sink.endpoint())
        .service_name(service)
        .shards(1)
        .workers(1)
        .linger(std::time::Duration::from_millis(5))
        .policy(Policy::Block {
            max_wait: std::time::Duration::from_secs(10),
        })
        .start()
        .unwrap()
}

/// The body of `GET /metrics` from `addr`, the HTTP head included.
pub fn scrape(addr: SocketAddr) -> String {
    get(addr, "/metrics")
}

/// The response to `GET path` from `addr`, the HTTP head included.
pub fn get(addr: SocketAddr, path: &str) -> String {
    let mut tcp = std::net::TcpStream::connect(addr).unwrap();
    write!(
        tcp,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    tcp.read_to_string(&mut text).unwrap();
    text
}

/// One 64 KiB ring, one worker, one request in flight: a slow receiver
/// fills the ring within a few thousand records.
pub fn tiny(endpoint: String, policy: Policy) -> PipelineBuilder {
    Pipeline::builder()
        .endpoint(endpoint)
        .ring_bytes(64 * 1024)
        .shards(1)
        .workers(1)
        .max_in_flight(1)
        .policy(policy)
}

/// Counts the calling thread's allocations; a test binary installs it with
/// `#[global_allocator] static GLOBAL: support::Counting = support::Counting;`.
pub struct Counting;

thread_local! {
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: forwards to the system allocator; the count is a thread-local
// cell that allocates nothing.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: as the caller's contract for `GlobalAlloc::alloc`.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as the caller's contract for `GlobalAlloc::dealloc`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

/// Allocations made by this thread so far.
pub fn allocs() -> u64 {
    ALLOCS.with(|c| c.get())
}

/// Runs `cmd` (an `otlpflow` run with `--json`), checks that it succeeded,
/// and returns the report it printed last.
pub fn json_report(cmd: &mut std::process::Command) -> serde_json::Value {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.trim().lines().last().unwrap_or_default()).unwrap()
}
