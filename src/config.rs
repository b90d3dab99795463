//! Configuration: a synchronous builder, validated up front, so that
//! [`PipelineBuilder::start`] either returns a running pipeline or a clear
//! error naming the bad setting.

use std::time::Duration;

use crate::engine::Pipeline;
use crate::error::Error;
use crate::record::OwnedValue;

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

/// An OTLP signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Signal {
    /// Spans.
    Traces = 0,
    /// Log records.
    Logs = 1,
    /// Metric data points.
    Metrics = 2,
}

impl Signal {
    /// All three, in tag order.
    pub const ALL: [Signal; 3] = [Signal::Traces, Signal::Logs, Signal::Metrics];

    /// `traces`, `logs` or `metrics`: the OTLP/HTTP path's last part.
    pub fn name(self) -> &'static str {
        match self {
            Signal::Traces => "traces",
            Signal::Logs => "logs",
            Signal::Metrics => "metrics",
        }
    }

    /// The gRPC method.
    pub(crate) fn grpc_path(self) -> &'static str {
        match self {
            Signal::Traces => "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
            Signal::Logs => "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
            Signal::Metrics => "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
        }
    }

    fn env(self) -> &'static str {
        match self {
            Signal::Traces => "TRACES",
            Signal::Logs => "LOGS",
            Signal::Metrics => "METRICS",
        }
    }
}

/// Settings one signal may override (its own endpoint, headers added to
/// the general ones, compression, timeout).
#[derive(Debug, Clone, Default)]
struct SignalOverrides {
    endpoint: Option<String>,
    headers: Vec<(String, String)>,
    compression: Option<Compression>,
    timeout: Option<Duration>,
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
}

impl FlowConfig {
    fn validate(&self) -> Result<(), Error> {
        if let Some(b) = self.memory_budget {
            if b < 64 << 10 {
                return Err(Error::config("memory_budget: must be at least 64 KiB"));
            }
        }
        if let Some((rate, burst)) = self.egress_byte_rate {
            if !(rate > 0.0 && rate <= 1e12) || burst == 0 {
                return Err(Error::config(
                    "egress_byte_rate: the rate must be in (0, 1e12] bytes per second and the burst at least 1",
                ));
            }
        }
        if let Some((min, max)) = self.adaptive_concurrency {
            if min == 0 || min > max || max > 1024 {
                return Err(Error::config(
                    "adaptive_concurrency: need 1 <= min <= max <= 1024",
                ));
            }
        }
        if let Some((max, window)) = self.window_limit {
            if max == 0 || max >= u32::MAX as u64 || window < Duration::from_millis(1) {
                return Err(Error::config(
                    "window_limit: need 1 <= max < 2^32 records and a window of at least 1 ms",
                ));
            }
        }
        if let Some((rate, burst)) = self.scope_rate_limit {
            if !(rate > 0.0 && rate <= 1e9) || burst == 0 {
                return Err(Error::config(
                    "scope_rate_limit: the rate must be in (0, 1e9] per second and the burst at least 1",
                ));
            }
        }
        if let Some(f) = self.worker_cpu_budget {
            if !(f > 0.0 && f <= 1.0) || self.adaptive_concurrency.is_none() {
                return Err(Error::config(
                    "worker_cpu_budget: a fraction of a core in (0, 1], with adaptive_concurrency",
                ));
            }
        }
        let b = &self.breaker;
        if b.threshold == 0 || b.min_open.is_zero() || b.max_open < b.min_open {
            return Err(Error::config(
                "circuit_breaker: threshold >= 1 and 0 < min_open <= max_open",
            ));
        }
        Ok(())
    }
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

/// A validated configuration. Build one with [`Pipeline::builder`].
#[derive(Debug, Clone)]
pub struct Config {
    pub(crate) endpoint: Endpoint,
    pub(crate) protocol: Protocol,
    pub(crate) http_version: HttpVersion,
    /// The request path of OTLP/HTTP (`/v1/traces` appended to a base
    /// endpoint, or a per-signal endpoint's path as given).
    pub(crate) http_path: String,
    pub(crate) compression: Compression,
    pub(crate) resource: Vec<(String, OwnedValue)>,
    pub(crate) shards: usize,
    pub(crate) workers: usize,
    pub(crate) ring_bytes: usize,
    pub(crate) max_batch_items: usize,
    pub(crate) max_batch_bytes: usize,
    pub(crate) max_request_bytes: usize,
    pub(crate) connections_per_worker: usize,
    pub(crate) rate_limit: Option<(f64, u64)>,
    pub(crate) adaptive_batch: Option<(usize, Duration)>,
    pub(crate) prometheus: Option<std::net::SocketAddr>,
    pub(crate) byte_rate_limit: Option<(f64, u64)>,
    pub(crate) keepalive: Duration,
    pub(crate) idle_timeout: Duration,
    pub(crate) linger: Duration,
    pub(crate) max_in_flight: usize,
    pub(crate) request_timeout: Duration,
    pub(crate) policy: Policy,
    pub(crate) retry: RetryConfig,
    pub(crate) compression_level: i32,
    pub(crate) headers: Headers,
    /// TLS client configuration, for `https://` endpoints.
    pub(crate) tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    pub(crate) flow: FlowConfig,
    /// The signal this configuration exports (the top-level fields are the
    /// traces' settings; [`Config::for_signal`] gives the others).
    pub(crate) signal: Signal,
    /// Per signal: endpoint, path, compression, headers, timeout.
    pub(crate) signals: Vec<SignalConfig>,
    /// How often instruments are collected.
    pub(crate) metrics_interval: Duration,
    /// Temporality of instrument sums and histograms.
    pub(crate) temporality: crate::record::Temporality,
    /// Series per instrument before the overflow series.
    pub(crate) cardinality_limit: usize,
    /// Export otlpflow's own metrics through itself.
    pub(crate) self_metrics: bool,
}

/// One signal's resolved export settings.
#[derive(Debug, Clone)]
pub(crate) struct SignalConfig {
    pub(crate) endpoint: Endpoint,
    http_path: String,
    compression: Compression,
    headers: Headers,
    timeout: Duration,
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

impl Config {
    /// This configuration as it applies to `signal`'s exports.
    pub(crate) fn for_signal(&self, signal: Signal) -> Config {
        let s = &self.signals[signal as usize];
        let mut c = self.clone();
        c.signal = signal;
        c.endpoint = s.endpoint.clone();
        c.http_path = s.http_path.clone();
        c.compression = s.compression;
        c.headers = s.headers.clone();
        c.request_timeout = s.timeout;
        c
    }

    pub(crate) fn pool(&self) -> crate::export::h2conn::PoolSettings {
        crate::export::h2conn::PoolSettings {
            connections: self.connections_per_worker,
            keepalive: self.keepalive,
            idle_timeout: self.idle_timeout,
        }
    }
}

/// A parsed `http://host:port` endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) authority: String,
    pub(crate) scheme: &'static str,
    pub(crate) path: String,
}

impl Endpoint {
    /// Parses an endpoint URL. Only `http://` (cleartext) is accepted by this
    /// version of the exporter.
    pub fn parse(url: &str) -> Result<Endpoint, Error> {
        let bad = |why: &str| Error::config(format!("endpoint {url:?}: {why}"));
        let (scheme, rest, default_port) = if let Some(r) = url.strip_prefix("http://") {
            ("http", r, 80)
        } else if let Some(r) = url.strip_prefix("https://") {
            ("https", r, 443)
        } else {
            return Err(bad("must start with http:// or https://"));
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if authority.is_empty() {
            return Err(bad("has no host"));
        }
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => {
                let port: u16 = p.parse().map_err(|_| bad("port is not a number 0-65535"))?;
                (
                    h.trim_start_matches('[').trim_end_matches(']').to_owned(),
                    port,
                )
            }
            _ => (authority.to_owned(), default_port),
        };
        if host.is_empty() {
            return Err(bad("has no host"));
        }
        Ok(Endpoint {
            host,
            port,
            authority: authority.to_owned(),
            scheme,
            path: path.to_owned(),
        })
    }

    /// The `host:port` this endpoint connects to.
    pub fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// Builds a [`Pipeline`]. All setters are synchronous and cheap; `start`
/// validates everything and starts the worker threads.
#[derive(Debug, Clone)]
pub struct PipelineBuilder {
    endpoint: Option<String>,
    signals: [SignalOverrides; 3],
    metrics_interval: Duration,
    temporality: crate::record::Temporality,
    cardinality_limit: usize,
    self_metrics: bool,
    protocol: Protocol,
    http_version: HttpVersion,
    compression: Compression,
    service_name: Option<String>,
    service_version: Option<String>,
    resource: Vec<(String, OwnedValue)>,
    shards: Option<usize>,
    workers: Option<usize>,
    ring_bytes: usize,
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
    request_timeout: Duration,
    policy: Policy,
    retry: RetryConfig,
    compression_level: i32,
    headers: Vec<(String, String)>,
    tls: crate::export::tls::TlsSettings,
    flow: FlowConfig,
}

impl Default for PipelineBuilder {
    fn default() -> Self {
        PipelineBuilder {
            endpoint: None,
            signals: Default::default(),
            metrics_interval: Duration::from_secs(60),
            temporality: crate::record::Temporality::Cumulative,
            cardinality_limit: 2000,
            self_metrics: false,
            protocol: Protocol::Grpc,
            http_version: HttpVersion::Http1,
            compression: Compression::None,
            service_name: None,
            service_version: None,
            resource: Vec::new(),
            shards: None,
            workers: None,
            ring_bytes: 4 << 20,
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
            request_timeout: Duration::from_secs(10),
            policy: Policy::DropNewest,
            retry: RetryConfig::default(),
            compression_level: 1,
            headers: Vec::new(),
            tls: Default::default(),
            flow: FlowConfig::default(),
        }
    }
}

impl PipelineBuilder {
    /// The OTLP/gRPC endpoint, e.g. `http://localhost:4317`.
    /// Adds a header sent with every export request (e.g. an API key).
    /// Values are never logged.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// A builder configured from the standard OpenTelemetry environment
    /// variables (see [`PipelineBuilder::apply_env`]).
    pub fn from_env() -> Result<Self, Error> {
        PipelineBuilder::default().apply_env()
    }

    /// Applies the standard environment variables: `OTEL_SERVICE_NAME`,
    /// `OTEL_RESOURCE_ATTRIBUTES`, and `OTEL_EXPORTER_OTLP_{ENDPOINT,
    /// PROTOCOL, HEADERS, COMPRESSION, TIMEOUT}` with their `_TRACES_`
    /// variants taking precedence. Setters called afterwards override them
    /// (explicit setting > per-signal variable > general variable >
    /// default). A malformed variable is a configuration error naming it.
    pub fn apply_env(self) -> Result<Self, Error> {
        self.apply_env_from(|k| std::env::var(k).ok())
    }

    /// [`PipelineBuilder::apply_env`] with a custom variable lookup.
    pub fn apply_env_from(mut self, var: impl Fn(&str) -> Option<String>) -> Result<Self, Error> {
        // The per-signal variable wins over the general one; returns the
        // name that was used, for error messages.
        let pick = |suffix: &str| -> Option<(String, String)> {
            let signal = format!("OTEL_EXPORTER_OTLP_TRACES_{suffix}");
            if let Some(v) = var(&signal).filter(|v| !v.trim().is_empty()) {
                return Some((signal, v));
            }
            let general = format!("OTEL_EXPORTER_OTLP_{suffix}");
            var(&general)
                .filter(|v| !v.trim().is_empty())
                .map(|v| (general, v))
        };
        // OTEL_EXPORTER_OTLP_INSECURE decides the scheme of an endpoint
        // given without one (the spec's rule for gRPC endpoints).
        let insecure = match pick("INSECURE") {
            None => false,
            Some((name, v)) => match v.trim().to_ascii_lowercase().as_str() {
                "true" => true,
                "false" => false,
                other => {
                    return Err(Error::config(format!(
                        "{name}: {other:?} is not true or false"
                    )))
                }
            },
        };
        let with_scheme = |v: &str| -> String {
            let v = v.trim();
            if v.contains("://") {
                v.to_owned()
            } else if insecure {
                format!("http://{v}")
            } else {
                format!("https://{v}")
            }
        };
        // A general endpoint is a base (OTLP/HTTP appends /v1/<signal>); a
        // per-signal one is used as it is.
        let name = "OTEL_EXPORTER_OTLP_ENDPOINT";
        if let Some(v) = var(name).filter(|v| !v.trim().is_empty()) {
            let v = with_scheme(&v);
            Endpoint::parse(&v).map_err(|e| Error::config(format!("{name}: {e}")))?;
            self.endpoint = Some(v);
        }
        // The per-signal variables set that signal's overrides.
        for signal in Signal::ALL {
            let get = |suffix: &str| {
                let name = format!("OTEL_EXPORTER_OTLP_{}_{suffix}", signal.env());
                var(&name)
                    .filter(|v| !v.trim().is_empty())
                    .map(|v| (name, v))
            };
            let o = &mut self.signals[signal as usize];
            if let Some((name, v)) = get("ENDPOINT") {
                let v = with_scheme(&v);
                Endpoint::parse(&v).map_err(|e| Error::config(format!("{name}: {e}")))?;
                o.endpoint = Some(v);
            }
            if let Some((name, v)) = get("COMPRESSION") {
                o.compression = Some(
                    Compression::parse(&v).map_err(|e| Error::config(format!("{name}: {e}")))?,
                );
            }
            if let Some((name, v)) = get("TIMEOUT") {
                o.timeout = Some(parse_millis(&name, &v)?);
            }
            if let Some((name, v)) = get("HEADERS") {
                o.headers.extend(parse_key_values(&name, &v)?);
            }
        }
        let general = |suffix: &str| {
            let name = format!("OTEL_EXPORTER_OTLP_{suffix}");
            var(&name)
                .filter(|v| !v.trim().is_empty())
                .map(|v| (name, v))
        };
        if let Some((name, v)) = pick("PROTOCOL") {
            self.protocol =
                Protocol::parse(&v).map_err(|e| Error::config(format!("{name}: {e}")))?;
        }
        if let Some((_, v)) = pick("CERTIFICATE") {
            self.tls.ca_file = Some(v.trim().into());
        }
        match (pick("CLIENT_CERTIFICATE"), pick("CLIENT_KEY")) {
            (Some((_, c)), Some((_, k))) => self.tls.client_cert = Some((c.trim().into(), k.trim().into())),
            (None, None) => {}
            (Some((name, _)), None) | (None, Some((name, _))) => {
                return Err(Error::config(format!(
                    "{name}: a client certificate needs both OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE and _CLIENT_KEY"
                )))
            }
        }
        if let Some((name, v)) = general("COMPRESSION") {
            self.compression =
                Compression::parse(&v).map_err(|e| Error::config(format!("{name}: {e}")))?;
        }
        if let Some((name, v)) = general("TIMEOUT") {
            self.request_timeout = parse_millis(&name, &v)?;
        }
        if let Some((name, v)) = general("HEADERS") {
            for (k, val) in parse_key_values(&name, &v)? {
                self.headers.push((k, val));
            }
        }
        if let Some(v) = var("OTEL_RESOURCE_ATTRIBUTES").filter(|v| !v.trim().is_empty()) {
            for (k, val) in parse_key_values("OTEL_RESOURCE_ATTRIBUTES", &v)? {
                // service.name here yields to OTEL_SERVICE_NAME (below).
                if k == "service.name" {
                    self.service_name = Some(val);
                } else {
                    self.resource.push((k, OwnedValue::Str(val)));
                }
            }
        }
        if let Some(v) = var("OTEL_SERVICE_NAME").filter(|v| !v.trim().is_empty()) {
            self.service_name = Some(v.trim().to_owned());
        }
        self.apply_flow_env(&var)
    }

    /// otlpflow's own variables for flow control (the OpenTelemetry ones
    /// have no equivalent): `OTLPFLOW_POLICY` (`drop` or `block[:MS]`),
    /// `OTLPFLOW_MEMORY_BUDGET` (bytes, with an optional K/M/G suffix),
    /// `OTLPFLOW_RATE_LIMIT` (records per second; the burst is one second's
    /// worth), `OTLPFLOW_EGRESS_BYTES_PER_SECOND`, `OTLPFLOW_CONCURRENCY`
    /// (`adaptive`, `adaptive:MIN:MAX` or a fixed number).
    fn apply_flow_env(mut self, var: &impl Fn(&str) -> Option<String>) -> Result<Self, Error> {
        let get = |name: &str| {
            var(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let bad =
            |name: &str, v: &str, want: &str| Error::config(format!("{name}: {v:?} is not {want}"));
        if let Some(v) = get("OTLPFLOW_POLICY") {
            self.policy = Policy::parse(&v)
                .ok_or_else(|| bad("OTLPFLOW_POLICY", &v, "drop, block or block:MILLISECONDS"))?;
        }
        if let Some(v) = get("OTLPFLOW_MEMORY_BUDGET") {
            let n = parse_bytes(&v)
                .ok_or_else(|| bad("OTLPFLOW_MEMORY_BUDGET", &v, "a size like 64M"))?;
            self.flow.memory_budget = Some(n);
        }
        if let Some(v) = get("OTLPFLOW_RATE_LIMIT") {
            let r: f64 = v
                .parse()
                .map_err(|_| bad("OTLPFLOW_RATE_LIMIT", &v, "records per second"))?;
            self.rate_limit = Some((r, r.ceil().max(1.0) as u64));
        }
        if let Some(v) = get("OTLPFLOW_EGRESS_BYTES_PER_SECOND") {
            let r = parse_bytes(&v)
                .ok_or_else(|| bad("OTLPFLOW_EGRESS_BYTES_PER_SECOND", &v, "a size like 10M"))?;
            self.flow.egress_byte_rate = Some((r as f64, r.max(1)));
        }
        if let Some(v) = get("OTLPFLOW_CONCURRENCY") {
            let want = "adaptive, adaptive:MIN:MAX or a number";
            match v.split(':').collect::<Vec<_>>()[..] {
                ["adaptive"] => {
                    self.flow.adaptive_concurrency = Some((1, self.max_in_flight.max(64)))
                }
                ["adaptive", min, max] => {
                    let (min, max) = min
                        .parse()
                        .ok()
                        .zip(max.parse().ok())
                        .ok_or_else(|| bad("OTLPFLOW_CONCURRENCY", &v, want))?;
                    self.flow.adaptive_concurrency = Some((min, max));
                }
                [n] => {
                    self.max_in_flight = n
                        .parse()
                        .map_err(|_| bad("OTLPFLOW_CONCURRENCY", &v, want))?;
                    self.flow.adaptive_concurrency = None;
                }
                _ => return Err(bad("OTLPFLOW_CONCURRENCY", &v, want)),
            }
        }
        Ok(self)
    }

    /// The receiver's base endpoint, e.g. `http://localhost:4317` (gRPC) or
    /// `http://localhost:4318` (OTLP/HTTP, which appends `/v1/traces`). The
    /// default follows the protocol.
    pub fn endpoint(mut self, url: impl Into<String>) -> Self {
        self.endpoint = Some(url.into());
        self
    }

    /// The traces endpoint, used as it is (OTLP/HTTP: the full URL with its
    /// path). Wins over `endpoint`.
    pub fn traces_endpoint(mut self, url: impl Into<String>) -> Self {
        self.signals[Signal::Traces as usize].endpoint = Some(url.into());
        self
    }

    /// The logs endpoint, used as it is (see `traces_endpoint`).
    pub fn logs_endpoint(mut self, url: impl Into<String>) -> Self {
        self.signals[Signal::Logs as usize].endpoint = Some(url.into());
        self
    }

    /// The metrics endpoint, used as it is (see `traces_endpoint`).
    pub fn metrics_endpoint(mut self, url: impl Into<String>) -> Self {
        self.signals[Signal::Metrics as usize].endpoint = Some(url.into());
        self
    }

    /// A header sent with `signal`'s requests only (after the general ones).
    pub fn signal_header(
        mut self,
        signal: Signal,
        name: impl Into<String>,
        value: impl Into<String>,
    ) -> Self {
        self.signals[signal as usize]
            .headers
            .push((name.into(), value.into()));
        self
    }

    /// `signal`'s compression, instead of the general one.
    pub fn signal_compression(mut self, signal: Signal, c: Compression) -> Self {
        self.signals[signal as usize].compression = Some(c);
        self
    }

    /// `signal`'s request timeout, instead of the general one.
    pub fn signal_timeout(mut self, signal: Signal, d: Duration) -> Self {
        self.signals[signal as usize].timeout = Some(d);
        self
    }

    /// How often the instruments (`Pipeline::counter` and the others) are
    /// collected and exported (default 60 s, as the OpenTelemetry SDK's
    /// periodic reader); `flush` and `shutdown` collect too.
    pub fn metrics_interval(mut self, d: Duration) -> Self {
        self.metrics_interval = d;
        self
    }

    /// Temporality of the instruments' sums and histograms (default
    /// cumulative).
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
    /// Compression level (zstd 1..=19, gzip 1..=9). Default 1.
    pub fn compression_level(mut self, level: i32) -> Self {
        self.compression_level = level;
        self
    }
    /// The `service.name` resource attribute.
    pub fn service_name(mut self, name: impl Into<String>) -> Self {
        self.service_name = Some(name.into());
        self
    }
    /// The `service.version` resource attribute.
    pub fn service_version(mut self, version: impl Into<String>) -> Self {
        self.service_version = Some(version.into());
        self
    }
    /// Adds a resource attribute.
    pub fn resource_attribute(
        mut self,
        key: impl Into<String>,
        value: impl Into<OwnedValue>,
    ) -> Self {
        self.resource.push((key.into(), value.into()));
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
    /// A batch closes at this many records (default 512).
    pub fn max_batch_items(mut self, n: usize) -> Self {
        self.max_batch_items = n;
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
    /// Requests in flight per worker (default 4).
    pub fn max_in_flight(mut self, n: usize) -> Self {
        self.max_in_flight = n;
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
    /// producers slow down; under `DropNewest` more is refused). Needs
    /// `adaptive_concurrency`.
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
        self
    }
    /// The circuit breaker (default: opens after 5 attempts without an
    /// answer, probes after 100 ms, backing off to 5 s).
    pub fn circuit_breaker(mut self, b: BreakerConfig) -> Self {
        self.flow.breaker = b;
        self
    }
    /// What happens to requests waiting for a retry when newer data needs
    /// room (default `Keep`).
    pub fn retry_queue(mut self, q: RetryQueue) -> Self {
        self.flow.retry_queue = q;
        self
    }

    /// Validates the settings.
    pub fn build(self) -> Result<Config, Error> {
        let default_endpoint = match self.protocol {
            Protocol::Grpc => "http://localhost:4317",
            Protocol::HttpProtobuf => "http://localhost:4318",
        };
        let mut signals = Vec::new();
        for signal in Signal::ALL {
            let o = &self.signals[signal as usize];
            let (endpoint, http_path) = match (&o.endpoint, &self.endpoint) {
                (Some(t), _) => {
                    let e = Endpoint::parse(t)?;
                    let path = if e.path.is_empty() {
                        "/".to_owned()
                    } else {
                        e.path.clone()
                    };
                    (e, path)
                }
                (None, base) => {
                    let e = Endpoint::parse(base.as_deref().unwrap_or(default_endpoint))?;
                    let path = format!("{}/v1/{}", e.path.trim_end_matches('/'), signal.name());
                    (e, path)
                }
            };
            let mut all_headers = self.headers.clone();
            all_headers.extend(o.headers.iter().cloned());
            signals.push(SignalConfig {
                endpoint,
                http_path,
                compression: o.compression.unwrap_or(self.compression),
                headers: Headers(build_headers(&all_headers)?),
                timeout: o.timeout.unwrap_or(self.request_timeout),
            });
        }
        if signals.iter().any(|s| s.timeout.is_zero()) {
            return Err(Error::config("request_timeout: must be more than zero"));
        }
        if self.metrics_interval < Duration::from_millis(1) {
            return Err(Error::config("metrics_interval: must be at least 1 ms"));
        }
        if self.cardinality_limit == 0 || self.cardinality_limit > 1 << 20 {
            return Err(Error::config("cardinality_limit: must be in 1..=1048576"));
        }
        let endpoint = signals[0].endpoint.clone();
        let http_path = signals[0].http_path.clone();
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let shards = self.shards.unwrap_or(cpus);
        if shards == 0 || shards > 1024 {
            return Err(Error::config(format!(
                "shards: {shards} is not in 1..=1024"
            )));
        }
        let workers = self.workers.unwrap_or(cpus).min(shards);
        if workers == 0 {
            return Err(Error::config("workers: must be at least 1"));
        }
        if !self.ring_bytes.is_power_of_two() || self.ring_bytes < 4096 || self.ring_bytes > 1 << 30
        {
            return Err(Error::config(format!(
                "ring_bytes: {} must be a power of two between 4 KiB and 1 GiB",
                self.ring_bytes
            )));
        }
        if self.max_batch_items == 0 {
            return Err(Error::config("max_batch_items: must be at least 1"));
        }
        for (name, limit) in [
            ("rate_limit", self.rate_limit),
            ("byte_rate_limit", self.byte_rate_limit),
        ] {
            if let Some((rate, burst)) = limit {
                if !(rate > 0.0 && rate <= 1e9) || burst == 0 {
                    return Err(Error::config(format!(
                        "{name}: the rate must be in (0, 1e9] per second and the burst at least 1"
                    )));
                }
            }
        }
        if let Some((min, target)) = self.adaptive_batch {
            if min == 0 || min > self.max_batch_items || target.is_zero() {
                return Err(Error::config(
                    "adaptive_batch: min_items must be in 1..=max_batch_items and the latency target > 0",
                ));
            }
        }
        self.flow.validate()?;
        if self.connections_per_worker == 0 || self.connections_per_worker > 64 {
            return Err(Error::config("connections_per_worker: must be in 1..=64"));
        }
        if self.max_request_bytes < 4096 {
            return Err(Error::config("max_request_bytes: must be at least 4096"));
        }
        if self.max_batch_bytes < 1024 {
            return Err(Error::config("max_batch_bytes: must be at least 1024"));
        }
        if self.max_in_flight == 0 || self.max_in_flight > 1024 {
            return Err(Error::config("max_in_flight: must be in 1..=1024"));
        }
        if self.request_timeout.is_zero() {
            return Err(Error::config("request_timeout: must be more than zero"));
        }
        if self.linger.is_zero() {
            return Err(Error::config("linger: must be more than zero"));
        }
        let level_ok = match self.compression {
            Compression::None => true,
            Compression::Gzip => (0..=9).contains(&self.compression_level),
            Compression::Zstd => (1..=19).contains(&self.compression_level),
        };
        if !level_ok {
            return Err(Error::config(format!(
                "compression_level: {} is out of range for {:?}",
                self.compression_level, self.compression
            )));
        }
        if self.retry.initial_backoff.is_zero()
            || self.retry.max_backoff < self.retry.initial_backoff
            || !(1.0..=100.0).contains(&self.retry.multiplier)
        {
            return Err(Error::config(
                "retry: initial_backoff must be > 0 and <= max_backoff, multiplier in 1..=100",
            ));
        }
        let tls = if endpoint.scheme == "https" {
            let alpn: &[&[u8]] = match (self.protocol, self.http_version) {
                (Protocol::HttpProtobuf, HttpVersion::Http1) => &[b"http/1.1"],
                _ => &[b"h2"],
            };
            Some(crate::export::tls::client_config(&self.tls, alpn)?)
        } else {
            None
        };
        let headers = signals[0].headers.0.clone();
        let mut resource = Vec::new();
        let service = self
            .service_name
            .unwrap_or_else(|| "unknown_service:otlpflow".into());
        if service.is_empty() {
            return Err(Error::config("service_name: must not be empty"));
        }
        resource.push(("service.name".to_owned(), OwnedValue::Str(service)));
        if let Some(v) = self.service_version {
            resource.push(("service.version".to_owned(), OwnedValue::Str(v)));
        }
        for (k, v) in self.resource {
            if k.is_empty() {
                return Err(Error::config("resource_attribute: key must not be empty"));
            }
            resource.retain(|(existing, _)| *existing != k);
            resource.push((k, v));
        }
        Ok(Config {
            endpoint,
            protocol: self.protocol,
            http_version: self.http_version,
            http_path,
            compression: signals[0].compression,
            resource,
            shards,
            workers,
            ring_bytes: self.ring_bytes,
            max_batch_items: self.max_batch_items,
            max_batch_bytes: self.max_batch_bytes,
            max_request_bytes: self.max_request_bytes,
            connections_per_worker: self.connections_per_worker,
            rate_limit: self.rate_limit,
            adaptive_batch: self.adaptive_batch,
            prometheus: self.prometheus,
            byte_rate_limit: self.byte_rate_limit,
            keepalive: self.keepalive,
            idle_timeout: self.idle_timeout,
            linger: self.linger,
            max_in_flight: self.max_in_flight,
            request_timeout: signals[0].timeout,
            policy: self.policy,
            retry: self.retry,
            compression_level: self.compression_level,
            headers: Headers(headers),
            tls,
            flow: self.flow,
            signal: Signal::Traces,
            signals,
            metrics_interval: self.metrics_interval,
            temporality: self.temporality,
            cardinality_limit: self.cardinality_limit,
            self_metrics: self.self_metrics,
        })
    }

    /// Validates the settings and starts the pipeline's worker threads.
    pub fn start(self) -> Result<Pipeline, Error> {
        Pipeline::start(self.build()?)
    }
}

/// Headers as validated, sensitive values.
fn build_headers(
    pairs: &[(String, String)],
) -> Result<Vec<(http::HeaderName, http::HeaderValue)>, Error> {
    let mut headers = Vec::new();
    for (k, v) in pairs {
        let name = http::HeaderName::from_bytes(k.trim().to_ascii_lowercase().as_bytes())
            .map_err(|_| Error::config(format!("header: {k:?} is not a valid header name")))?;
        let mut value = http::HeaderValue::from_str(v.trim()).map_err(|_| {
            Error::config(format!("header {k}: the value is not a valid header value"))
        })?;
        value.set_sensitive(true);
        headers.push((name, value));
    }
    Ok(headers)
}

fn parse_millis(name: &str, v: &str) -> Result<Duration, Error> {
    let ms: u64 = v
        .trim()
        .parse()
        .map_err(|_| Error::config(format!("{name}: {v:?} is not a number of milliseconds")))?;
    Ok(Duration::from_millis(ms))
}

/// Parses a byte size: a number with an optional K, M or G suffix (powers
/// of 1024), e.g. `64M`.
pub fn parse_bytes(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, mult) = match s.as_bytes().last()? {
        b'k' | b'K' => (&s[..s.len() - 1], 1u64 << 10),
        b'm' | b'M' => (&s[..s.len() - 1], 1 << 20),
        b'g' | b'G' => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    num.trim().parse::<u64>().ok()?.checked_mul(mult)
}

/// Parses `k1=v1,k2=v2` with percent-encoded keys and values (W3C baggage
/// style, as the OpenTelemetry environment variables use).
fn parse_key_values(var: &str, s: &str) -> Result<Vec<(String, String)>, Error> {
    let mut out = Vec::new();
    for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (k, v) = item
            .split_once('=')
            .ok_or_else(|| Error::config(format!("{var}: entry {item:?} has no '='")))?;
        let k = percent_decode(k.trim())
            .ok_or_else(|| Error::config(format!("{var}: bad percent-encoding in a key")))?;
        let v = percent_decode(v.trim()).ok_or_else(|| {
            Error::config(format!("{var}: bad percent-encoding in the value of {k:?}"))
        })?;
        if k.is_empty() {
            return Err(Error::config(format!("{var}: empty key")));
        }
        out.push((k, v));
    }
    Ok(out)
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_settings_name_the_setting() {
        let e = PipelineBuilder::default()
            .ring_bytes(1000)
            .build()
            .unwrap_err();
        assert!(e.is_config() && e.to_string().contains("ring_bytes"), "{e}");
        let e = PipelineBuilder::default()
            .endpoint("ftp://x")
            .build()
            .unwrap_err();
        assert!(e.to_string().contains("endpoint"), "{e}");
        let e = PipelineBuilder::default()
            .endpoint("http://h:99999")
            .build()
            .unwrap_err();
        assert!(e.to_string().contains("port"), "{e}");
        let e = PipelineBuilder::default()
            .max_in_flight(0)
            .build()
            .unwrap_err();
        assert!(e.to_string().contains("max_in_flight"), "{e}");
        let e = PipelineBuilder::default()
            .compression(Compression::Zstd)
            .compression_level(40)
            .build()
            .unwrap_err();
        assert!(e.to_string().contains("compression_level"), "{e}");
        assert!(Compression::parse("brotli")
            .unwrap_err()
            .to_string()
            .contains("compression"));
    }

    #[test]
    fn environment_variables_with_precedence() {
        let env = |k: &str| -> Option<String> {
            Some(
                match k {
                    "OTEL_EXPORTER_OTLP_ENDPOINT" => "http://general:4317",
                    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT" => "http://traces:4317",
                    "OTEL_EXPORTER_OTLP_COMPRESSION" => "gzip",
                    "OTEL_EXPORTER_OTLP_TIMEOUT" => "2500",
                    "OTEL_EXPORTER_OTLP_HEADERS" => "api-key=s%3Dcret, x-team=core",
                    "OTEL_RESOURCE_ATTRIBUTES" => {
                        "service.name=from-attrs,deployment.environment=prod"
                    }
                    "OTEL_SERVICE_NAME" => "from-service-name",
                    _ => return None,
                }
                .to_owned(),
            )
        };
        let c = PipelineBuilder::default()
            .apply_env_from(env)
            .unwrap()
            .build()
            .unwrap();
        assert_eq!(c.endpoint.host, "traces");
        assert_eq!(c.http_path, "/");
        assert_eq!(c.compression, Compression::Gzip);
        assert_eq!(c.request_timeout, Duration::from_millis(2500));
        assert_eq!(c.headers.0[0].1.to_str().unwrap(), "s=cret");
        assert!(
            !format!("{c:?}").contains("s=cret"),
            "header values are redacted"
        );
        assert!(c.resource.contains(&(
            "service.name".into(),
            OwnedValue::Str("from-service-name".into())
        )));
        assert!(c.resource.contains(&(
            "deployment.environment".into(),
            OwnedValue::Str("prod".into())
        )));
        // An explicit setting after the environment wins.
        let c = PipelineBuilder::default()
            .apply_env_from(env)
            .unwrap()
            .compression(Compression::None)
            .build()
            .unwrap();
        assert_eq!(c.compression, Compression::None);
        // Malformed variables name themselves.
        let bad = |k: &str| (k == "OTEL_EXPORTER_OTLP_TIMEOUT").then(|| "soon".to_owned());
        let e = PipelineBuilder::default().apply_env_from(bad).unwrap_err();
        assert!(e.to_string().contains("OTEL_EXPORTER_OTLP_TIMEOUT"), "{e}");
        let bad =
            |k: &str| (k == "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL").then(|| "http/json".to_owned());
        let e = PipelineBuilder::default().apply_env_from(bad).unwrap_err();
        assert!(
            e.to_string().contains("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"),
            "{e}"
        );
        let bad = |k: &str| (k == "OTEL_RESOURCE_ATTRIBUTES").then(|| "novalue".to_owned());
        assert!(PipelineBuilder::default().apply_env_from(bad).is_err());
        // No scheme: INSECURE=true means cleartext, otherwise TLS.
        let env = |insecure: &'static str| {
            move |k: &str| match k {
                "OTEL_EXPORTER_OTLP_ENDPOINT" => Some("collector:4317".to_owned()),
                "OTEL_EXPORTER_OTLP_INSECURE" => Some(insecure.to_owned()),
                _ => None,
            }
        };
        let c = PipelineBuilder::default()
            .apply_env_from(env("true"))
            .unwrap()
            .build()
            .unwrap();
        assert_eq!(c.endpoint.scheme, "http");
        let c = PipelineBuilder::default()
            .apply_env_from(env("false"))
            .unwrap()
            .build()
            .unwrap();
        assert_eq!(c.endpoint.scheme, "https");
        assert!(PipelineBuilder::default()
            .apply_env_from(env("maybe"))
            .is_err());
    }

    #[test]
    fn otlp_http_endpoint_rules() {
        let b = || PipelineBuilder::default().protocol(Protocol::HttpProtobuf);
        let c = b().build().unwrap();
        assert_eq!(
            (c.endpoint.port, c.http_path.as_str()),
            (4318, "/v1/traces")
        );
        let c = b().endpoint("http://gw:9000/otlp/").build().unwrap();
        assert_eq!(c.http_path, "/otlp/v1/traces");
        let c = b()
            .traces_endpoint("http://gw:9000/custom/traces")
            .endpoint("http://x:1")
            .build()
            .unwrap();
        assert_eq!(
            (c.endpoint.host.as_str(), c.http_path.as_str()),
            ("gw", "/custom/traces")
        );
        assert_eq!(
            PipelineBuilder::default().build().unwrap().endpoint.port,
            4317
        );
        assert!(Protocol::parse("http/json")
            .unwrap_err()
            .to_string()
            .contains("http/json"));
    }

    #[test]
    fn endpoint_parsing() {
        let e = Endpoint::parse("http://127.0.0.1:4317").unwrap();
        assert_eq!((e.host.as_str(), e.port), ("127.0.0.1", 4317));
        let e = Endpoint::parse("http://[::1]:5000/").unwrap();
        assert_eq!((e.host.as_str(), e.port), ("::1", 5000));
        assert_eq!(e.address(), "[::1]:5000");
        assert_eq!(Endpoint::parse("http://collector").unwrap().port, 80);
    }

    #[test]
    fn resource_has_service_name_and_user_attributes() {
        let c = PipelineBuilder::default()
            .service_name("svc")
            .service_version("1.2")
            .resource_attribute("service.name", "override")
            .resource_attribute("k", 3i64)
            .build()
            .unwrap();
        assert_eq!(
            c.resource,
            vec![
                ("service.version".into(), OwnedValue::Str("1.2".into())),
                ("service.name".into(), OwnedValue::Str("override".into())),
                ("k".into(), OwnedValue::I64(3)),
            ]
        );
    }
}
