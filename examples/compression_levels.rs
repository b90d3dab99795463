//! Compression levels against realistic traffic: export requests of 512
//! spans from the varied mix (`workload::with_mixed_span`), framed by the
//! engine's batcher and compressed by its compressor at each level; prints
//! the ratio and the compressor's CPU time per span (median of 5 passes
//! over all requests, this thread's CPU clock).
//!
//! `cargo run --release --example compression_levels [REQUESTS [ONLY]]`
//! (ONLY: run just the rows whose label contains it, e.g. "mix: Zstd 1 ", for
//! counting instructions under callgrind).

use std::time::Duration;

use bytes::Bytes;
use otlpflow::__private::{Batch, Compressor};
use otlpflow::{workload, Compression};

const NOW: u64 = 1_700_000_000_000_000_000;
const SPANS_PER_REQUEST: u64 = 512;

fn thread_cpu() -> Duration {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `t` is a valid, writable timespec for the call.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// Export request bodies of `n` requests of the given span source.
fn requests(n: u64, mixed: bool) -> Vec<Vec<u8>> {
    let scope = Bytes::from_static(b"\x0a\x05bench");
    let resource = b"\x0a\x1e\x0a\x0cservice.name\x12\x0e\x0a\x0cshop-backend".to_vec();
    (0..n)
        .map(|r| {
            let mut batch = Batch::new();
            for k in 0..SPANS_PER_REQUEST {
                let i = r * SPANS_PER_REQUEST + k;
                let now = NOW + i * 1_000_000;
                let encode = |s: &otlpflow::Span<'_>| {
                    let mut buf = vec![0u8; s.encoded_len()];
                    s.encode(&mut buf);
                    buf
                };
                let rec = if mixed {
                    workload::with_mixed_span(7, i, now, encode)
                } else {
                    workload::with_benchmark_span(7, i, now, encode)
                };
                batch.push(0, &rec, |_| scope.clone());
            }
            let req = batch.take(&resource);
            req.slices()
                .iter()
                .flat_map(|s| s.iter().copied())
                .collect()
        })
        .collect()
}

fn measure(reqs: &[Vec<u8>], kind: Compression, level: i32) -> (f64, f64) {
    let mut c = Compressor::new(kind, level);
    let raw: usize = reqs.iter().map(Vec::len).sum();
    let mut packed = 0;
    let mut times = Vec::new();
    for _ in 0..5 {
        packed = 0;
        let t0 = thread_cpu();
        for r in reqs {
            packed += c.compress(&[r], r.len(), 0).expect("compresses").len();
        }
        times.push(thread_cpu() - t0);
    }
    times.sort();
    let spans = reqs.len() as f64 * SPANS_PER_REQUEST as f64;
    (
        raw as f64 / packed as f64,
        times[2].as_nanos() as f64 / spans,
    )
}

fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(200);
    let only = std::env::args().nth(2).unwrap_or_default();
    for (label, mixed) in [("varied mix", true), ("benchmark span, repeated", false)] {
        let reqs = requests(n, mixed);
        let raw: usize = reqs.iter().map(Vec::len).sum();
        println!(
            "\n{label}: {n} requests of {SPANS_PER_REQUEST} spans, {:.0} bytes per span uncompressed\n",
            raw as f64 / (n * SPANS_PER_REQUEST) as f64
        );
        println!("| compression | ratio | bytes per span | CPU ns per span |");
        println!("|---|---|---|---|");
        let mut settings = vec![(Compression::Gzip, 1), (Compression::Gzip, 6)];
        let levels: &[i32] = if mixed {
            &[-5, -3, -1, 1, 2, 3, 4, 6, 9, 12, 15, 19]
        } else {
            &[1, 3]
        };
        settings.extend(levels.iter().map(|l| (Compression::Zstd, *l)));
        for (kind, level) in settings {
            if !format!("{label}: {kind:?} {level} ").contains(&only) {
                continue;
            }
            let (ratio, ns) = measure(&reqs, kind, level);
            println!(
                "| {kind:?} {level} | {ratio:.2} | {:.1} | {ns:.0} |",
                raw as f64 / (n * SPANS_PER_REQUEST) as f64 / ratio
            );
        }
    }
}
