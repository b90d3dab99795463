//! The builder's setters: each one records a setting; nothing is checked
//! until `build` (see `validate`).

use std::time::Duration;

use super::*;

impl PipelineBuilder {
    /// The OTLP/gRPC endpoint, e.g. `http://localhost:4317`.
    /// Adds a header sent with every export request (e.g. an API key).
    /// Values are never logged.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.0.push((name.into(), value.into()));
        self
    }

    /// The receiver's base endpoint, e.g. `http://localhost:4317` (gRPC) or
    /// `http://localhost:4318` (OTLP/HTTP, which appends `/v1/traces`). The
    /// default follows the protocol.
    pub fn endpoint(mut self, url: impl Into<String>) -> Self {
        self.endpoint = Some(UrlText(url.into()));
        self
    }

    /// Several receivers (a collector fleet), as base endpoints like
    /// `endpoint`'s: each signal's records are spread over them by its
    /// [`Routing`] (by trace id for spans, so that each trace reaches one
    /// collector whole). Wins over `endpoint`.
    pub fn endpoints<S: Into<String>>(mut self, urls: impl IntoIterator<Item = S>) -> Self {
        self.endpoints = Some(urls.into_iter().map(|u| UrlText(u.into())).collect());
        self
    }

    /// One DNS name standing for a fleet (a headless service, say): the
    /// base URL's host is resolved to all its addresses, each address
    /// (with the URL's port) is an endpoint, routed as with `endpoints`,
    /// and the name is resolved again every `interval`: addresses that
    /// appear get endpoints, those that go stop being routed to. For the
    /// signals without endpoints of their own; wins over `endpoints`.
    pub fn endpoints_dns(mut self, url: impl Into<String>, interval: Duration) -> Self {
        self.dns = Some((UrlText(url.into()), interval));
        self
    }

    /// Spools export requests to disk in `dir`, up to `max_bytes`, while
    /// their endpoint does not answer (its circuit breaker is open), and
    /// replays them oldest first once it does; a pipeline started on the
    /// same directory replays what an earlier process left there. Full, the
    /// oldest segment is dropped (counted).
    pub fn spool(mut self, dir: impl Into<std::path::PathBuf>, max_bytes: u64) -> Self {
        self.spool = Some((dir.into(), max_bytes));
        self
    }

    /// When the spool syncs to disk (default: per segment).
    pub fn spool_sync(mut self, sync: SpoolSync) -> Self {
        self.spool_sync = sync;
        self
    }

    /// What a full spool does (default: drop its oldest segment).
    pub fn spool_full(mut self, full: SpoolFull) -> Self {
        self.spool_full = full;
        self
    }

    /// The resolver `endpoints_dns` uses (default: the system's).
    pub fn resolver(mut self, resolver: Resolver) -> Self {
        self.resolver = Some(resolver);
        self
    }

    /// Several endpoints for `signal` only, used as they are (see
    /// `traces_endpoint`). Wins over `endpoints` and the signal's own
    /// endpoint.
    pub fn signal_endpoints<S: Into<String>>(
        mut self,
        signal: Signal,
        urls: impl IntoIterator<Item = S>,
    ) -> Self {
        self.signals[signal].endpoints =
            Some(urls.into_iter().map(|u| UrlText(u.into())).collect());
        self
    }

    /// How `signal`'s records are spread over several endpoints (default:
    /// by trace id for traces and logs, round robin for metrics).
    pub fn routing(mut self, signal: Signal, routing: Routing) -> Self {
        self.signals[signal].routing = Some(routing);
        self
    }

    /// The traces endpoint, used as it is (OTLP/HTTP: the full URL with its
    /// path). Wins over `endpoint`.
    pub fn traces_endpoint(mut self, url: impl Into<String>) -> Self {
        self.signals[Signal::Traces].endpoint = Some(UrlText(url.into()));
        self
    }

    /// The logs endpoint, used as it is (see `traces_endpoint`).
    pub fn logs_endpoint(mut self, url: impl Into<String>) -> Self {
        self.signals[Signal::Logs].endpoint = Some(UrlText(url.into()));
        self
    }

    /// The metrics endpoint, used as it is (see `traces_endpoint`).
    pub fn metrics_endpoint(mut self, url: impl Into<String>) -> Self {
        self.signals[Signal::Metrics].endpoint = Some(UrlText(url.into()));
        self
    }

    /// A header sent with `signal`'s requests only (after the general ones).
    pub fn signal_header(
        mut self,
        signal: Signal,
        name: impl Into<String>,
        value: impl Into<String>,
    ) -> Self {
        self.signals[signal]
            .headers
            .0
            .push((name.into(), value.into()));
        self
    }

    /// One signal's protocol, overriding [`PipelineBuilder::protocol`]
    /// (logs over OTLP/HTTP while traces go over gRPC, say; the
    /// `OTEL_EXPORTER_OTLP_<SIGNAL>_PROTOCOL` variables set it too).
    pub fn signal_protocol(mut self, signal: Signal, p: Protocol) -> Self {
        self.signals[signal].protocol = Some(p);
        self
    }

    /// `signal`'s compression, instead of the general one.
    pub fn signal_compression(mut self, signal: Signal, c: Compression) -> Self {
        self.signals[signal].compression = Some(c);
        self
    }

    /// `signal`'s request timeout, instead of the general one.
    pub fn signal_timeout(mut self, signal: Signal, d: Duration) -> Self {
        self.signals[signal].timeout = Some(d);
        self
    }

    /// How often the instruments (`Pipeline::counter` and the others) are
    /// collected and exported (default 60 s, as the OpenTelemetry SDK's
    /// periodic reader); `flush` and `shutdown` collect too.
    pub fn metrics_interval(mut self, d: Duration) -> Self {
        self.metrics_interval = d;
        self
    }

    /// Temporality of the instruments' counters and histograms (default
    /// cumulative). Under `Delta` an up-down counter stays cumulative, as
    /// the OpenTelemetry SDKs map a delta preference (its level would be
    /// lost for good with one lost delta). The environment's
    /// `OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE` sets it.
    pub fn metrics_temporality(mut self, t: crate::record::Temporality) -> Self {
        self.temporality = t;
        self
    }

    /// Exports otlpflow's own counters (records processed and exported per
    /// signal, drops and failures by reason, in flight, concurrency, latency
    /// p99, ring fill, memory) as OTLP metrics through the pipeline itself,
    /// every `metrics_interval`, under the scope `otlpflow`. Off by default.
    /// These points are records like any other: they count in the stats.
    pub fn self_metrics(mut self, on: bool) -> Self {
        self.self_metrics = on;
        self
    }

    /// Distinct attribute sets per instrument before further ones go to the
    /// overflow series (`otel.metric.overflow = true`; default 2000, as the
    /// OpenTelemetry SDK).
    pub fn cardinality_limit(mut self, n: usize) -> Self {
        self.cardinality_limit = n;
        self
    }

    /// Distinct instrumentation scopes before further new ones are recorded
    /// under the shared `otlpflow.overflow` scope (default 4096; counted in
    /// `Stats::scopes_overflowed`). Each scope is held for the pipeline's
    /// life, so a host naming scopes per tenant or request needs the bound.
    /// otlpflow's own scope (`otlpflow`, its self-metrics') is not counted.
    pub fn max_scopes(mut self, n: usize) -> Self {
        self.max_scopes = n;
        self
    }

    /// Trusts the CA certificates in this PEM file instead of the system's
    /// (for `https://` endpoints).
    pub fn tls_ca_file(mut self, path: impl Into<std::path::PathBuf>) -> Self {
        self.tls.ca_file = Some(path.into());
        self
    }

    /// Presents this client certificate chain and key (PEM files) for
    /// mutual TLS.
    pub fn tls_client_cert(
        mut self,
        cert: impl Into<std::path::PathBuf>,
        key: impl Into<std::path::PathBuf>,
    ) -> Self {
        self.tls.client_cert = Some((cert.into(), key.into()));
        self
    }

    /// Skips server certificate verification. Logs a warning; for tests and
    /// emergencies only.
    pub fn tls_insecure_skip_verify(mut self, skip: bool) -> Self {
        self.tls.insecure_skip_verify = skip;
        self
    }

    /// The HTTP version of OTLP/HTTP (default HTTP/1.1).
    pub fn http_version(mut self, v: HttpVersion) -> Self {
        self.http_version = v;
        self
    }
    /// The wire protocol.
    pub fn protocol(mut self, p: Protocol) -> Self {
        self.protocol = p;
        self
    }
    /// Compression of request bodies.
    pub fn compression(mut self, c: Compression) -> Self {
        self.compression = c;
        self
    }
    /// Compression level: zstd -7..=19 (below 1, zstd's fast levels), gzip
    /// 0..=9. Default 1, the cheapest level that compresses as well as
    /// level 3 on varied traffic (BENCHMARKS.md, "Compression levels").
    pub fn compression_level(mut self, level: i32) -> Self {
        self.compression_level = level;
        self
    }
    /// The `service.name` resource attribute.
    pub fn service_name(mut self, name: impl Into<String>) -> Self {
        self.service_name = Some(name.into());
        self.resource_set = true;
        self
    }
    /// The `service.version` resource attribute.
    pub fn service_version(mut self, version: impl Into<String>) -> Self {
        self.service_version = Some(version.into());
        self.resource_set = true;
        self
    }
    /// Adds a resource attribute.
    pub fn resource_attribute(
        mut self,
        key: impl Into<String>,
        value: impl Into<OwnedValue>,
    ) -> Self {
        self.resource.push((key.into(), value.into()));
        self.resource_set = true;
        self
    }
    /// Number of shard rings (default: one per CPU).
    pub fn shards(mut self, n: usize) -> Self {
        self.shards = Some(n);
        self
    }
    /// Number of worker threads (default: one per CPU, at most one per shard).
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = Some(n);
        self
    }
    /// Size of each shard ring in bytes (a power of two, default 4 MiB).
    pub fn ring_bytes(mut self, n: usize) -> Self {
        self.ring_bytes = n;
        self
    }
    /// Whether a worker evicts the ring lines it has read from every cache
    /// (default false; x86-64 only, elsewhere nothing is evicted). On, it
    /// keeps the recording thread's time per record about the same wherever
    /// the host places the worker's core: without it, where the two cores
    /// share no cache, `record_span` through a template measured up to 2-3x
    /// slower. It costs the worker 5-50 ns a record where the cores share a
    /// cache, sends the ring's bytes through memory, and lowered the
    /// throughput of one producer flat out by 20-28% (BENCHMARKS.md,
    /// "Evicting what the worker read"): for hosts whose recording threads
    /// matter more than the worker's CPU.
    pub fn ring_eviction(mut self, on: bool) -> Self {
        self.ring_eviction = on;
        self
    }
    /// A batch closes at this many records. Unset, batches start at 512 and
    /// grow while most batches leave full (`max_batch_bytes` still
    /// applying): up to 16 times that while the path's round trip is 10 ms
    /// or more, and on a shorter path up to requests of about 224 KiB
    /// before compression and 64 KiB after (uncompressed, that is no
    /// growth); set, it is a fixed cap.
    pub fn max_batch_items(mut self, n: usize) -> Self {
        self.max_batch_items = n;
        self.batch_set = true;
        self
    }
    /// No export request is larger than this after compression (default
    /// 64 MiB): batches close before they would exceed it, and a single
    /// record that could not fit is refused as `TooLarge` (counted).
    pub fn max_request_bytes(mut self, n: usize) -> Self {
        self.max_request_bytes = n;
        self
    }
    /// Serves the stats in the Prometheus text format on `GET /metrics` at
    /// this address (off by default; port 0 picks one, see
    /// `Pipeline::prometheus_addr`).
    pub fn prometheus(mut self, addr: std::net::SocketAddr) -> Self {
        self.prometheus = Some(addr);
        self
    }
    /// Lets the batch size adapt between `min_items` and `max_batch_items` to
    /// hold the export round trip near `latency_target`: the target shrinks
    /// by a quarter while the smoothed latency is over twice the target and
    /// grows by a quarter while it is under half (the seed's rule), at most
    /// once every 4 acknowledged requests so that it does not oscillate.
    pub fn adaptive_batch(mut self, min_items: usize, latency_target: Duration) -> Self {
        self.adaptive_batch = Some((min_items, latency_target));
        self.batch_set = true;
        self
    }
    /// Admits at most `per_second` records per second at ingest, in bursts
    /// of up to `burst` (an atomic token bucket); over the limit, records
    /// are refused with `RateLimited` and counted.
    pub fn rate_limit(mut self, per_second: f64, burst: u64) -> Self {
        self.rate_limit = Some((per_second, burst));
        self
    }
    /// Admits at most `per_second` encoded bytes per second at ingest, in
    /// bursts of up to `burst` bytes.
    pub fn byte_rate_limit(mut self, per_second: f64, burst: u64) -> Self {
        self.byte_rate_limit = Some((per_second, burst));
        self
    }
    /// HTTP/2 connections each worker keeps to the endpoint, used in turn
    /// (default 1; each carries many streams).
    pub fn connections_per_worker(mut self, n: usize) -> Self {
        self.connections_per_worker = n;
        self
    }
    /// HTTP/2 PING interval; a connection whose PING goes unanswered is
    /// replaced (default 30 s, zero: never).
    pub fn keepalive(mut self, d: Duration) -> Self {
        self.keepalive = d;
        self
    }
    /// Close connections unused this long (default 90 s, zero: never).
    pub fn idle_timeout(mut self, d: Duration) -> Self {
        self.idle_timeout = d;
        self
    }
    /// A batch closes at this many encoded bytes (default 1 MiB).
    pub fn max_batch_bytes(mut self, n: usize) -> Self {
        self.max_batch_bytes = n;
        self
    }
    /// A non-empty batch closes after waiting this long (default 100 ms, half
    /// the OpenTelemetry Collector batcher's 200 ms: under load batches fill
    /// long before it; at a trickle, fewer and fuller requests cost far less
    /// CPU than 10 ms did, measured in BENCHMARKS.md).
    pub fn linger(mut self, d: Duration) -> Self {
        self.linger = d;
        self
    }
    /// A fixed number of requests in flight per worker. Unset (and without
    /// `adaptive_concurrency`), each worker's limit adapts (AIMD) between 4
    /// and a ceiling, growing past 4 only while the path's round trip without a queue is
    /// 10 ms or more, up to a ceiling that keeps requests in flight within seven eighths
    /// of the memory budget, or of 128 MiB without one, at
    /// `max_batch_bytes` each (4..=256); the rest is left to the rings and
    /// batches.
    pub fn max_in_flight(mut self, n: usize) -> Self {
        self.max_in_flight = n;
        self.concurrency_set = true;
        self
    }
    /// Timeout of one export request (default 10 s, as in OTLP).
    pub fn request_timeout(mut self, d: Duration) -> Self {
        self.request_timeout = d;
        self
    }
    /// What producers do when a ring is full (default `DropNewest`).
    pub fn policy(mut self, p: Policy) -> Self {
        self.policy = p;
        self
    }
    /// Retry settings.
    pub fn retry(mut self, r: RetryConfig) -> Self {
        self.retry = r;
        self
    }
    /// Admits at most `max` records per sliding `window` at ingest (a
    /// fixed-memory sliding window of 16 sub-windows); over it, records are
    /// refused with `RateLimited` and counted.
    pub fn window_limit(mut self, max: u64, window: Duration) -> Self {
        self.flow.window_limit = Some((max, window));
        self
    }
    /// Gives each scope its own ingest token bucket (records per second,
    /// burst), so that one noisy library cannot use up the pipeline: over
    /// it, that scope's records are refused with `RateLimited`. Scopes past
    /// the 256th share one bucket.
    pub fn scope_rate_limit(mut self, per_second: f64, burst: u64) -> Self {
        self.flow.scope_rate_limit = Some((per_second, burst));
        self
    }
    /// Caps each worker's CPU time at `fraction` of a core (0..=1) through
    /// the adaptive concurrency: a worker over it backs off as from a
    /// throttle, so that fewer requests carry the load (under `Block` the
    /// producers slow down; under `DropNewest` more is refused). A worker
    /// measures its CPU every 100 ms and grows its concurrency only once
    /// the first measurement is in. Needs `adaptive_concurrency`.
    pub fn worker_cpu_budget(mut self, fraction: f64) -> Self {
        self.flow.worker_cpu_budget = Some(fraction);
        self
    }
    /// Caps the bytes records may hold in the pipeline at once: in rings,
    /// in batches, in requests in flight or waiting to retry. A record that
    /// would pass it waits (`Policy::Block`) or is refused with `Memory`.
    pub fn memory_budget(mut self, bytes: u64) -> Self {
        self.flow.memory_budget = Some(bytes);
        self
    }
    /// Paces export to `per_second` bytes on the wire, with bursts of
    /// `burst` bytes: requests wait their turn, none is dropped.
    pub fn egress_byte_rate(mut self, per_second: f64, burst: u64) -> Self {
        self.flow.egress_byte_rate = Some((per_second, burst));
        self
    }
    /// Lets each worker find its number of requests in flight between `min`
    /// and `max` (AIMD on round-trip time and throttling, after Vector's
    /// adaptive request concurrency), instead of a fixed `max_in_flight`.
    pub fn adaptive_concurrency(mut self, min: usize, max: usize) -> Self {
        self.flow.adaptive_concurrency = Some((min, max));
        self.concurrency_set = true;
        self
    }
    /// The circuit breaker (default: opens after 5 attempts without an
    /// answer, probes after 100 ms, backing off to 5 s).
    pub fn circuit_breaker(mut self, b: BreakerConfig) -> Self {
        self.flow.breaker = b;
        self
    }
    /// Refuses new records (counted as `dropped.system_memory`), or makes
    /// producers wait under `Block`, while the system's memory use is over
    /// `fraction` (0.8: 80%): the process's cgroup v2 use against its
    /// limit when it has one, else the machine's (`/proc/meminfo`),
    /// sampled every 100 ms. Workers stop growing their concurrency and
    /// batches meanwhile, and `health()` says `Degraded`. Off by default.
    pub fn system_memory_limit(mut self, fraction: f64) -> Self {
        self.flow.system_memory_limit = Some(fraction);
        self
    }

    /// With several endpoints (`endpoints`): while an endpoint's circuit
    /// breaker is open, its records go to the next endpoint on the ring
    /// (trace affinity gives way to delivery), and back once the breaker
    /// lets a request through again. Off by default: records wait for
    /// their endpoint.
    pub fn failover(mut self, on: bool) -> Self {
        self.flow.failover = on;
        self
    }

    /// Where [`PipelineBuilder::system_memory_limit`] reads memory use
    /// (tests point it at files they write; the default is the system's).
    pub fn system_memory_source(mut self, source: crate::flow::MemorySource) -> Self {
        self.system_memory_source = source;
        self
    }

    /// What happens to requests waiting for a retry when newer data needs
    /// room (default `Keep`).
    pub fn retry_queue(mut self, q: RetryQueue) -> Self {
        self.flow.retry_queue = q;
        self
    }
}
