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
    /// OTLP/gRPC over HTTP/2.
    Grpc,
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

/// Retry of transient export failures: exponential backoff with jitter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryConfig {
    /// The first delay.
    pub initial_backoff: Duration,
    /// The largest delay.
    pub max_backoff: Duration,
    /// Give up on a batch after this long in total.
    pub max_elapsed: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(5),
            max_elapsed: Duration::from_secs(60),
        }
    }
}

/// A validated configuration. Build one with [`Pipeline::builder`].
#[derive(Debug, Clone)]
pub struct Config {
    pub(crate) endpoint: Endpoint,
    pub(crate) protocol: Protocol,
    pub(crate) compression: Compression,
    pub(crate) resource: Vec<(String, OwnedValue)>,
    pub(crate) shards: usize,
    pub(crate) workers: usize,
    pub(crate) ring_bytes: usize,
    pub(crate) max_batch_items: usize,
    pub(crate) max_batch_bytes: usize,
    pub(crate) linger: Duration,
    pub(crate) max_in_flight: usize,
    pub(crate) request_timeout: Duration,
    pub(crate) policy: Policy,
    pub(crate) retry: RetryConfig,
    pub(crate) compression_level: i32,
}

/// A parsed `http://host:port` endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) authority: String,
    pub(crate) scheme: &'static str,
}

impl Endpoint {
    /// Parses an endpoint URL. Only `http://` (cleartext) is accepted by this
    /// version of the exporter.
    pub fn parse(url: &str) -> Result<Endpoint, Error> {
        let bad = |why: &str| Error::config(format!("endpoint {url:?}: {why}"));
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| bad("must start with http://"))?;
        let authority = rest.split('/').next().unwrap_or("");
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
            _ => (authority.to_owned(), 80),
        };
        if host.is_empty() {
            return Err(bad("has no host"));
        }
        Ok(Endpoint {
            host,
            port,
            authority: authority.to_owned(),
            scheme: "http",
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
    endpoint: String,
    protocol: Protocol,
    compression: Compression,
    service_name: Option<String>,
    service_version: Option<String>,
    resource: Vec<(String, OwnedValue)>,
    shards: Option<usize>,
    workers: Option<usize>,
    ring_bytes: usize,
    max_batch_items: usize,
    max_batch_bytes: usize,
    linger: Duration,
    max_in_flight: usize,
    request_timeout: Duration,
    policy: Policy,
    retry: RetryConfig,
    compression_level: i32,
}

impl Default for PipelineBuilder {
    fn default() -> Self {
        PipelineBuilder {
            endpoint: "http://localhost:4317".into(),
            protocol: Protocol::Grpc,
            compression: Compression::None,
            service_name: None,
            service_version: None,
            resource: Vec::new(),
            shards: None,
            workers: None,
            ring_bytes: 4 << 20,
            max_batch_items: 512,
            max_batch_bytes: 1 << 20,
            linger: Duration::from_millis(10),
            max_in_flight: 4,
            request_timeout: Duration::from_secs(10),
            policy: Policy::DropNewest,
            retry: RetryConfig::default(),
            compression_level: 1,
        }
    }
}

impl PipelineBuilder {
    /// The OTLP/gRPC endpoint, e.g. `http://localhost:4317`.
    pub fn endpoint(mut self, url: impl Into<String>) -> Self {
        self.endpoint = url.into();
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
    /// A batch closes at this many encoded bytes (default 1 MiB).
    pub fn max_batch_bytes(mut self, n: usize) -> Self {
        self.max_batch_bytes = n;
        self
    }
    /// A non-empty batch closes after waiting this long (default 10 ms).
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

    /// Validates the settings.
    pub fn build(self) -> Result<Config, Error> {
        let endpoint = Endpoint::parse(&self.endpoint)?;
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
        {
            return Err(Error::config(
                "retry: initial_backoff must be > 0 and <= max_backoff",
            ));
        }
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
            compression: self.compression,
            resource,
            shards,
            workers,
            ring_bytes: self.ring_bytes,
            max_batch_items: self.max_batch_items,
            max_batch_bytes: self.max_batch_bytes,
            linger: self.linger,
            max_in_flight: self.max_in_flight,
            request_timeout: self.request_timeout,
            policy: self.policy,
            retry: self.retry,
            compression_level: self.compression_level,
        })
    }

    /// Validates the settings and starts the pipeline's worker threads.
    pub fn start(self) -> Result<Pipeline, Error> {
        Pipeline::start(self.build()?)
    }
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
