//! Routing across a collector fleet: three receivers on loopback, spans
//! routed by trace id on the Collector `loadbalancing` exporter's ring.
//! The expected receiver of every trace is computed here, independently
//! (a bit-by-bit CRC-32 and the ring built from its definition), and every
//! trace must arrive whole at exactly that receiver; also while one
//! receiver is down for 5 s and comes back (by default its records wait:
//! nothing lost, affinity kept).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use otlpflow::sink::{Sink, SinkOptions, Verify};
use otlpflow::{workload, Pipeline, Policy, Signal};

mod support;

/// CRC-32/IEEE, one bit at a time (the engine uses a table).
fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &byte in data {
        crc ^= byte as u32;
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xEDB8_8320 & mask);
        }
    }
    !crc
}

/// The receiver index of a trace id: the first ring position at or after
/// the id's hash, the ring built as the Collector builds it.
struct ExpectedRing(Vec<(u32, usize)>);

impl ExpectedRing {
    fn new(keys: &[String]) -> ExpectedRing {
        let mut ring: Vec<(u32, usize)> = Vec::new();
        for (e, key) in keys.iter().enumerate() {
            for i in 0..100u32 {
                let mut k = key.as_bytes().to_vec();
                k.push(i as u8);
                let pos = crc32(&k) % 36_000;
                if !ring.iter().any(|(p, _)| *p == pos) {
                    ring.push((pos, e));
                }
            }
        }
        ring.sort();
        ExpectedRing(ring)
    }

    fn of(&self, trace_id: &[u8]) -> usize {
        self.of_without(trace_id, usize::MAX)
    }

    /// The same, passing over endpoint `down` to the next on the ring.
    fn of_without(&self, trace_id: &[u8], down: usize) -> usize {
        let h = crc32(trace_id) % 36_000;
        let after = self.0.iter().filter(|(p, _)| *p >= h);
        after
            .chain(self.0.iter())
            .find(|(_, e)| *e != down)
            .unwrap()
            .1
    }
}

fn sink_at(addr: SocketAddr) -> Sink {
    Sink::start(SinkOptions {
        grpc_addr: addr,
        verify: Verify::Full,
        keep_requests: true,
        ..SinkOptions::default()
    })
    .unwrap()
}

/// Trace id -> the receivers its spans reached, with counts.
fn collect(into: &mut HashMap<Vec<u8>, HashMap<usize, u64>>, sink: &Sink, idx: usize) {
    for req in sink.take_requests() {
        for rs in req.resource_spans {
            for ss in rs.scope_spans {
                for s in ss.spans {
                    *into.entry(s.trace_id).or_default().entry(idx).or_default() += 1;
                }
            }
        }
    }
}

/// Records `traces` traces of 10 spans from 4 threads.
fn record_traces(p: &Pipeline, seed: u64, traces: u64) {
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let p = p.clone();
            std::thread::spawn(move || {
                let scope = p.scope("fleet", "1");
                for n in (t..traces).step_by(4) {
                    for s in 0..10u64 {
                        // Span `n * 10 + s` of seed `seed`: the workload
                        // gives spans of the same thousand one trace id,
                        // so use a trace id per n instead.
                        workload::with_benchmark_span(seed, n * 10 + s, 1, |span| {
                            let mut span = *span;
                            span.trace_id = workload::trace_id(seed ^ 0x5EED, n * 1000);
                            p.record_span(&scope, &span).unwrap();
                        });
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

fn check_affinity(
    got: &HashMap<Vec<u8>, HashMap<usize, u64>>,
    ring: &ExpectedRing,
    traces: u64,
) -> Vec<u64> {
    assert_eq!(got.len() as u64, traces, "every trace arrived");
    let mut per = vec![0u64; 4];
    for (id, at) in got {
        let want = ring.of(id);
        assert_eq!(at.len(), 1, "trace {id:02x?} split across {at:?}");
        assert_eq!(
            at.get(&want),
            Some(&10),
            "trace {id:02x?} at {at:?}, ring says {want}"
        );
        per[want] += 1;
    }
    per
}

fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

#[test]
fn every_trace_arrives_whole_at_the_receiver_the_ring_names() {
    let sinks: Vec<Sink> = (0..3).map(|_| sink_at(free_addr())).collect();
    let keys: Vec<String> = sinks.iter().map(|s| s.addr().to_string()).collect();
    let p = Pipeline::builder()
        .endpoints(sinks.iter().map(|s| s.endpoint()))
        .prometheus("127.0.0.1:0".parse().unwrap())
        .policy(Policy::Block {
            max_wait: Duration::from_secs(30),
        })
        .start()
        .unwrap();
    record_traces(&p, 1, 10_000);
    let stats = p.shutdown(Duration::from_secs(30)).unwrap();
    assert_eq!((stats.exported, stats.dropped.total()), (100_000, 0));
    let mut got = HashMap::new();
    for (i, s) in sinks.iter().enumerate() {
        collect(&mut got, s, i);
    }
    let per = check_affinity(&got, &ExpectedRing::new(&keys), 10_000);
    // Each receiver has a fair share (the ring's arcs are uneven, not that
    // uneven).
    assert!(per[..3].iter().all(|n| *n > 1_500), "{per:?}");
    let by_endpoint = p.endpoint_stats();
    for (i, key) in keys.iter().enumerate() {
        let e = by_endpoint
            .iter()
            .find(|e| e.signal == Signal::Traces && &e.endpoint == key)
            .unwrap();
        assert_eq!(e.exported, per[i] * 10, "{e:?}");
    }
    // The same per endpoint on the Prometheus endpoint.
    let text = support::scrape(p.prometheus_addr().unwrap());
    for (i, key) in keys.iter().enumerate() {
        let line = format!(
            "otlpflow_endpoint_records_exported_total{{signal=\"traces\",endpoint=\"{key}\"}} {}",
            per[i] * 10
        );
        assert!(text.contains(&line), "{line} not in:\n{text}");
    }
}

#[test]
fn a_receiver_down_for_five_seconds_loses_nothing_and_keeps_affinity() {
    let addrs: Vec<SocketAddr> = (0..3).map(|_| free_addr()).collect();
    let mut sinks: Vec<Option<Sink>> = addrs.iter().map(|a| Some(sink_at(*a))).collect();
    let keys: Vec<String> = addrs.iter().map(|a| a.to_string()).collect();
    let p = Pipeline::builder()
        .endpoints(addrs.iter().map(|a| format!("http://{a}")))
        .policy(Policy::Block {
            max_wait: Duration::from_secs(60),
        })
        .start()
        .unwrap();
    let mut got = HashMap::new();
    // Receiver 1 goes away; what it had is kept.
    let down = std::time::Instant::now();
    let gone = sinks[1].take().unwrap();
    collect(&mut got, &gone, 1);
    gone.stop();
    let producer = {
        let p = p.clone();
        std::thread::spawn(move || record_traces(&p, 2, 2_000))
    };
    std::thread::sleep(Duration::from_secs(5).saturating_sub(down.elapsed()));
    sinks[1] = Some(sink_at(addrs[1]));
    producer.join().unwrap();
    let stats = p.flush(Duration::from_secs(60)).unwrap();
    assert_eq!(
        (stats.exported, stats.dropped.total(), stats.failed.total()),
        (20_000, 0, 0)
    );
    for (i, s) in sinks.iter().enumerate() {
        collect(&mut got, s.as_ref().unwrap(), i);
    }
    check_affinity(&got, &ExpectedRing::new(&keys), 2_000);
    // Receiver 1 was tried while it was down; the others never failed.
    let errors: Vec<u64> = keys
        .iter()
        .map(|k| {
            p.endpoint_stats()
                .into_iter()
                .find(|e| e.signal == Signal::Traces && &e.endpoint == k)
                .unwrap()
                .request_errors
        })
        .collect();
    assert!(
        errors[1] > 0 && errors[0] == 0 && errors[2] == 0,
        "{errors:?}"
    );
    p.shutdown(Duration::from_secs(10)).unwrap();
}

#[test]
fn with_failover_a_downed_receivers_traces_go_to_the_next_on_the_ring() {
    let addrs: Vec<SocketAddr> = (0..3).map(|_| free_addr()).collect();
    let mut sinks: Vec<Option<Sink>> = addrs.iter().map(|a| Some(sink_at(*a))).collect();
    let keys: Vec<String> = addrs.iter().map(|a| a.to_string()).collect();
    let ring = ExpectedRing::new(&keys);
    let p = Pipeline::builder()
        .endpoints(addrs.iter().map(|a| format!("http://{a}")))
        .failover(true)
        .linger(Duration::from_millis(5))
        .policy(Policy::Block {
            max_wait: Duration::from_secs(60),
        })
        .start()
        .unwrap();
    let down_at = std::time::Instant::now();
    sinks[1].take().unwrap().stop();
    // 2,000 traces over about 2 s, from one thread: most of them after
    // receiver 1's breaker has opened.
    let scope = p.scope("fleet", "1");
    for n in 0..2_000u64 {
        for s in 0..10u64 {
            workload::with_benchmark_span(3, n * 10 + s, 1, |span| {
                let mut span = *span;
                span.trace_id = workload::trace_id(3 ^ 0x5EED, n * 1000);
                p.record_span(&scope, &span).unwrap();
            });
        }
        if n % 100 == 99 {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    // The others kept receiving while receiver 1 was down.
    let during: Vec<u64> = [0, 2]
        .iter()
        .map(|i| sinks[*i].as_ref().unwrap().counts().spans)
        .collect();
    assert!(during.iter().all(|n| *n > 0), "{during:?}");
    std::thread::sleep(Duration::from_secs(5).saturating_sub(down_at.elapsed()));
    sinks[1] = Some(sink_at(addrs[1]));
    let stats = p.flush(Duration::from_secs(60)).unwrap();
    assert_eq!(
        (stats.exported, stats.dropped.total(), stats.failed.total()),
        (20_000, 0, 0)
    );
    let mut got = HashMap::new();
    for (i, s) in sinks.iter().enumerate() {
        collect(&mut got, s.as_ref().unwrap(), i);
    }
    assert_eq!(got.len(), 2_000);
    let (mut rerouted, mut waited) = (0, 0);
    for (id, at) in &got {
        assert_eq!(at.values().sum::<u64>(), 10, "trace {id:02x?}: {at:?}");
        let home = ring.of(id);
        if home != 1 {
            // Traces of the receivers that stayed up never moved.
            assert_eq!(at.get(&home), Some(&10), "trace {id:02x?} at {at:?}");
            continue;
        }
        // Receiver 1's traces: sent on before its breaker opened (they
        // waited for it), or to the next endpoint on the ring.
        let next = ring.of_without(id, 1);
        for r in at.keys() {
            assert!(
                *r == 1 || *r == next,
                "trace {id:02x?} at {at:?}, next {next}"
            );
        }
        if at.contains_key(&next) {
            rerouted += 1;
        } else {
            waited += 1;
        }
    }
    eprintln!("failover: {rerouted} traces rerouted, {waited} waited for their receiver");
    assert!(rerouted > 100, "rerouted {rerouted}, waited {waited}");
    p.shutdown(Duration::from_secs(10)).unwrap();
}

/// Records traces `from..to` (10 spans each) from this thread.
fn record_range(p: &Pipeline, seed: u64, from: u64, to: u64) {
    let scope = p.scope("fleet", "1");
    for n in from..to {
        for s in 0..10u64 {
            workload::with_benchmark_span(seed, n * 10 + s, 1, |span| {
                let mut span = *span;
                span.trace_id = workload::trace_id(seed ^ 0x5EED, n * 1000);
                p.record_span(&scope, &span).unwrap();
            });
        }
    }
}

#[test]
fn a_fourth_endpoint_moves_about_a_quarter_of_the_traces() {
    // On the ring itself, with fixed keys: 10,000 trace ids.
    let three: Vec<String> = (1..=3).map(|i| format!("10.0.0.{i}:4317")).collect();
    let four: Vec<String> = (1..=4).map(|i| format!("10.0.0.{i}:4317")).collect();
    let (r3, r4) = (ExpectedRing::new(&three), ExpectedRing::new(&four));
    let moved = (0..10_000u64)
        .map(|n| workload::trace_id(77, n * 1000))
        .filter(|id| r3.of(id) != r4.of(id))
        .count();
    eprintln!("a fourth endpoint moved {moved} of 10000 traces");
    assert!((2_000..=3_000).contains(&moved), "moved {moved} of 10000");
    // Every trace that moved went to the new endpoint.
    assert!((0..10_000u64)
        .map(|n| workload::trace_id(77, n * 1000))
        .filter(|id| r3.of(id) != r4.of(id))
        .all(|id| r4.of(&id) == 3));

    // And live: a fourth receiver added to a running pipeline.
    let sinks: Vec<Sink> = (0..4).map(|_| sink_at(free_addr())).collect();
    let keys: Vec<String> = sinks.iter().map(|s| s.addr().to_string()).collect();
    let urls: Vec<String> = sinks.iter().map(|s| s.endpoint()).collect();
    let p = Pipeline::builder().endpoints(&urls[..3]).start().unwrap();
    record_range(&p, 4, 0, 1_000);
    p.flush(Duration::from_secs(30)).unwrap();
    let mut before = HashMap::new();
    for (i, s) in sinks.iter().enumerate() {
        collect(&mut before, s, i);
    }
    check_affinity(&before, &ExpectedRing::new(&keys[..3]), 1_000);
    assert!(p.set_endpoints(Signal::Traces, &urls).unwrap());
    assert!(
        !p.set_endpoints(Signal::Traces, &urls).unwrap(),
        "the same set again"
    );
    assert_eq!(p.endpoints(Signal::Traces), keys);
    p.flush(Duration::from_secs(30)).unwrap();
    record_range(&p, 4, 1_000, 3_000);
    let stats = p.shutdown(Duration::from_secs(30)).unwrap();
    assert_eq!((stats.exported, stats.failed.total()), (30_000, 0));
    let mut after = HashMap::new();
    for (i, s) in sinks.iter().enumerate() {
        collect(&mut after, s, i);
    }
    let ring4 = ExpectedRing::new(&keys);
    let per = check_affinity(&after, &ring4, 2_000);
    let ring3 = ExpectedRing::new(&keys[..3]);
    let moved = after
        .keys()
        .filter(|id| ring3.of(id) != ring4.of(id))
        .count() as u64;
    // Exactly the traces the new ring gives the new receiver moved.
    assert_eq!(moved, per[3]);
    assert!(moved > 0);
}

#[test]
fn a_dns_name_is_resolved_again_and_its_new_address_gets_traces() {
    use std::net::IpAddr;
    use std::sync::{Arc, Mutex};
    // Three receivers on the same port of 127.0.0.1, .2 and .3.
    let port = free_addr().port();
    let ips: Vec<IpAddr> = (1..=3)
        .map(|i| format!("127.0.0.{i}").parse().unwrap())
        .collect();
    let sinks: Vec<Sink> = ips
        .iter()
        .map(|ip| sink_at(SocketAddr::new(*ip, port)))
        .collect();
    let keys: Vec<String> = sinks.iter().map(|s| s.addr().to_string()).collect();
    // The name answers with two addresses (in any order), then three.
    let answer = Arc::new(Mutex::new(vec![ips[1], ips[0]]));
    let resolver = {
        let answer = answer.clone();
        otlpflow::Resolver::new(move |host| {
            assert_eq!(host, "fleet.test");
            Ok(answer.lock().unwrap().clone())
        })
    };
    let p = Pipeline::builder()
        .resolver(resolver)
        .endpoints_dns(
            format!("http://fleet.test:{port}"),
            Duration::from_millis(100),
        )
        .start()
        .unwrap();
    assert_eq!(p.endpoints(Signal::Traces), keys[..2]);
    record_range(&p, 5, 0, 1_000);
    p.flush(Duration::from_secs(30)).unwrap();
    let mut first = HashMap::new();
    for (i, s) in sinks.iter().enumerate() {
        collect(&mut first, s, i);
    }
    check_affinity(&first, &ExpectedRing::new(&keys[..2]), 1_000);

    answer.lock().unwrap().push(ips[2]);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while p.endpoints(Signal::Traces).len() < 3 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(p.endpoints(Signal::Traces), keys);
    p.flush(Duration::from_secs(30)).unwrap();
    record_range(&p, 5, 1_000, 2_000);
    p.flush(Duration::from_secs(30)).unwrap();
    let mut second = HashMap::new();
    for (i, s) in sinks.iter().enumerate() {
        collect(&mut second, s, i);
    }
    let per = check_affinity(&second, &ExpectedRing::new(&keys), 1_000);
    assert!(per[2] > 0, "{per:?}");
    // A name that stops resolving keeps the endpoints it had.
    answer.lock().unwrap().clear();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(p.endpoints(Signal::Traces), keys);
    assert!(p.last_error().unwrap_or_default().contains("fleet.test"));
    p.shutdown(Duration::from_secs(10)).unwrap();
}

/// A fleet whose addresses churn (pods replaced at every deploy, a DNS
/// name answering with new addresses) gave each address it ever had a lane
/// of its own, with an exporter, a compressor and counters in every worker,
/// for the life of the pipeline. Now a new address takes the lane of one
/// that left the set before, and the table stays as large as the sets. The
/// lane a departed endpoint leaves behind sends to the endpoint that takes
/// it.
#[test]
fn endpoints_that_churn_reuse_the_lanes_of_those_that_left() {
    let (a, b) = (sink_at(free_addr()), sink_at(free_addr()));
    let p = Pipeline::builder()
        .endpoints([a.endpoint()])
        .compression(otlpflow::Compression::Zstd)
        .policy(Policy::Block {
            max_wait: Duration::from_secs(30),
        })
        .start()
        .unwrap();
    let traces = |p: &Pipeline| {
        p.endpoint_stats()
            .into_iter()
            .filter(|e| e.signal == Signal::Traces)
            .count()
    };
    assert_eq!(traces(&p), 1);
    // 200 deploys, each replacing the second endpoint by a new address (on
    // loopback, where nothing listens; no record is routed meanwhile).
    let port = free_addr().port();
    for i in 0..200 {
        let gone = format!("http://127.0.{}.{}:{port}", 2 + i / 250, 1 + i % 250);
        assert!(p
            .set_endpoints(Signal::Traces, &[a.endpoint(), gone])
            .unwrap());
    }
    // The first endpoint, the current second one, and the one it replaced.
    assert_eq!(traces(&p), 3, "{:?}", p.endpoint_stats());
    // The last set: both real receivers; every span arrives, each trace at
    // the receiver the ring names, and the reused lane counts B's own.
    assert!(p
        .set_endpoints(Signal::Traces, &[a.endpoint(), b.endpoint()])
        .unwrap());
    assert_eq!(traces(&p), 3);
    // At most 256 endpoints at once, also while running.
    let many: Vec<String> = (0..257)
        .map(|i| format!("http://10.1.{}.{}:4317", i / 200, i % 200))
        .collect();
    let e = p.set_endpoints(Signal::Traces, &many).unwrap_err();
    assert!(e.to_string().contains("257 endpoints"), "{e}");
    record_range(&p, 9, 0, 500);
    let stats = p.shutdown(Duration::from_secs(30)).unwrap();
    assert_eq!(
        (stats.exported, stats.failed.total()),
        (5_000, 0),
        "{stats:?}"
    );
    let mut got = HashMap::new();
    collect(&mut got, &a, 0);
    collect(&mut got, &b, 1);
    let keys = [a.addr().to_string(), b.addr().to_string()];
    let per = check_affinity(&got, &ExpectedRing::new(&keys), 500);
    let at_b = p
        .endpoint_stats()
        .into_iter()
        .find(|e| e.endpoint == keys[1])
        .unwrap();
    assert_eq!((at_b.exported, at_b.failed), (per[1] * 10, 0));
}

/// A DNS name with more addresses than a fleet may have (a headless
/// service in front of 300 collector pods): the pipeline starts and routes
/// across the first 256 addresses in order, and says so in `last_error`,
/// where it used to refuse to start.
#[test]
fn a_dns_name_with_more_addresses_than_a_fleet_takes_the_first_256() {
    let ips: Vec<std::net::IpAddr> = (0..300u32)
        .map(|i| std::net::Ipv4Addr::from(0x0a00_0000 + i).into())
        .collect();
    let resolver = otlpflow::Resolver::new(move |_| Ok(ips.clone()));
    let p = Pipeline::builder()
        .resolver(resolver)
        .endpoints_dns("http://big.fleet.test:4317", Duration::from_millis(50))
        .start()
        .unwrap();
    let endpoints = p.endpoints(Signal::Traces);
    assert_eq!(endpoints.len(), 256);
    assert_eq!(endpoints[0], "10.0.0.0:4317");
    assert_eq!(endpoints[255], "10.0.0.255:4317");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut error = String::new();
    while std::time::Instant::now() < deadline && !error.contains("300 addresses") {
        std::thread::sleep(Duration::from_millis(20));
        error = p.last_error().unwrap_or_default();
    }
    assert!(
        error.contains("\"big.fleet.test\" has 300 addresses; the first 256 are used"),
        "{error}"
    );
    assert_eq!(p.endpoints(Signal::Traces).len(), 256);
    p.shutdown(Duration::from_secs(5)).unwrap();
}
