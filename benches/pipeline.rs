//! Per batch: framing and compressing 512 benchmark spans; and end to end:
//! spans recorded by 2 threads, exported over loopback to the embedded
//! receiver, and acknowledged (flush), with and without compression.

use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use otlpflow::__private::{Batch, Compressor};
use otlpflow::sink::{Sink, SinkOptions, Verify};
use otlpflow::{workload, Compression, Pipeline, Policy};

const NOW: u64 = 1_700_000_000_000_000_000;
const BATCH: u64 = 512;

fn frame_and_compress(c: &mut Criterion) {
    let records: Vec<Vec<u8>> = (0..BATCH)
        .map(|i| {
            workload::with_benchmark_span(3, i, NOW, |s| {
                let mut v = vec![0; s.encoded_len()];
                s.encode(&mut v);
                v
            })
        })
        .collect();
    let scope = Bytes::from_static(&[0x0a, 0x07, 0x0a, 0x05, b'b', b'e', b'n', b'c', b'h']);
    let resource = [0x0a, 0x00];
    let mut g = c.benchmark_group("frame_compress_512_spans");
    g.throughput(Throughput::Elements(BATCH));
    for (name, kind) in [
        ("none", Compression::None),
        ("gzip", Compression::Gzip),
        ("zstd", Compression::Zstd),
    ] {
        let mut comp = Compressor::new(kind, 1);
        let mut batch = Batch::new();
        g.bench_function(name, |b| {
            b.iter(|| {
                for r in &records {
                    batch.push(0, r, |_| scope.clone());
                }
                let req = batch.take(&resource);
                if kind == Compression::None {
                    req.message_len
                } else {
                    comp.compress(&req.slices(), req.message_len, 5)
                        .map(|v| v.len())
                        .unwrap_or(0)
                }
            })
        });
    }
    g.finish();
}

fn end_to_end(c: &mut Criterion) {
    let mut g = c.benchmark_group("end_to_end_2_threads");
    const SPANS: u64 = 200_000;
    g.throughput(Throughput::Elements(SPANS));
    g.sample_size(10);
    for (name, kind) in [("none", Compression::None), ("zstd", Compression::Zstd)] {
        let sink = Sink::start(SinkOptions {
            verify: Verify::Walk { sample_every: 1024 },
            ..SinkOptions::default()
        })
        .expect("sink");
        let p = Pipeline::builder()
            .endpoint(sink.endpoint())
            .service_name("bench")
            .compression(kind)
            .policy(Policy::Block {
                max_wait: Duration::from_secs(30),
            })
            .start()
            .expect("pipeline");
        let scope = p.scope("bench", "1");
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    std::thread::scope(|s| {
                        for t in 0..2u64 {
                            let p = &p;
                            s.spawn(move || {
                                for i in 0..SPANS / 2 {
                                    let _ =
                                        workload::record_benchmark_span(p, &scope, t + 1, i, NOW);
                                }
                            });
                        }
                    });
                    p.flush(Duration::from_secs(60)).expect("flush");
                }
                start.elapsed()
            })
        });
        let s = p.shutdown(Duration::from_secs(30)).expect("shutdown");
        assert_eq!(s.dropped.total() + s.failed.total(), 0);
        assert_eq!(sink.counts().spans, s.exported);
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(5));
    targets = frame_and_compress, end_to_end
}
criterion_main!(benches);
