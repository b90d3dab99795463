//! The lock-free instruments under contention: threads update the same
//! counter, up-down counter and histogram for a bounded time while
//! collections run; what the receiver got adds up to exactly what was
//! recorded (delta temporality, so each collection carries only what is
//! new, and nothing may be lost or counted twice; the up-down counter
//! stays cumulative, so its last level is what was left).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::common::v1::any_value::Value as PValue;
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use opentelemetry_proto::tonic::metrics::v1::number_data_point::Value as PNumber;
use otlpflow::sink::{Sink, SinkOptions, Verify};
use otlpflow::{KeyValue, Pipeline, Policy, Temporality, Value};

#[derive(Default, Debug, PartialEq)]
struct Totals {
    counter: i64,
    /// The up-down counter's last level, by attribute set.
    updown: std::collections::BTreeMap<String, i64>,
    hist_count: u64,
    hist_sum: f64,
    hist_buckets: Vec<u64>,
    gauge_points: u64,
    overflow_points: u64,
}

fn totals(sink: &Sink) -> Totals {
    let mut t = Totals {
        hist_buckets: vec![0; 3],
        ..Totals::default()
    };
    for req in sink.take_metric_requests() {
        for rm in req.resource_metrics {
            for sm in rm.scope_metrics {
                for m in sm.metrics {
                    match m.data.expect("data") {
                        Data::Sum(s) => {
                            // Delta, but the up-down counter: cumulative.
                            let cumulative = m.name == "inflight";
                            assert_eq!(s.aggregation_temporality, 1 + cumulative as i32);
                            for dp in s.data_points {
                                if dp
                                    .attributes
                                    .iter()
                                    .any(|a| a.key == "otel.metric.overflow")
                                {
                                    t.overflow_points += 1;
                                }
                                let Some(PNumber::AsInt(v)) = dp.value else {
                                    panic!("{dp:?}")
                                };
                                match m.name.as_str() {
                                    "ops" => t.counter += v,
                                    "inflight" => {
                                        t.updown.insert(format!("{:?}", dp.attributes), v);
                                    }
                                    other => panic!("{other}"),
                                }
                            }
                        }
                        Data::Histogram(h) => {
                            for dp in h.data_points {
                                assert_eq!(dp.count, dp.bucket_counts.iter().sum::<u64>());
                                t.hist_count += dp.count;
                                t.hist_sum += dp.sum.unwrap_or(0.0);
                                for (a, b) in t.hist_buckets.iter_mut().zip(&dp.bucket_counts) {
                                    *a += b;
                                }
                            }
                        }
                        Data::Gauge(g) => t.gauge_points += g.data_points.len() as u64,
                        other => panic!("{other:?}"),
                    }
                }
            }
        }
    }
    t
}

/// A receiver that checks and keeps every request.
fn keeping_sink() -> Sink {
    Sink::start(SinkOptions {
        verify: Verify::Full,
        keep_requests: true,
        ..SinkOptions::default()
    })
    .expect("sink")
}

/// One integer sum data point as the receiver got it.
#[derive(Debug)]
struct IntPoint {
    name: String,
    /// OTLP's AggregationTemporality: 1 delta, 2 cumulative.
    temporality: i32,
    monotonic: bool,
    attributes: usize,
    value: i64,
}

/// Every sum's integer points the receiver got, in export order (panics on
/// any other kind of metric or point).
fn int_sums(sink: &Sink) -> Vec<IntPoint> {
    let mut points = Vec::new();
    for req in sink.take_metric_requests() {
        for m in req
            .resource_metrics
            .into_iter()
            .flat_map(|rm| rm.scope_metrics)
            .flat_map(|sm| sm.metrics)
        {
            let Some(Data::Sum(sum)) = m.data else {
                panic!("{:?}", m.data)
            };
            for dp in sum.data_points {
                let Some(PNumber::AsInt(value)) = dp.value else {
                    panic!("{:?}", dp.value)
                };
                points.push(IntPoint {
                    name: m.name.clone(),
                    temporality: sum.aggregation_temporality,
                    monotonic: sum.is_monotonic,
                    attributes: dp.attributes.len(),
                    value,
                });
            }
        }
    }
    points
}

/// A pipeline to `sink` with instruments of `temporality`.
fn metrics_pipeline(sink: &Sink, temporality: Temporality) -> Pipeline {
    Pipeline::builder()
        .endpoint(sink.endpoint())
        .metrics_temporality(temporality)
        .start()
        .expect("start")
}

#[test]
fn concurrent_updates_and_collections_add_up_exactly() {
    let sink = keeping_sink();
    let p = Pipeline::builder()
        .endpoint(sink.endpoint())
        .service_name("instruments")
        .metrics_temporality(Temporality::Delta)
        .metrics_interval(Duration::from_millis(20))
        .policy(Policy::Block {
            max_wait: Duration::from_secs(10),
        })
        .start()
        .expect("start");
    let scope = p.scope("instruments", "1");
    let ops = p.counter(&scope, "ops", "{op}", "operations");
    let inflight = p.up_down_counter(&scope, "inflight", "{request}", "");
    let latency = p
        .histogram(&scope, "latency", "ms", "", &[1.0, 10.0])
        .expect("histogram");
    let depth = p.gauge(&scope, "depth", "{item}", "");
    let stop = Arc::new(AtomicBool::new(false));
    // Extra collections on top of the collector thread's.
    let collector = {
        let p = p.clone();
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                n += p.collect_metrics();
                std::thread::sleep(Duration::from_millis(3));
            }
            n
        })
    };
    let deadline = Instant::now() + Duration::from_millis(400);
    let per_thread: Vec<(u64, u64)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..3u64)
            .map(|t| {
                let (ops, inflight, latency, depth) = (
                    ops.clone(),
                    inflight.clone(),
                    latency.clone(),
                    depth.clone(),
                );
                s.spawn(move || {
                    let route = format!("/r/{t}");
                    let attrs = [KeyValue::new("route", Value::Str(&route))];
                    let bound = latency.bind(&attrs);
                    let (mut n, mut i) = (0u64, 0u64);
                    // Bounded in time and in count.
                    while Instant::now() < deadline && n < 2_000_000 {
                        ops.add(1, &attrs);
                        inflight.add(1, &attrs);
                        inflight.add(-1, &attrs);
                        bound.record((i % 3) as f64 * 5.0);
                        depth.set(i as f64, &attrs);
                        n += 1;
                        i += 1;
                    }
                    (n, i)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect()
    });
    stop.store(true, Ordering::Relaxed);
    let extra = collector.join().expect("collector");
    let s = p.shutdown(Duration::from_secs(10)).expect("shutdown");
    let recorded: u64 = per_thread.iter().map(|(n, _)| n).sum();
    assert!(
        recorded > 10_000,
        "too little load to mean anything: {recorded}"
    );
    assert!(extra > 0);
    let t = totals(&sink);
    assert_eq!(t.counter as u64, recorded, "{t:?}");
    assert_eq!(t.updown.len(), 3, "{t:?}");
    assert!(t.updown.values().all(|v| *v == 0), "{t:?}");
    assert_eq!(t.hist_count, recorded, "{t:?}");
    // Values 0, 5, 10 cycle per thread: buckets (<=1, <=10, >10).
    let expect_sum: f64 = per_thread
        .iter()
        .map(|(n, _)| (0..*n).map(|i| (i % 3) as f64 * 5.0).sum::<f64>())
        .sum();
    assert_eq!(t.hist_sum, expect_sum);
    assert_eq!(t.hist_buckets[2], 0);
    assert!(t.gauge_points > 0);
    assert_eq!(s.exported_by_signal.metrics, sink.counts().metric_points);
    assert_eq!(s.dropped.total(), 0, "{s:?}");
}

#[test]
fn cumulative_counters_and_the_cardinality_limit_over_the_wire() {
    let sink = keeping_sink();
    let p = Pipeline::builder()
        .endpoint(sink.endpoint())
        .cardinality_limit(4)
        .start()
        .expect("start");
    let scope = p.scope("instruments", "1");
    let c = p.counter(&scope, "hits", "1", "");
    for user in 0..10i64 {
        c.add(2, &[KeyValue::new("user", Value::I64(user))]);
    }
    p.flush(Duration::from_secs(10)).expect("flush");
    c.add(1, &[KeyValue::new("user", Value::I64(0))]);
    p.shutdown(Duration::from_secs(10)).expect("shutdown");
    let reqs = sink.take_metric_requests();
    // Two collections (flush, shutdown), each: 4 series + the overflow one.
    let mut points = Vec::new();
    for req in reqs {
        for rm in req.resource_metrics {
            for sm in rm.scope_metrics {
                for m in sm.metrics {
                    let Some(Data::Sum(s)) = m.data else { panic!() };
                    assert!(s.is_monotonic);
                    assert_eq!(s.aggregation_temporality, 2, "cumulative");
                    for dp in s.data_points {
                        let key = dp.attributes[0].key.clone();
                        let v = match dp.attributes[0]
                            .value
                            .as_ref()
                            .and_then(|v| v.value.clone())
                        {
                            Some(PValue::IntValue(u)) => u.to_string(),
                            Some(PValue::BoolValue(b)) => b.to_string(),
                            other => panic!("{other:?}"),
                        };
                        let Some(PNumber::AsInt(n)) = dp.value else {
                            panic!()
                        };
                        points.push((key, v, n));
                    }
                }
            }
        }
    }
    assert_eq!(points.len(), 10, "{points:?}");
    let overflow: Vec<_> = points
        .iter()
        .filter(|(k, _, _)| k == "otel.metric.overflow")
        .collect();
    assert_eq!(overflow.len(), 2);
    assert!(
        overflow.iter().all(|(_, _, n)| *n == 12),
        "6 users x 2: {overflow:?}"
    );
    let user0: Vec<i64> = points
        .iter()
        .filter(|(k, v, _)| k == "user" && v == "0")
        .map(|p| p.2)
        .collect();
    assert_eq!(
        user0,
        vec![2, 3],
        "cumulative: the second point includes the first"
    );
}

/// NaN and the infinities fall in no bucket: a histogram drops and counts
/// them, as the OpenTelemetry metrics SDK specification asks, instead of
/// letting one NaN make the cumulative sum NaN in every later export (and
/// counting it in the first bucket). Through both the plain and the bound
/// handle.
#[test]
fn histograms_drop_and_count_nan_and_infinite_measurements() {
    let sink = keeping_sink();
    let p = Pipeline::builder()
        .endpoint(sink.endpoint())
        .metrics_temporality(Temporality::Cumulative)
        .start()
        .expect("start");
    let scope = p.scope("instruments", "1");
    let h = p
        .histogram(&scope, "latency", "ms", "", &[1.0, 10.0])
        .expect("histogram");
    let bound = h.bind(&[KeyValue::new("route", Value::Str("/b"))]);
    for v in [0.5, f64::NAN, 5.0, f64::INFINITY] {
        h.record(v, &[]);
    }
    bound.record(f64::NEG_INFINITY);
    bound.record(20.0);
    p.flush(Duration::from_secs(10)).expect("flush");
    h.record(2.0, &[]);
    let s = p.shutdown(Duration::from_secs(10)).expect("shutdown");
    assert_eq!(s.dropped_measurements, 3, "{s:?}");
    // (count, sum, min, max, buckets) of each point, in export order.
    let mut points = Vec::new();
    for req in sink.take_metric_requests() {
        for rm in req.resource_metrics {
            for sm in rm.scope_metrics {
                for m in sm.metrics {
                    let Some(Data::Histogram(hist)) = m.data else {
                        panic!("{:?}", m.data)
                    };
                    for dp in hist.data_points {
                        points.push((
                            dp.attributes.len(),
                            dp.count,
                            dp.sum,
                            dp.min,
                            dp.max,
                            dp.bucket_counts,
                        ));
                    }
                }
            }
        }
    }
    points.sort_by_key(|p| (p.0, p.1));
    assert_eq!(
        points,
        vec![
            (0, 2, Some(5.5), Some(0.5), Some(5.0), vec![1, 1, 0]),
            (0, 3, Some(7.5), Some(0.5), Some(5.0), vec![1, 2, 0]),
            (1, 1, Some(20.0), Some(20.0), Some(20.0), vec![0, 0, 1]),
            (1, 1, Some(20.0), Some(20.0), Some(20.0), vec![0, 0, 1]),
        ],
        "the cumulative sums stay numbers"
    );
}

/// A monotonic sum goes on the wire as OTLP's `as_int`, a signed 64-bit
/// integer. A counter given more than that can hold (one add past
/// `i64::MAX`, or adds summing past it) was written as a negative number
/// or wrapped round to a small one: a monotonic counter going backwards,
/// which a backend reads as a reset. Now an add past `i64::MAX` is dropped
/// and counted in `dropped_measurements`, and a sum past it stays at
/// `i64::MAX`, through the plain and the bound handle, cumulative and delta.
#[test]
fn counters_never_go_negative_or_wrap_past_what_a_data_point_carries() {
    for temporality in [Temporality::Cumulative, Temporality::Delta] {
        let sink = keeping_sink();
        let p = metrics_pipeline(&sink, temporality);
        let scope = p.scope("instruments", "1");
        let c = p.counter(&scope, "bytes", "By", "");
        let bound = c.bind(&[KeyValue::new("disk", Value::Str("b"))]);
        let max = i64::MAX as u64;
        c.add(1 << 63, &[]); // one add past i64::MAX: dropped
        c.add(5, &[]);
        bound.add(u64::MAX); // dropped
        bound.add(max - 1);
        bound.add(3); // the sum passes i64::MAX: it stays there
        p.flush(Duration::from_secs(10)).expect("flush");
        c.add(max, &[]);
        c.add(max, &[]); // the sums of these wrapped u64 round to 3
        c.add(2, &[]);
        bound.add(1);
        let s = p.shutdown(Duration::from_secs(10)).expect("shutdown");
        assert_eq!(s.dropped_measurements, 2, "{temporality:?}: {s:?}");
        let points = int_sums(&sink);
        assert!(points.iter().all(|p| p.monotonic));
        let (plain, bound_points): (Vec<_>, Vec<_>) =
            points.into_iter().partition(|p| p.attributes == 0);
        let values = |v: Vec<IntPoint>| v.into_iter().map(|p| p.value).collect::<Vec<_>>();
        assert_eq!(
            (values(plain), values(bound_points)),
            match temporality {
                Temporality::Cumulative => (vec![5, i64::MAX], vec![i64::MAX, i64::MAX]),
                // A delta interval starts from zero: the bound series' second
                // interval holds its 1.
                Temporality::Delta => (vec![5, i64::MAX], vec![i64::MAX, 1]),
            },
            "{temporality:?}"
        );
    }
}

/// Under delta temporality counters and histograms report what is new,
/// but an up-down counter keeps reporting its level (cumulative), as the
/// OpenTelemetry SDKs map a delta preference: a level sent as deltas is
/// lost for good with one lost point, and backends rebuild it from the
/// start. The up-down counter used to go out as deltas too.
#[test]
fn under_delta_an_up_down_counter_stays_cumulative() {
    let sink = keeping_sink();
    let p = metrics_pipeline(&sink, Temporality::Delta);
    let scope = p.scope("instruments", "1");
    let ops = p.counter(&scope, "ops", "{op}", "");
    let depth = p.up_down_counter(&scope, "queue.depth", "{item}", "");
    ops.add(5, &[]);
    depth.add(5, &[]);
    p.flush(Duration::from_secs(10)).expect("flush");
    ops.add(2, &[]);
    depth.add(-2, &[]);
    p.shutdown(Duration::from_secs(10)).expect("shutdown");
    let points = int_sums(&sink);
    let of = |name: &str| {
        points
            .iter()
            .filter(|p| p.name == name)
            .map(|p| (p.temporality, p.value))
            .collect::<Vec<_>>()
    };
    // AggregationTemporality: 1 delta, 2 cumulative.
    assert_eq!(of("ops"), vec![(1, 5), (1, 2)], "{points:?}");
    assert_eq!(of("queue.depth"), vec![(2, 5), (2, 3)], "{points:?}");
}

/// Asking for an instrument a second time (the same scope, kind, name,
/// unit, description and bounds; the name's case aside) returns the first,
/// as the OpenTelemetry API specifies: one stream. Each call used to make a
/// new instrument, with a series table of its own (32 KiB at the default
/// cardinality limit), kept for the pipeline's life, and each exported its
/// own point for the same metric and attributes: a counter made where it is
/// used, on every request, grew without bound and reported conflicting
/// values.
#[test]
fn asking_for_an_instrument_again_returns_the_same_stream() {
    let sink = keeping_sink();
    let p = Pipeline::builder()
        .endpoint(sink.endpoint())
        .start()
        .expect("start");
    let scope = p.scope("instruments", "1");
    for _ in 0..1000 {
        p.counter(&scope, "requests", "{request}", "served")
            .add(1, &[]);
    }
    p.counter(&scope, "Requests", "{request}", "served")
        .add(1, &[]);
    // Another identity is another stream.
    p.counter(&scope, "requests", "{request}", "another description")
        .add(7, &[]);
    let h = p
        .histogram(&scope, "latency", "ms", "", &[1.0])
        .expect("histogram");
    let again = p
        .histogram(&scope, "latency", "ms", "", &[1.0])
        .expect("histogram");
    h.record(0.5, &[]);
    again.record(2.0, &[]);
    p.shutdown(Duration::from_secs(10)).expect("shutdown");
    let mut sums = Vec::new();
    let mut histograms = Vec::new();
    for req in sink.take_metric_requests() {
        for rm in req.resource_metrics {
            for sm in rm.scope_metrics {
                for m in sm.metrics {
                    match m.data {
                        Some(Data::Sum(s)) => {
                            for dp in s.data_points {
                                let Some(PNumber::AsInt(v)) = dp.value else {
                                    panic!("{dp:?}")
                                };
                                sums.push((m.name.clone(), m.description.clone(), v));
                            }
                        }
                        Some(Data::Histogram(h)) => {
                            for dp in h.data_points {
                                histograms.push((m.name.clone(), dp.count, dp.bucket_counts));
                            }
                        }
                        other => panic!("{other:?}"),
                    }
                }
            }
        }
    }
    sums.sort();
    assert_eq!(
        sums,
        vec![
            ("requests".into(), "another description".into(), 7),
            ("requests".into(), "served".into(), 1001),
        ]
    );
    assert_eq!(histograms, vec![("latency".into(), 2, vec![1, 1])]);
}
