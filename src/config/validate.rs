//! Validation: [`PipelineBuilder::build`] checks every setting and
//! resolves each signal's endpoint, path, headers, compression and timeout.

use std::time::Duration;

use super::*;

/// A base endpoint URL and `signal`'s OTLP/HTTP path under it
/// (`/v1/<signal>` appended).
pub(crate) fn base_target(url: &str, signal: Signal) -> Result<(Endpoint, String), Error> {
    let e = Endpoint::parse(url)?;
    let path = format!("{}/v1/{}", e.path.trim_end_matches('/'), signal.name());
    // The endpoint keeps its query; `ExportSettings` puts it after this
    // path in each request's URI.
    Ok((e, path))
}

/// The largest request: gRPC frames a message with a 32-bit length.
const MAX_REQUEST_BYTES: usize = u32::MAX as usize;

/// The most endpoints a signal may have at once (`endpoints`, a DNS name's
/// addresses, `Pipeline::set_endpoints`).
pub(crate) const MAX_ENDPOINTS: usize = 256;

/// The memory that automatic concurrency sizes its ceiling from when no
/// memory budget is set (seven eighths of it for requests in flight, at
/// the batch byte limit each, split over the workers).
pub(crate) const AUTO_IN_FLIGHT_BYTES: u64 = 128 << 20;

/// How far automatic batches may grow: this many times `max_batch_items`
/// (the batch byte limit still applies).
const BATCH_GROWTH: usize = 16;

impl PipelineBuilder {
    /// Validates the settings.
    pub fn build(self) -> Result<Config, Error> {
        let dns = self.dns.as_ref().map(|(url, interval)| DnsEndpoints {
            url: url.clone(),
            interval: *interval,
            resolver: self.resolver.clone().unwrap_or_else(Resolver::system),
            // The signals without endpoints of their own.
            signals: Signal::ALL
                .into_iter()
                .filter(|s| {
                    self.signals[*s].endpoints.is_none() && self.signals[*s].endpoint.is_none()
                })
                .collect(),
        });
        if let Some(d) = &dns {
            if d.interval < Duration::from_millis(10) {
                return Err(Error::config(
                    "endpoints_dns: the interval must be at least 10 ms",
                ));
            }
        }
        let signals = PerSignal::try_from_fn(|signal| {
            let o = &self.signals[signal];
            let protocol = o.protocol.unwrap_or(self.protocol);
            let default_endpoint = match protocol {
                Protocol::Grpc => "http://localhost:4317",
                Protocol::HttpProtobuf => "http://localhost:4318",
            };
            // A signal's own endpoint is used as given; a base endpoint
            // gets `/v1/<signal>` appended for OTLP/HTTP.
            let own = |t: &str| -> Result<(Endpoint, String), Error> {
                let e = Endpoint::parse(t)?;
                let path = if e.path.is_empty() {
                    "/".to_owned()
                } else {
                    e.path.clone()
                };
                Ok((e, path))
            };
            let base = |b: &str| base_target(b, signal);
            let targets: Vec<(Endpoint, String)> = match (
                &o.endpoints,
                &o.endpoint,
                &dns,
                &self.endpoints,
                &self.endpoint,
            ) {
                (Some(list), ..) => list.iter().map(|t| own(t)).collect::<Result<_, _>>()?,
                (None, Some(t), ..) => vec![own(t)?],
                (None, None, Some(d), ..) => {
                    let (targets, note) = d.targets(signal)?;
                    if let Some(note) = note {
                        log::warn!("otlpflow: {note}");
                    }
                    targets
                }
                (None, None, None, Some(list), _) => {
                    list.iter().map(|b| base(b)).collect::<Result<_, _>>()?
                }
                (None, None, None, None, b) => {
                    vec![base(b.as_deref().unwrap_or(default_endpoint))?]
                }
            };
            if targets.is_empty() {
                return Err(Error::config(format!(
                    "{}.endpoints: the list is empty",
                    signal.name()
                )));
            }
            if targets.len() > MAX_ENDPOINTS {
                return Err(Error::config(format!(
                    "{}.endpoints: at most {MAX_ENDPOINTS} endpoints",
                    signal.name()
                )));
            }
            let routing = o.routing.unwrap_or(match signal {
                Signal::Metrics => Routing::RoundRobin,
                _ => Routing::TraceId,
            });
            let mut all_headers = self.headers.0.clone();
            all_headers.extend(o.headers.0.iter().cloned());
            Ok::<_, Error>(SignalConfig {
                protocol,
                targets,
                routing,
                compression: o.compression.unwrap_or(self.compression),
                headers: Headers(build_headers(&all_headers)?),
                timeout: o.timeout.unwrap_or(self.request_timeout),
            })
        })?;
        if let Some((cert, key)) = &self.tls.client_cert {
            if cert.as_os_str().is_empty() || key.as_os_str().is_empty() {
                return Err(Error::config(
                    "tls_client_cert and tls_client_key: a client certificate needs both",
                ));
            }
        }
        if signals.values().any(|s| s.timeout.is_zero()) {
            return Err(Error::config("request_timeout: must be more than zero"));
        }
        if self.metrics_interval < Duration::from_millis(1) {
            return Err(Error::config("metrics_interval: must be at least 1 ms"));
        }
        if self.cardinality_limit == 0 || self.cardinality_limit > 1 << 20 {
            return Err(Error::config("cardinality_limit: must be in 1..=1048576"));
        }
        if self.max_scopes == 0 || self.max_scopes > 1 << 20 {
            return Err(Error::config("max_scopes: must be in 1..=1048576"));
        }
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
        // gRPC's length prefix is 32 bits: a larger message's length would
        // wrap, and the receiver would read the stream as garbage.
        if !(4096..=MAX_REQUEST_BYTES).contains(&self.max_request_bytes) {
            return Err(Error::config(format!(
                "max_request_bytes: must be from 4096 to {MAX_REQUEST_BYTES} (gRPC's 32-bit message length)"
            )));
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
            // Below 1, zstd's fast levels: less CPU, a little less
            // compression (BENCHMARKS.md, "Compression levels").
            Compression::Zstd => (-7..=19).contains(&self.compression_level),
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
        let mut resource = Vec::new();
        // Nothing said about the resource but what the environment says
        // (which an SDK's resource reads too, with attributes of its own):
        // a bridge may adopt its SDK's.
        let resource_is_default = !self.resource_set;
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
        if let Some((dir, max)) = &self.spool {
            if dir.as_os_str().is_empty() {
                return Err(Error::config("spool_dir: empty"));
            }
            if *max < 1 << 20 {
                return Err(Error::config("spool_max_bytes: at least 1M"));
            }
        }
        // Automatic flow (nothing chosen): adaptive concurrency starting at
        // `max_in_flight` and growing past it only over a long path, with a
        // ceiling that keeps requests in flight within seven eighths of
        // the memory budget (or of `AUTO_IN_FLIGHT_BYTES` without one) even
        // at the batch byte limit, the rest left to rings and batches (at
        // the whole budget, producers waited for memory: 200 ms away, 1.83
        // M spans/s against 1.88 M at three quarters; seven eighths, 96 ->
        // 112 requests a worker under 256M, delivered about 5% more than
        // three quarters); and batches that grow while the round trip is
        // long and they leave full.
        let mut flow = self.flow;
        let mut aimd_start = flow.adaptive_concurrency.map_or(1, |(min, _)| min);
        let auto_concurrency = !self.concurrency_set && flow.adaptive_concurrency.is_none();
        if auto_concurrency {
            let allowance = flow.memory_budget.unwrap_or(AUTO_IN_FLIGHT_BYTES);
            let per_request = self.max_batch_bytes.max(1) as u64 * workers as u64;
            let ceiling =
                ((allowance / 8 * 7 / per_request).min(256) as usize).max(self.max_in_flight);
            // Never below the fixed default either: on a loopback receiver
            // sharing the cores, queueing for the CPU looks like congestion,
            // and cuts below 4 cost a third of the rate.
            flow.adaptive_concurrency = Some((self.max_in_flight, ceiling));
            aimd_start = self.max_in_flight;
        }
        let batch_growth = (!self.batch_set && self.adaptive_batch.is_none())
            .then(|| self.max_batch_items.saturating_mul(BATCH_GROWTH));
        Ok(Config {
            batch_growth,
            aimd_start,
            auto_concurrency,
            spool: self.spool.clone(),
            spool_sync: self.spool_sync,
            spool_full: self.spool_full,
            dns,
            http_version: self.http_version,
            resource,
            resource_is_default,
            shards,
            workers,
            ring_bytes: self.ring_bytes,
            ring_eviction: self.ring_eviction,
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
            policy: self.policy,
            retry: self.retry,
            compression_level: self.compression_level,
            tls: self.tls,
            flow,
            system_memory_source: self.system_memory_source,
            signals,
            metrics_interval: self.metrics_interval,
            temporality: self.temporality,
            cardinality_limit: self.cardinality_limit,
            max_scopes: self.max_scopes,
            self_metrics: self.self_metrics,
        })
    }
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
        if let Some(f) = self.system_memory_limit {
            if !(f > 0.0 && f <= 1.0) {
                return Err(Error::config(
                    "system_memory_limit: a fraction in (0, 1], like 0.8",
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
        for bytes in [4095, 4 << 30] {
            let e = PipelineBuilder::default()
                .max_request_bytes(bytes)
                .build()
                .unwrap_err();
            assert!(e.to_string().contains("max_request_bytes"), "{e}");
        }
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
