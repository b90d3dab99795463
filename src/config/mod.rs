//! Configuration, the layer below everything that runs: plain data, the
//! builder's setters (`builder`), the OpenTelemetry environment variables
//! (`env`), and validation (`validate`), so that starting a pipeline either
//! runs or fails with a clear error naming the bad setting. Nothing here
//! builds a TLS client or starts a thread: the exporter and the engine do,
//! from a validated [`Config`].

mod builder;
mod dns;
mod endpoint;
mod env;
mod named;
mod size;
mod text;
mod validate;

use std::time::Duration;

use crate::error::Error;
use crate::record::{OwnedValue, PerSignal};

pub use crate::record::Signal;
pub(crate) use dns::DnsEndpoints;
pub use dns::Resolver;
pub use endpoint::Endpoint;
pub(crate) use endpoint::UrlText;
pub use named::SETTINGS;
pub use size::parse_bytes;
pub use text::parse_duration;
pub(crate) use validate::{base_target, MAX_ENDPOINTS};

/// When the disk spool syncs what it wrote to the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SpoolSync {
    /// When a segment is sealed (at its size, when replay takes it, at
    /// close): a machine crash can lose the open segment's tail.
    #[default]
    Segment,
    /// Also at most this long after a write.
    Every(Duration),
    /// Never explicitly (the kernel writes back in its own time).
    Never,
}

/// What a full disk spool does with one more request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SpoolFull {
    /// Drops its oldest segment (counted `spool.dropped_full`).
    #[default]
    DropOldest,
    /// Refuses it: the request stays in memory, and once memory is full
    /// new records wait or are refused by the ingest policy.
    Refuse,
}

/// How a signal's records are spread over several endpoints (see
/// `PipelineBuilder::endpoints`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Routing {
    /// By trace id on a consistent-hash ring, the one the OpenTelemetry
    /// Collector's `loadbalancing` exporter uses: all spans of a trace go to
    /// the same endpoint. Records without a trace id go round robin. The
    /// default for traces and logs.
    TraceId,
    /// By the resource's `service.name` on the same ring: everything this
    /// pipeline sends of the signal goes to one endpoint.
    Service,
    /// Batches in turn to each endpoint. The default for metrics.
    RoundRobin,
}

impl Routing {
    /// Parses `trace_id`, `service` or `round_robin`.
    pub fn parse(s: &str) -> Result<Routing, Error> {
        match s.trim() {
            "trace_id" | "traceID" => Ok(Routing::TraceId),
            "service" => Ok(Routing::Service),
            "round_robin" => Ok(Routing::RoundRobin),
            other => Err(Error::config(format!(
                "routing: {other:?} is not trace_id, service or round_robin"
            ))),
        }
    }
}

/// Wire protocol of the exporter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// OTLP/gRPC over HTTP/2 (default port 4317).
    Grpc,
    /// OTLP/HTTP with protobuf bodies (default port 4318), over HTTP/1.1 or
    /// HTTP/2 (see [`HttpVersion`]).
    HttpProtobuf,
}

impl Protocol {
    /// Parses the `OTEL_EXPORTER_OTLP_PROTOCOL` values `grpc` and
    /// `http/protobuf` (`http/json` is not supported).
    pub fn parse(s: &str) -> Result<Protocol, Error> {
        match s.trim() {
            "grpc" => Ok(Protocol::Grpc),
            "http/protobuf" => Ok(Protocol::HttpProtobuf),
            other => Err(Error::config(format!(
                "protocol {other:?} is not supported (use grpc or http/protobuf)"
            ))),
        }
    }
}

/// The HTTP version of OTLP/HTTP. HTTP/1.1 is the default because an
/// OpenTelemetry Collector refuses cleartext HTTP/2 on its HTTP port unless
/// configured to accept it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HttpVersion {
    /// HTTP/1.1 with keep-alive, one connection per request in flight.
    #[default]
    Http1,
    /// Cleartext HTTP/2 with prior knowledge (h2c).
    Http2,
}

/// Compression of request bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    /// None (the OTLP default).
    #[default]
    None,
    /// gzip (every OTLP receiver accepts it).
    Gzip,
    /// zstd (faster and smaller; not every receiver accepts it).
    Zstd,
}

impl Compression {
    /// Parses `none`, `gzip` or `zstd`.
    pub fn parse(s: &str) -> Result<Self, Error> {
        match s.trim().to_ascii_lowercase().as_str() {
            "none" | "" => Ok(Compression::None),
            "gzip" => Ok(Compression::Gzip),
            "zstd" => Ok(Compression::Zstd),
            other => Err(Error::config(format!(
                "compression: unknown value {other:?} (expected none, gzip or zstd)"
            ))),
        }
    }

    /// The compression a `grpc-encoding` or `Content-Encoding` token names
    /// (`identity`, `gzip`, `zstd`; ASCII case ignored, as RFC 9110 has it
    /// for content codings), or `None` for one this crate cannot decode.
    pub fn from_token(token: &str) -> Option<Self> {
        [
            ("identity", Compression::None),
            ("gzip", Compression::Gzip),
            ("zstd", Compression::Zstd),
        ]
        .into_iter()
        .find(|(name, _)| token.trim().eq_ignore_ascii_case(name))
        .map(|(_, c)| c)
    }

    /// The `grpc-encoding` / `Content-Encoding` token, if any.
    pub fn token(self) -> Option<&'static str> {
        match self {
            Compression::None => None,
            Compression::Gzip => Some("gzip"),
            Compression::Zstd => Some("zstd"),
        }
    }
}

/// What a producer does when its shard ring is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Refuse the record at once with [`crate::RecordError::Full`] (counted).
    /// The default: recording never blocks the host.
    DropNewest,
    /// Wait for space up to `max_wait`, parked (not spinning), then refuse.
    Block {
        /// The longest a producer waits for space.
        max_wait: Duration,
    },
}

/// Settings one signal may override (its own endpoint, headers added to
/// the general ones, protocol, compression, timeout).
#[derive(Debug, Clone, Default)]
pub(crate) struct SignalOverrides {
    pub(crate) endpoint: Option<UrlText>,
    /// Several endpoints to route between (wins over `endpoint`).
    pub(crate) endpoints: Option<Vec<UrlText>>,
    pub(crate) routing: Option<Routing>,
    pub(crate) protocol: Option<Protocol>,
    pub(crate) headers: HeaderList,
    pub(crate) compression: Option<Compression>,
    pub(crate) timeout: Option<Duration>,
}

/// What happens to requests waiting for a retry when newer data needs
/// their place (no request slot free, or the memory budget exhausted).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RetryQueue {
    /// They keep their place until they succeed or their retry time runs
    /// out; newer data waits (or is refused by the ingest policy).
    #[default]
    Keep,
    /// The oldest waiting request is dropped to make room, counted as
    /// `failed_evicted`: fresh telemetry wins over stale.
    DropOldest,
}

/// The circuit breaker of each worker's endpoint (see `flow::breaker`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Consecutive attempts without an answer that open it.
    pub threshold: u32,
    /// The first open period; each failed probe doubles it.
    pub min_open: Duration,
    /// The longest open period.
    pub max_open: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            threshold: 5,
            min_open: Duration::from_millis(100),
            max_open: Duration::from_secs(5),
        }
    }
}

/// Flow-control settings beyond the ring and the policy.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct FlowConfig {
    /// Bytes that records may hold in the pipeline at once (rings, batches,
    /// requests in flight or waiting to retry). `None`: bounded by the rings
    /// and `max_in_flight` only.
    pub memory_budget: Option<u64>,
    /// Egress pacing: bytes per second on the wire, burst in bytes.
    pub egress_byte_rate: Option<(f64, u64)>,
    /// Adaptive request concurrency per worker within `(min, max)`;
    /// `None`: a fixed `max_in_flight`.
    pub adaptive_concurrency: Option<(usize, usize)>,
    /// The circuit breaker.
    pub breaker: BreakerConfig,
    /// Requests waiting for retry when newer data needs room.
    pub retry_queue: RetryQueue,
    /// Ingest: at most this many records per sliding window.
    pub window_limit: Option<(u64, Duration)>,
    /// Ingest: records per second and burst for each scope on its own.
    pub scope_rate_limit: Option<(f64, u64)>,
    /// Each worker's CPU budget as a fraction of one core: over it, the
    /// adaptive concurrency backs off as from a throttle.
    pub worker_cpu_budget: Option<f64>,
    /// Refuse new records (or make producers wait, under `Block`) while the
    /// system's memory use (the process's cgroup, else the machine) is over
    /// this fraction; workers stop growing concurrency and batches then.
    pub system_memory_limit: Option<f64>,
    /// With several endpoints: a record whose endpoint's circuit breaker is
    /// open goes to the next endpoint on the ring instead, and back once
    /// the breaker lets a request through again. Off: it waits for its
    /// endpoint (trace affinity kept).
    pub failover: bool,
}

impl Policy {
    /// Parses `drop`, `block` (waiting up to 5 s) or `block:MILLISECONDS`.
    pub fn parse(s: &str) -> Option<Policy> {
        let s = s.trim().to_ascii_lowercase();
        let max_wait = match s.split_once(':') {
            None if s == "drop" => return Some(Policy::DropNewest),
            None if s == "block" => Duration::from_secs(5),
            Some(("block", ms)) => Duration::from_millis(ms.trim().parse().ok()?),
            _ => return None,
        };
        Some(Policy::Block { max_wait })
    }
}

/// Retry of transient export failures: exponential backoff with jitter.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryConfig {
    /// The first delay.
    pub initial_backoff: Duration,
    /// The largest delay.
    pub max_backoff: Duration,
    /// Give up on a batch after this long in total.
    pub max_elapsed: Duration,
    /// Each delay is the previous one times this (at least 1).
    pub multiplier: f64,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(5),
            max_elapsed: Duration::from_secs(60),
            multiplier: 2.0,
        }
    }
}

/// A validated configuration: plain data, checked by
/// [`PipelineBuilder::build`]. The engine and the exporters read it; nothing
/// here opens a file or a socket.
#[derive(Debug, Clone)]
pub struct Config {
    /// The disk spool's directory and size bound.
    pub(crate) spool: Option<(std::path::PathBuf, u64)>,
    pub(crate) spool_sync: SpoolSync,
    pub(crate) spool_full: SpoolFull,
    /// Endpoints given as a DNS name, re-resolved on an interval.
    pub(crate) dns: Option<DnsEndpoints>,
    pub(crate) http_version: HttpVersion,
    pub(crate) resource: Vec<(String, OwnedValue)>,
    /// No service name, version or attribute was set but by the
    /// environment (the resource is the default `unknown_service:otlpflow`
    /// or the environment's, and a bridge may adopt its SDK's).
    pub(crate) resource_is_default: bool,
    pub(crate) shards: usize,
    pub(crate) workers: usize,
    pub(crate) ring_bytes: usize,
    pub(crate) ring_eviction: bool,
    pub(crate) max_batch_items: usize,
    pub(crate) max_batch_bytes: usize,
    pub(crate) max_request_bytes: usize,
    pub(crate) connections_per_worker: usize,
    pub(crate) rate_limit: Option<(f64, u64)>,
    pub(crate) adaptive_batch: Option<(usize, Duration)>,
    /// Batches may grow up to this many records while the round trip is
    /// long and batches leave full (the default when neither
    /// `max_batch_items` nor the adaptive batch was set).
    pub(crate) batch_growth: Option<usize>,
    /// Where the adaptive concurrency starts.
    pub(crate) aimd_start: usize,
    /// The adaptive concurrency is the automatic one (nothing was set): it
    /// grows past its start only over a long path.
    pub(crate) auto_concurrency: bool,
    pub(crate) prometheus: Option<std::net::SocketAddr>,
    pub(crate) byte_rate_limit: Option<(f64, u64)>,
    pub(crate) keepalive: Duration,
    pub(crate) idle_timeout: Duration,
    pub(crate) linger: Duration,
    pub(crate) max_in_flight: usize,
    pub(crate) policy: Policy,
    pub(crate) retry: RetryConfig,
    pub(crate) compression_level: i32,
    /// Certificates and verification for `https://` endpoints (the exporter
    /// builds its TLS client from them).
    pub(crate) tls: TlsSettings,
    pub(crate) flow: FlowConfig,
    /// Where system memory use is read from (tests point it at files).
    pub(crate) system_memory_source: crate::flow::MemorySource,
    /// Per signal: endpoint, path, compression, headers, timeout.
    pub(crate) signals: PerSignal<SignalConfig>,
    /// How often instruments are collected.
    pub(crate) metrics_interval: Duration,
    /// Temporality of instrument sums and histograms.
    pub(crate) temporality: crate::record::Temporality,
    /// Series per instrument before the overflow series.
    pub(crate) cardinality_limit: usize,
    /// Scopes before new ones share the overflow scope.
    pub(crate) max_scopes: usize,
    /// Export otlpflow's own metrics through itself.
    pub(crate) self_metrics: bool,
}

/// One signal's resolved export settings.
#[derive(Debug, Clone)]
pub(crate) struct SignalConfig {
    pub(crate) protocol: Protocol,
    /// Every endpoint with the request path of OTLP/HTTP (`/v1/<signal>`
    /// appended to a base endpoint, or a per-signal endpoint's path as
    /// given), in the order configured (the ring gives a contested position
    /// to the one listed first).
    pub(crate) targets: Vec<(Endpoint, String)>,
    pub(crate) routing: Routing,
    pub(crate) compression: Compression,
    pub(crate) headers: Headers,
    pub(crate) timeout: Duration,
}

/// Request headers added to every export (an API key, say). Their values
/// are never printed: `Debug` shows the names only.
#[derive(Clone, Default)]
pub struct Headers(pub(crate) Vec<(http::HeaderName, http::HeaderValue)>);

impl std::fmt::Debug for Headers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|(k, _)| format!("{k}: <redacted>")))
            .finish()
    }
}

#[cfg(test)]
impl SignalConfig {
    /// The first (or only) endpoint.
    pub(crate) fn endpoint(&self) -> &Endpoint {
        &self.targets[0].0
    }

    /// The first endpoint's OTLP/HTTP path.
    pub(crate) fn http_path(&self) -> &str {
        &self.targets[0].1
    }
}

impl Config {
    /// The most records a batch may take: `max_batch_items`, or more where
    /// batches grow by themselves.
    pub(crate) fn batch_cap(&self) -> usize {
        self.batch_growth.unwrap_or(self.max_batch_items)
    }

    /// The shortest request timeout of the three signals.
    pub(crate) fn min_timeout(&self) -> Duration {
        self.signals
            .values()
            .map(|s| s.timeout)
            .min()
            .unwrap_or_default()
    }
}

/// Headers as the user gave them, before validation. `Debug` shows the
/// names only: values are credentials more often than not.
#[derive(Clone, Default)]
pub(crate) struct HeaderList(pub(crate) Vec<(String, String)>);

impl std::fmt::Debug for HeaderList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|(k, _)| format!("{k}: <redacted>")))
            .finish()
    }
}

/// TLS settings, as configured: files are read, and the TLS client built,
/// when the pipeline starts.
#[derive(Debug, Clone, Default)]
pub struct TlsSettings {
    /// PEM file of the CA certificates to trust instead of the system's.
    pub ca_file: Option<std::path::PathBuf>,
    /// PEM files of the client certificate chain and its key (mutual TLS).
    pub client_cert: Option<(std::path::PathBuf, std::path::PathBuf)>,
    /// Skip server certificate verification (never do this in production).
    pub insecure_skip_verify: bool,
}

/// Builds a [`crate::Pipeline`]. All setters are synchronous and cheap;
/// `build` validates everything, `start` (in the engine) also starts the
/// worker threads.
#[derive(Debug, Clone)]
pub struct PipelineBuilder {
    endpoint: Option<UrlText>,
    endpoints: Option<Vec<UrlText>>,
    dns: Option<(UrlText, Duration)>,
    resolver: Option<Resolver>,
    spool: Option<(std::path::PathBuf, u64)>,
    spool_sync: SpoolSync,
    spool_full: SpoolFull,
    signals: PerSignal<SignalOverrides>,
    metrics_interval: Duration,
    temporality: crate::record::Temporality,
    cardinality_limit: usize,
    max_scopes: usize,
    self_metrics: bool,
    protocol: Protocol,
    http_version: HttpVersion,
    compression: Compression,
    service_name: Option<String>,
    service_version: Option<String>,
    resource: Vec<(String, OwnedValue)>,
    /// The resource was given by a setter (not only by the environment,
    /// whose variables an SDK's resource reads too): a bridge's SDK
    /// resource is then not adopted.
    resource_set: bool,
    shards: Option<usize>,
    workers: Option<usize>,
    ring_bytes: usize,
    ring_eviction: bool,
    max_batch_items: usize,
    max_batch_bytes: usize,
    max_request_bytes: usize,
    connections_per_worker: usize,
    rate_limit: Option<(f64, u64)>,
    adaptive_batch: Option<(usize, Duration)>,
    prometheus: Option<std::net::SocketAddr>,
    byte_rate_limit: Option<(f64, u64)>,
    keepalive: Duration,
    idle_timeout: Duration,
    linger: Duration,
    max_in_flight: usize,
    /// `max_in_flight` or adaptive concurrency was chosen: no automatic
    /// concurrency.
    concurrency_set: bool,
    /// `max_batch_items` or the adaptive batch was chosen: batches do not
    /// grow by themselves.
    batch_set: bool,
    request_timeout: Duration,
    policy: Policy,
    retry: RetryConfig,
    compression_level: i32,
    headers: HeaderList,
    tls: TlsSettings,
    flow: FlowConfig,
    system_memory_source: crate::flow::MemorySource,
}

impl Default for PipelineBuilder {
    fn default() -> Self {
        PipelineBuilder {
            endpoint: None,
            endpoints: None,
            dns: None,
            resolver: None,
            spool: None,
            spool_sync: SpoolSync::default(),
            spool_full: SpoolFull::default(),
            signals: Default::default(),
            metrics_interval: Duration::from_secs(60),
            temporality: crate::record::Temporality::Cumulative,
            cardinality_limit: 2000,
            max_scopes: 4096,
            self_metrics: false,
            protocol: Protocol::Grpc,
            http_version: HttpVersion::Http1,
            compression: Compression::None,
            service_name: None,
            service_version: None,
            resource: Vec::new(),
            resource_set: false,
            shards: None,
            workers: None,
            ring_bytes: 4 << 20,
            ring_eviction: false,
            max_batch_items: 512,
            max_batch_bytes: 1 << 20,
            max_request_bytes: 64 << 20,
            connections_per_worker: 1,
            rate_limit: None,
            adaptive_batch: None,
            prometheus: None,
            byte_rate_limit: None,
            keepalive: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(90),
            linger: Duration::from_millis(100),
            max_in_flight: 4,
            concurrency_set: false,
            batch_set: false,
            request_timeout: Duration::from_secs(10),
            policy: Policy::DropNewest,
            retry: RetryConfig::default(),
            compression_level: 1,
            headers: HeaderList::default(),
            tls: Default::default(),
            flow: FlowConfig::default(),
            system_memory_source: crate::flow::MemorySource::default(),
        }
    }
}
