//! The hot path: encoding the benchmark span, `record_span` through a live
//! pipeline on 1 and 2 threads, and the shard ring against crossbeam's
//! `ArrayQueue` and a `Mutex<VecDeque>` for the same 300-byte records.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use otlpflow::ring::Ring;
use otlpflow::sink::{Sink, SinkOptions, Verify};
use otlpflow::{workload, KeyValue, Pipeline, Policy, Value};
use prost::Message;

const NOW: u64 = 1_700_000_000_000_000_000;

fn encode(c: &mut Criterion) {
    let mut g = c.benchmark_group("encode");
    g.throughput(Throughput::Elements(1));
    let mut buf = vec![0u8; 1024];
    let mut i = 0u64;
    g.bench_function("otlpflow_span", |b| {
        b.iter(|| {
            i += 1;
            workload::with_benchmark_span(1, i, NOW, |s| {
                let n = s.encoded_len();
                s.encode(&mut buf[..n]);
                n
            })
        })
    });
    // The same span through its template (name, kind and four attributes
    // encoded once).
    let shape = otlpflow::SpanShape::new(
        "GET /api/v1/items/{id}",
        otlpflow::SpanKind::Server,
        &[
            KeyValue::new("http.request.method", Value::Str("GET")),
            KeyValue::new("url.path", Value::Str("/api/v1/items/42")),
            KeyValue::new("server.address", Value::Str("api.example.internal")),
            KeyValue::new("http.response.status_code", Value::I64(200)),
        ],
    );
    g.bench_function("otlpflow_span_template", |b| {
        b.iter(|| {
            i += 1;
            workload::with_templated_benchmark_span(1, i, NOW, |s| {
                let n = shape.encoded_len(s);
                shape.encode(s, &mut buf[..n]);
                n
            })
        })
    });
    // The same span through prost: build the message structs, then encode.
    let mut out = Vec::with_capacity(1024);
    g.bench_function("prost_build_and_encode", |b| {
        b.iter(|| {
            i += 1;
            let span = workload::with_benchmark_span(1, i, NOW, to_prost);
            out.clear();
            span.encode(&mut out).map(|_| out.len())
        })
    });
    g.finish();
}

fn to_prost(s: &otlpflow::Span<'_>) -> opentelemetry_proto::tonic::trace::v1::Span {
    use opentelemetry_proto::tonic::common::v1::{any_value::Value as P, AnyValue, KeyValue};
    use opentelemetry_proto::tonic::trace::v1 as pt;
    let kv = |k: &otlpflow::KeyValue<'_>| KeyValue {
        key: k.key.to_owned(),
        value: Some(AnyValue {
            value: Some(match k.value {
                otlpflow::Value::Str(v) => P::StringValue(v.to_owned()),
                otlpflow::Value::I64(v) => P::IntValue(v),
                _ => P::BoolValue(false),
            }),
        }),
        ..Default::default()
    };
    pt::Span {
        trace_id: s.trace_id.to_vec(),
        span_id: s.span_id.to_vec(),
        parent_span_id: s.parent_span_id.to_vec(),
        flags: s.flags,
        name: s.name.to_owned(),
        kind: s.kind as i32,
        start_time_unix_nano: s.start_time_unix_nano,
        end_time_unix_nano: s.end_time_unix_nano,
        attributes: s.attributes.iter().map(kv).collect(),
        events: s
            .events
            .iter()
            .map(|e| pt::span::Event {
                time_unix_nano: e.time_unix_nano,
                name: e.name.to_owned(),
                attributes: e.attributes.iter().map(kv).collect(),
                dropped_attributes_count: 0,
            })
            .collect(),
        status: Some(pt::Status {
            message: String::new(),
            code: s.status.code as i32,
        }),
        ..Default::default()
    }
}

fn pipeline(sink: &Sink) -> Pipeline {
    pipeline_with(sink, |b| b)
}

/// A pipeline to `sink` under `Block`, with `configure` applied.
fn pipeline_with(
    sink: &Sink,
    configure: impl FnOnce(otlpflow::PipelineBuilder) -> otlpflow::PipelineBuilder,
) -> Pipeline {
    configure(
        Pipeline::builder()
            .endpoint(sink.endpoint())
            .service_name("bench")
            .policy(Policy::Block {
                max_wait: Duration::from_secs(30),
            }),
    )
    .start()
    .expect("pipeline starts")
}

/// The embedded receiver, walking requests (sampled full decode).
fn bench_sink() -> Sink {
    Sink::start(SinkOptions {
        verify: Verify::Walk { sample_every: 1024 },
        ..SinkOptions::default()
    })
    .expect("sink")
}

fn record_span(c: &mut Criterion) {
    let sink = Sink::start(SinkOptions {
        verify: Verify::Walk { sample_every: 1024 },
        ..SinkOptions::default()
    })
    .expect("sink");
    let p = pipeline(&sink);
    let scope = p.scope("bench", "1");
    let mut g = c.benchmark_group("record_span");
    g.throughput(Throughput::Elements(1));
    let mut i = 0u64;
    g.bench_function("1_thread", |b| {
        b.iter(|| {
            i += 1;
            workload::record_benchmark_span(&p, &scope, 1, i, NOW)
        })
    });
    let template = workload::benchmark_template(&p, &scope);
    g.bench_function("1_thread_template", |b| {
        b.iter(|| {
            i += 1;
            workload::record_templated_benchmark_span(&p, &template, 1, i, NOW)
        })
    });
    // The same two in the recording thread's CPU time rather than wall
    // time: on a 2-core machine the worker and the embedded receiver keep
    // both cores busy, and the time the producer spends descheduled is not
    // what recording costs it.
    g.bench_function("1_thread_cpu", |b| {
        b.iter_custom(|iters| {
            thread_cpu(|| {
                for _ in 0..iters {
                    i += 1;
                    let _ = workload::record_benchmark_span(&p, &scope, 1, i, NOW);
                }
            })
        })
    });
    g.bench_function("1_thread_template_cpu", |b| {
        b.iter_custom(|iters| {
            thread_cpu(|| {
                for _ in 0..iters {
                    i += 1;
                    let _ = workload::record_templated_benchmark_span(&p, &template, 1, i, NOW);
                }
            })
        })
    });
    // The same two with room in the ring: the recording thread's CPU time
    // per span while its ring has space, in runs of `ROOM_RUN` spans with a
    // flush between runs, outside the timing. The `_cpu` benches above
    // include what a producer faster than the worker and the receiver
    // spends parked on a full ring (futex calls, yields: the system's pace,
    // and most of their run-to-run spread on two shared cores); these are
    // the hot path's own cost.
    g.bench_function("1_thread_cpu_room", |b| {
        b.iter_custom(|iters| {
            with_room(&p, iters, |n| {
                for _ in 0..n {
                    i += 1;
                    let _ = workload::record_benchmark_span(&p, &scope, 1, i, NOW);
                }
            })
        })
    });
    g.bench_function("1_thread_template_cpu_room", |b| {
        b.iter_custom(|iters| {
            with_room(&p, iters, |n| {
                for _ in 0..n {
                    i += 1;
                    let _ = workload::record_templated_benchmark_span(&p, &template, 1, i, NOW);
                }
            })
        })
    });
    // Two producers at once: each iteration is one record per thread.
    g.throughput(Throughput::Elements(2));
    g.bench_function("2_threads", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            std::thread::scope(|s| {
                for t in 0..2u64 {
                    let p = &p;
                    s.spawn(move || {
                        for i in 0..iters {
                            let _ = workload::record_benchmark_span(p, &scope, t + 7, i, NOW);
                        }
                    });
                }
            });
            start.elapsed()
        })
    });
    g.finish();
    let s = p.shutdown(Duration::from_secs(30)).expect("shutdown");
    assert_eq!(s.dropped.total(), 0);
    assert_eq!(sink.counts().spans, s.exported);
}

fn queues(c: &mut Criterion) {
    let mut g = c.benchmark_group("queue_300B_push_pop");
    g.throughput(Throughput::Elements(64));
    let record = [0x5au8; 300];
    let ring = Arc::new(Ring::new(1 << 16));
    let mut consumer = ring.take_consumer().expect("one consumer");
    g.bench_function("otlpflow_ring", |b| {
        b.iter(|| {
            for _ in 0..64 {
                let mut c = ring.claim(record.len(), 1).expect("space");
                c.buf().copy_from_slice(&record);
                c.commit(1);
            }
            let mut sum = 0usize;
            consumer.read(usize::MAX, |_, p| {
                sum += p.len();
                true
            });
            sum
        })
    });
    let q = crossbeam_queue::ArrayQueue::<Box<[u8]>>::new(256);
    g.bench_function("crossbeam_array_queue_boxed", |b| {
        b.iter(|| {
            for _ in 0..64 {
                let _ = q.push(Box::from(&record[..]));
            }
            let mut sum = 0usize;
            while let Some(r) = q.pop() {
                sum += r.len();
            }
            sum
        })
    });
    let m = Mutex::new(VecDeque::<Vec<u8>>::with_capacity(256));
    g.bench_function("mutex_vecdeque_vec", |b| {
        b.iter_batched(
            || (),
            |()| {
                for _ in 0..64 {
                    m.lock().expect("lock").push_back(record.to_vec());
                }
                let mut sum = 0usize;
                while let Some(r) = m.lock().expect("lock").pop_front() {
                    sum += r.len();
                }
                sum
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

fn token_bucket(c: &mut Criterion) {
    let mut g = c.benchmark_group("token_bucket");
    g.throughput(Throughput::Elements(1));
    // A rate that never refuses, so every call takes the CAS path.
    let b = otlpflow::flow::TokenBucket::new(1e9, 1_000_000_000);
    g.bench_function("try_acquire_1_thread", |bch| bch.iter(|| b.try_acquire(1)));
    g.throughput(Throughput::Elements(2));
    g.bench_function("try_acquire_2_threads", |bch| {
        two_threads(bch, &|| {
            std::hint::black_box(b.try_acquire(1));
        })
    });
    g.finish();
    // The same through record_span: the difference to record_span/1_thread
    // is the limiter's cost on the hot path.
    record_span_with(c, "1_thread_rate_limited", |b| {
        b.rate_limit(1e9, 1_000_000_000)
    });
}

fn memory_budget(c: &mut Criterion) {
    let mut g = c.benchmark_group("memory_budget");
    g.throughput(Throughput::Elements(1));
    let b = otlpflow::flow::MemoryBudget::new(1 << 40);
    g.bench_function("reserve_release_1_thread", |bch| {
        bch.iter(|| {
            if b.try_reserve(300) {
                b.release(300);
            }
        })
    });
    g.throughput(Throughput::Elements(2));
    g.bench_function("reserve_release_2_threads", |bch| {
        two_threads(bch, &|| {
            if b.try_reserve(300) {
                b.release(300);
            }
        })
    });
    g.finish();
    // Through record_span: the difference to record_span/1_thread is the
    // budget's cost on the hot path (the worker's release included).
    let s = record_span_with(c, "1_thread_memory_budget", |b| b.memory_budget(256 << 20));
    assert_eq!(s.memory_used, 0);
}

/// `record_span/NAME`: one thread recording through a pipeline set up by
/// `configure`; its difference to `record_span/1_thread` is what the
/// setting costs on the hot path. Returns the final stats.
fn record_span_with(
    c: &mut Criterion,
    name: &str,
    configure: impl FnOnce(otlpflow::PipelineBuilder) -> otlpflow::PipelineBuilder,
) -> otlpflow::Stats {
    let sink = bench_sink();
    let p = pipeline_with(&sink, configure);
    let scope = p.scope("bench", "1");
    let mut g = c.benchmark_group("record_span");
    g.throughput(Throughput::Elements(1));
    let mut i = 0u64;
    g.bench_function(name, |bch| {
        bch.iter(|| {
            i += 1;
            workload::record_benchmark_span(&p, &scope, 1, i, NOW)
        })
    });
    g.finish();
    let s = p.shutdown(Duration::from_secs(30)).expect("shutdown");
    assert_eq!(s.dropped.total(), 0);
    s
}

/// The calling thread's CPU time spent in `f`.
fn thread_cpu(f: impl FnOnce()) -> Duration {
    let now = || {
        let mut t = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `t` is a valid, writable timespec for the call.
        unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
        Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
    };
    let start = now();
    f();
    now() - start
}

/// Spans recorded between flushes by the `_room` benches: about 640 KB of
/// the shard's 4 MiB ring, so that a run never waits for space.
const ROOM_RUN: u64 = 2048;

/// Calls `record(n)` for `iters` records in all, in runs of at most
/// `ROOM_RUN`, flushing `p` between runs; returns the thread CPU time the
/// runs took (the flushes not counted).
fn with_room(p: &Pipeline, iters: u64, mut record: impl FnMut(u64)) -> Duration {
    let mut total = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        let n = left.min(ROOM_RUN);
        total += thread_cpu(|| record(n));
        left -= n;
        p.flush(Duration::from_secs(30)).expect("flush");
    }
    total
}

/// Runs `f` `iters` times on each of two threads at once.
fn two_threads(b: &mut criterion::Bencher<'_>, f: &(dyn Fn() + Sync)) {
    b.iter_custom(|iters| {
        let start = Instant::now();
        std::thread::scope(|s| {
            for _ in 0..2 {
                s.spawn(|| {
                    for _ in 0..iters {
                        f();
                    }
                });
            }
        });
        start.elapsed()
    })
}

fn signals(c: &mut Criterion) {
    let sink = bench_sink();
    let p = pipeline(&sink);
    let scope = p.scope("bench", "1");
    let mut g = c.benchmark_group("record_log");
    g.throughput(Throughput::Elements(1));
    let mut i = 0u64;
    g.bench_function("1_thread", |b| {
        b.iter(|| {
            i += 1;
            workload::record_benchmark_log(&p, &scope, 1, i, NOW)
        })
    });
    g.finish();
    let mut g = c.benchmark_group("record_metric_point");
    g.throughput(Throughput::Elements(1));
    g.bench_function("1_thread", |b| {
        b.iter(|| {
            i += 1;
            workload::record_benchmark_point(&p, &scope, i, NOW)
        })
    });
    g.finish();

    // Instruments: the update alone (collection is off the hot path).
    let counter = p.counter(&scope, "ops", "1", "");
    let hist = p
        .histogram(&scope, "latency", "ms", "", &[])
        .expect("histogram");
    let attrs = [
        KeyValue::new("http.route", Value::Str("/api/v1/items/{id}")),
        KeyValue::new("http.response.status_code", Value::I64(200)),
    ];
    let bound_counter = counter.bind(&attrs);
    let bound_hist = hist.bind(&attrs);
    let mut g = c.benchmark_group("instruments");
    g.throughput(Throughput::Elements(1));
    g.bench_function("counter_add_1_thread", |b| {
        b.iter(|| counter.add(1, &attrs))
    });
    g.bench_function("counter_add_bound_1_thread", |b| {
        b.iter(|| bound_counter.add(1))
    });
    g.bench_function("histogram_record_1_thread", |b| {
        b.iter(|| hist.record(42.0, &attrs))
    });
    g.bench_function("histogram_record_bound_1_thread", |b| {
        b.iter(|| bound_hist.record(42.0))
    });
    g.throughput(Throughput::Elements(2));
    g.bench_function("counter_add_2_threads", |b| {
        two_threads(b, &|| counter.add(1, &attrs))
    });
    g.bench_function("histogram_record_2_threads", |b| {
        two_threads(b, &|| hist.record(42.0, &attrs))
    });
    g.bench_function("histogram_record_bound_2_threads", |b| {
        two_threads(b, &|| bound_hist.record(42.0))
    });
    g.finish();
    let s = p.shutdown(Duration::from_secs(30)).expect("shutdown");
    assert_eq!(s.dropped.total(), 0);
}

/// How long a cache line takes to move from one core to the other here:
/// two threads hand a counter back and forth (the time reported is one
/// hand-off, half of an iteration's round trip). Not otlpflow's code: a
/// reading of the machine, to take right before the record benches (see
/// `benches/criterion_ab.py`), because on a VM it moves. The record path
/// writes ring lines that the worker, on the other core, read a lap
/// earlier; where a hand-off takes ~170 ns instead of ~25 ns (vCPUs the
/// host placed on cores that share no cache), `record_span`'s `_cpu`
/// benches read about three times as long (see BENCHMARKS.md).
fn machine(c: &mut Criterion) {
    use std::sync::atomic::{AtomicU64, Ordering};
    let mut g = c.benchmark_group("machine");
    g.bench_function("cache_line_handoff", |b| {
        b.iter_custom(|iters| {
            let line = crossbeam_utils::CachePadded::new(AtomicU64::new(0));
            std::thread::scope(|s| {
                let line = &line;
                s.spawn(move || {
                    // Odd values are this thread's to answer.
                    for i in 0..iters {
                        while line.load(Ordering::Acquire) != 2 * i + 1 {
                            std::hint::spin_loop();
                        }
                        line.store(2 * i + 2, Ordering::Release);
                    }
                });
                let start = Instant::now();
                for i in 0..iters {
                    line.store(2 * i + 1, Ordering::Release);
                    while line.load(Ordering::Acquire) != 2 * i + 2 {
                        std::hint::spin_loop();
                    }
                }
                // Two hand-offs an iteration.
                start.elapsed() / 2
            })
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    targets = encode, machine, record_span, queues, token_bucket, memory_budget, signals
}
criterion_main!(benches);
