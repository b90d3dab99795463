//! Settings by name: `set("memory_budget", "64M")`. One entry point that
//! reaches every setter of the builder with text values, for hosts where a
//! typed setter per setting is a burden (the C ABI's `otlpflow_config_set`,
//! Python's `Pipeline(**settings)`, configuration files). The names are the
//! builder's method names; [`SETTINGS`] lists them with the value each takes.
//!
//! Errors name the setting and what it takes, never the value given: header
//! values and resource attributes can be credentials.

use super::text::{list, number, pair, parse_bool, rate, records, signal_named};
use super::*;

/// A comma-separated list of endpoint URLs.
fn urls(v: &str) -> Vec<UrlText> {
    list(v).into_iter().map(UrlText).collect()
}

/// Every setting name (`<signal>` is `traces`, `logs` or `metrics`;
/// `<key>` any header name or attribute key) with the value it takes.
pub const SETTINGS: &[(&str, &str)] = &[
    (
        "endpoint",
        "URL, http:// or https:// (the base for OTLP/HTTP)",
    ),
    (
        "endpoints",
        "base URLs, comma-separated: a fleet to route between",
    ),
    (
        "endpoints_dns",
        "base URL whose host is a DNS name for the fleet",
    ),
    ("dns_interval", "duration (default 5s)"),
    ("spool_dir", "directory of the disk spool"),
    ("spool_max_bytes", "size (default 1G)"),
    ("spool_sync", "segment, never, or a duration"),
    ("spool_full", "drop_oldest or refuse"),
    ("<signal>.endpoint", "URL used as it is"),
    (
        "<signal>.endpoints",
        "URLs used as they are, comma-separated",
    ),
    ("<signal>.routing", "trace_id, service or round_robin"),
    ("<signal>.protocol", "grpc or http/protobuf"),
    ("<signal>.compression", "none, gzip or zstd"),
    ("<signal>.timeout", "duration"),
    (
        "<signal>.header.<key>",
        "header value, added to the general ones",
    ),
    ("protocol", "grpc or http/protobuf"),
    ("http_version", "1.1 or 2 (OTLP/HTTP only)"),
    ("compression", "none, gzip or zstd"),
    ("compression_level", "integer (gzip 0-9, zstd -7 to 19)"),
    ("header.<key>", "header value"),
    ("service_name", "text"),
    ("service_version", "text"),
    ("resource.<key>", "text attribute of the resource"),
    ("tls_ca_file", "path of a PEM file of trusted CAs"),
    (
        "tls_client_cert",
        "path of a PEM client certificate (with tls_client_key)",
    ),
    (
        "tls_client_key",
        "path of a PEM private key (with tls_client_cert)",
    ),
    ("tls_insecure_skip_verify", "true or false"),
    ("shards", "count (0 = one per CPU)"),
    ("workers", "count (0 = one per CPU)"),
    ("ring_bytes", "size"),
    ("ring_eviction", "true or false"),
    ("max_batch_items", "count"),
    ("max_batch_bytes", "size"),
    ("max_request_bytes", "size"),
    ("linger", "duration"),
    ("max_in_flight", "count (fixed concurrency per worker)"),
    ("concurrency", "a count, adaptive, or adaptive:MIN:MAX"),
    ("adaptive_concurrency", "MIN,MAX"),
    ("adaptive_batch", "MIN_ITEMS,LATENCY_TARGET"),
    ("connections_per_worker", "count"),
    ("keepalive", "duration"),
    ("idle_timeout", "duration"),
    ("request_timeout", "duration"),
    ("policy", "drop, block or block:MILLISECONDS"),
    ("retry_initial_backoff", "duration"),
    ("retry_max_backoff", "duration"),
    ("retry_max_elapsed", "duration"),
    ("retry_multiplier", "number >= 1"),
    ("retry_queue", "keep or drop_oldest"),
    ("failover", "true or false (several endpoints)"),
    ("breaker_threshold", "count"),
    ("breaker_min_open", "duration"),
    ("breaker_max_open", "duration"),
    ("memory_budget", "size"),
    ("system_memory_limit", "fraction of memory in use, like 0.8"),
    ("rate_limit", "records per second, or RATE,BURST"),
    ("byte_rate_limit", "bytes per second (size), or RATE,BURST"),
    ("egress_byte_rate", "bytes per second (size), or RATE,BURST"),
    (
        "scope_rate_limit",
        "records per second per scope, or RATE,BURST",
    ),
    ("window_limit", "MAX,WINDOW (records per window duration)"),
    ("worker_cpu_budget", "fraction of a CPU in (0, 1]"),
    (
        "prometheus",
        "socket address to serve /metrics on, e.g. 127.0.0.1:9464",
    ),
    ("self_metrics", "true or false"),
    ("metrics_interval", "duration"),
    ("metrics_temporality", "cumulative or delta"),
    ("cardinality_limit", "count"),
    ("max_scopes", "count"),
];

/// `adaptive`, `adaptive:MIN:MAX` or a fixed count, applied to `b`.
pub(super) fn apply_concurrency(mut b: PipelineBuilder, v: &str) -> Option<PipelineBuilder> {
    b.concurrency_set = true;
    match v.trim().split(':').collect::<Vec<_>>()[..] {
        ["adaptive"] => b.flow.adaptive_concurrency = Some((1, b.max_in_flight.max(64))),
        ["adaptive", min, max] => {
            b.flow.adaptive_concurrency = Some((min.parse().ok()?, max.parse().ok()?))
        }
        [n] => {
            b.max_in_flight = n.parse().ok()?;
            b.flow.adaptive_concurrency = None;
        }
        _ => return None,
    }
    Some(b)
}

impl PipelineBuilder {
    /// Applies one setting by name (see [`SETTINGS`] for the names and
    /// values). An unknown name or a value that does not parse is a
    /// configuration error naming the setting; the value never appears in
    /// it. Like the typed setters, nothing is checked against other
    /// settings until [`PipelineBuilder::build`].
    pub fn set(self, name: &str, value: &str) -> Result<Self, Error> {
        let want = |what: &str| Error::config(format!("{name}: expects {what}"));
        let expects = |name_pattern: &str| {
            SETTINGS
                .iter()
                .find(|(n, _)| *n == name_pattern)
                .map_or("a valid value", |(_, what)| *what)
        };
        let duration = |v: &str| parse_duration(v).ok_or_else(|| want("a duration like 250ms"));
        let size = |v: &str| parse_bytes(v).ok_or_else(|| want("a size like 64K or 8M"));
        let count = |v: &str| number::<usize>(v).ok_or_else(|| want("a whole number"));
        let boolean = |v: &str| parse_bool(v).ok_or_else(|| want("true or false"));
        let compression = |v: &str| Compression::parse(v).map_err(|_| want("none, gzip or zstd"));
        let mut b = self;

        if let Some(key) = name.strip_prefix("header.") {
            return Ok(b.header(key, value));
        }
        if let Some(key) = name.strip_prefix("resource.") {
            return Ok(b.resource_attribute(key, value));
        }
        if let Some((signal, rest)) = name.split_once('.') {
            let signal = signal_named(signal)
                .ok_or_else(|| Error::config(format!("{name}: unknown setting")))?;
            if let Some(key) = rest.strip_prefix("header.") {
                return Ok(b.signal_header(signal, key, value));
            }
            let o = &mut b.signals[signal];
            match rest {
                "endpoint" => o.endpoint = Some(UrlText(value.trim().to_owned())),
                "endpoints" => o.endpoints = Some(urls(value)),
                "routing" => o.routing = Some(Routing::parse(value)?),
                "protocol" => {
                    o.protocol = Some(
                        Protocol::parse(value.trim()).map_err(|_| want("grpc or http/protobuf"))?,
                    )
                }
                "compression" => o.compression = Some(compression(value)?),
                "timeout" => o.timeout = Some(duration(value)?),
                _ => return Err(Error::config(format!("{name}: unknown setting"))),
            }
            return Ok(b);
        }
        let v = value.trim();
        match name {
            "endpoint" => b.endpoint = Some(UrlText(v.to_owned())),
            "endpoints" => b.endpoints = Some(urls(v)),
            "spool_dir" => {
                let max = b.spool.as_ref().map_or(1 << 30, |s| s.1);
                b.spool = Some((v.into(), max));
            }
            "spool_sync" => {
                b.spool_sync = match v {
                    "segment" => SpoolSync::Segment,
                    "never" => SpoolSync::Never,
                    d => SpoolSync::Every(duration(d)?),
                }
            }
            "spool_full" => {
                b.spool_full = match v {
                    "drop_oldest" => SpoolFull::DropOldest,
                    "refuse" => SpoolFull::Refuse,
                    _ => return Err(want(expects(name))),
                }
            }
            "spool_max_bytes" => {
                let dir = b.spool.take().map(|s| s.0).unwrap_or_default();
                b.spool = Some((dir, size(v)?));
            }
            "endpoints_dns" => {
                let interval = b.dns.as_ref().map_or(Duration::from_secs(5), |d| d.1);
                b.dns = Some((UrlText(v.to_owned()), interval));
            }
            "dns_interval" => {
                let url = b.dns.take().map(|d| d.0).unwrap_or_default();
                b.dns = Some((url, duration(v)?));
            }
            "protocol" => b.protocol = Protocol::parse(v).map_err(|_| want(expects(name)))?,
            "http_version" => {
                b.http_version = match v {
                    "1.1" | "1" | "http/1.1" => HttpVersion::Http1,
                    "2" | "h2" | "http/2" => HttpVersion::Http2,
                    _ => return Err(want(expects(name))),
                }
            }
            "compression" => b.compression = compression(v)?,
            "compression_level" => {
                b.compression_level = number(v).ok_or_else(|| want(expects(name)))?
            }
            "service_name" => b = b.service_name(value),
            "service_version" => b = b.service_version(value),
            "tls_ca_file" => b.tls.ca_file = Some(v.into()),
            "tls_client_cert" | "tls_client_key" => {
                let (mut cert, mut key) = b.tls.client_cert.take().unwrap_or_default();
                if name == "tls_client_cert" {
                    cert = v.into();
                } else {
                    key = v.into();
                }
                b.tls.client_cert = Some((cert, key));
            }
            "tls_insecure_skip_verify" => b.tls.insecure_skip_verify = boolean(v)?,
            "shards" => b.shards = Some(count(v)?),
            "workers" => b.workers = Some(count(v)?),
            "ring_bytes" => b.ring_bytes = size(v)? as usize,
            "ring_eviction" => b.ring_eviction = boolean(v)?,
            "max_batch_items" => {
                b.max_batch_items = count(v)?;
                b.batch_set = true;
            }
            "max_batch_bytes" => b.max_batch_bytes = size(v)? as usize,
            "max_request_bytes" => b.max_request_bytes = size(v)? as usize,
            "linger" => b.linger = duration(v)?,
            "max_in_flight" => {
                b.max_in_flight = count(v)?;
                b.concurrency_set = true;
            }
            "concurrency" => {
                b = apply_concurrency(b, v).ok_or_else(|| want(expects(name)))?;
            }
            "adaptive_concurrency" => {
                let mm = pair(v, number, number, |_| None).ok_or_else(|| want(expects(name)))?;
                b.flow.adaptive_concurrency = Some(mm);
                b.concurrency_set = true;
            }
            "adaptive_batch" => {
                let ab =
                    pair(v, number, parse_duration, |_| None).ok_or_else(|| want(expects(name)))?;
                b.adaptive_batch = Some(ab);
                b.batch_set = true;
            }
            "connections_per_worker" => b.connections_per_worker = count(v)?,
            "keepalive" => b.keepalive = duration(v)?,
            "idle_timeout" => b.idle_timeout = duration(v)?,
            "request_timeout" => b.request_timeout = duration(v)?,
            "policy" => b.policy = Policy::parse(v).ok_or_else(|| want(expects(name)))?,
            "retry_initial_backoff" => b.retry.initial_backoff = duration(v)?,
            "retry_max_backoff" => b.retry.max_backoff = duration(v)?,
            "retry_max_elapsed" => b.retry.max_elapsed = duration(v)?,
            "retry_multiplier" => {
                b.retry.multiplier = number(v).ok_or_else(|| want(expects(name)))?
            }
            "failover" => {
                b.flow.failover = parse_bool(v).ok_or_else(|| want(expects(name)))?;
            }
            "retry_queue" => {
                b.flow.retry_queue = match v {
                    "keep" => RetryQueue::Keep,
                    "drop_oldest" => RetryQueue::DropOldest,
                    _ => return Err(want(expects(name))),
                }
            }
            "breaker_threshold" => {
                b.flow.breaker.threshold = number(v).ok_or_else(|| want("a whole number"))?
            }
            "breaker_min_open" => b.flow.breaker.min_open = duration(v)?,
            "breaker_max_open" => b.flow.breaker.max_open = duration(v)?,
            "memory_budget" => b.flow.memory_budget = Some(size(v)?),
            "system_memory_limit" => {
                b.flow.system_memory_limit = Some(number(v).ok_or_else(|| want(expects(name)))?)
            }
            "rate_limit" => b.rate_limit = Some(records(v).ok_or_else(|| want(expects(name)))?),
            "scope_rate_limit" => {
                b.flow.scope_rate_limit = Some(records(v).ok_or_else(|| want(expects(name)))?)
            }
            "byte_rate_limit" | "egress_byte_rate" => {
                let r = rate(v, parse_bytes).ok_or_else(|| want(expects(name)))?;
                if name == "byte_rate_limit" {
                    b.byte_rate_limit = Some(r);
                } else {
                    b.flow.egress_byte_rate = Some(r);
                }
            }
            "window_limit" => {
                let w =
                    pair(v, number, parse_duration, |_| None).ok_or_else(|| want(expects(name)))?;
                b.flow.window_limit = Some(w);
            }
            "worker_cpu_budget" => {
                b.flow.worker_cpu_budget = Some(number(v).ok_or_else(|| want(expects(name)))?)
            }
            "prometheus" => b.prometheus = Some(number(v).ok_or_else(|| want(expects(name)))?),
            "self_metrics" => b.self_metrics = boolean(v)?,
            "metrics_interval" => b.metrics_interval = duration(v)?,
            "metrics_temporality" => {
                b.temporality = match v {
                    "cumulative" => crate::record::Temporality::Cumulative,
                    "delta" => crate::record::Temporality::Delta,
                    _ => return Err(want(expects(name))),
                }
            }
            "cardinality_limit" => b.cardinality_limit = count(v)?,
            "max_scopes" => b.max_scopes = count(v)?,
            _ => return Err(Error::config(format!("{name}: unknown setting"))),
        }
        Ok(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listed_setting_is_reachable_and_builds() {
        let cases = [
            ("endpoint", "http://127.0.0.1:4317"),
            ("traces.endpoint", "http://127.0.0.1:4999/v1/traces"),
            ("endpoints", "http://127.0.0.1:4317, http://127.0.0.1:4318"),
            (
                "logs.endpoints",
                "http://127.0.0.1:5001/v1/logs,http://127.0.0.1:5002/v1/logs",
            ),
            ("metrics.routing", "round_robin"),
            ("logs.compression", "gzip"),
            ("metrics.protocol", "grpc"),
            ("metrics.timeout", "3s"),
            ("logs.header.x-tenant", "t1"),
            ("protocol", "http/protobuf"),
            ("http_version", "2"),
            ("compression", "zstd"),
            ("compression_level", "3"),
            ("header.authorization", "Bearer s3cret"),
            ("service_name", "api"),
            ("service_version", "1.2"),
            ("resource.deployment.environment", "prod"),
            ("tls_insecure_skip_verify", "false"),
            ("shards", "2"),
            ("workers", "1"),
            ("ring_bytes", "1M"),
            ("ring_eviction", "true"),
            ("max_batch_items", "256"),
            ("max_batch_bytes", "512K"),
            ("max_request_bytes", "4M"),
            ("linger", "20ms"),
            ("max_in_flight", "8"),
            ("adaptive_concurrency", "1,16"),
            ("concurrency", "adaptive:2:32"),
            ("adaptive_batch", "64,50ms"),
            ("connections_per_worker", "2"),
            ("keepalive", "30s"),
            ("idle_timeout", "90s"),
            ("request_timeout", "5s"),
            ("policy", "block:250"),
            ("retry_initial_backoff", "50ms"),
            ("retry_max_backoff", "2s"),
            ("retry_max_elapsed", "30s"),
            ("retry_multiplier", "1.5"),
            ("retry_queue", "drop_oldest"),
            ("failover", "true"),
            ("breaker_threshold", "3"),
            ("breaker_min_open", "100ms"),
            ("breaker_max_open", "5s"),
            ("memory_budget", "16M"),
            ("system_memory_limit", "0.95"),
            ("rate_limit", "10000,20000"),
            ("byte_rate_limit", "10M"),
            ("egress_byte_rate", "20M,1M"),
            ("scope_rate_limit", "500"),
            ("window_limit", "1000,1s"),
            ("worker_cpu_budget", "0.5"),
            ("prometheus", "127.0.0.1:0"),
            ("self_metrics", "true"),
            ("metrics_interval", "10s"),
            ("metrics_temporality", "delta"),
            ("cardinality_limit", "500"),
            ("max_scopes", "100"),
            ("tls_ca_file", "/etc/ssl/ca.pem"),
            ("tls_client_cert", "/etc/ssl/client.pem"),
            ("tls_client_key", "/etc/ssl/client.key"),
        ];
        let mut b = PipelineBuilder::default();
        for (name, value) in cases {
            b = b.set(name, value).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        let c = b.clone().build().expect("builds");
        assert_eq!(c.signals[Signal::Traces].protocol, Protocol::HttpProtobuf);
        assert_eq!(c.http_version, HttpVersion::Http2);
        assert_eq!(
            c.policy,
            Policy::Block {
                max_wait: Duration::from_millis(250)
            }
        );
        assert_eq!(c.flow.adaptive_concurrency, Some((2, 32)));
        assert_eq!(c.flow.memory_budget, Some(16 << 20));
        assert_eq!(c.rate_limit, Some((10000.0, 20000)));
        assert_eq!(
            c.flow.egress_byte_rate,
            Some((20.0 * (1 << 20) as f64, 1 << 20))
        );
        assert_eq!(c.signals[Signal::Metrics].timeout, Duration::from_secs(3));
        assert_eq!(c.signals[Signal::Logs].compression, Compression::Gzip);
        assert_eq!(c.signals[Signal::Metrics].protocol, Protocol::Grpc);
        assert_eq!(c.signals[Signal::Logs].protocol, Protocol::HttpProtobuf);
        assert_eq!(c.signals[Signal::Traces].endpoint().port, 4999);
        // The signal's own endpoint wins over the general list; its own list
        // over everything.
        assert_eq!(c.signals[Signal::Traces].targets.len(), 1);
        let logs: Vec<_> = c.signals[Signal::Logs]
            .targets
            .iter()
            .map(|(e, p)| (e.port, p.as_str()))
            .collect();
        assert_eq!(logs, [(5001, "/v1/logs"), (5002, "/v1/logs")]);
        let metrics = &c.signals[Signal::Metrics];
        assert_eq!(metrics.targets.len(), 2);
        assert_eq!(metrics.targets[1].1, "/v1/metrics");
        assert_eq!(metrics.routing, Routing::RoundRobin);
        assert_eq!(c.signals[Signal::Logs].routing, Routing::TraceId);
        assert_eq!(c.retry.multiplier, 1.5);
        assert_eq!(c.flow.breaker.threshold, 3);
        assert!(c.self_metrics);
        assert!(c.ring_eviction);
        // Every plain name in SETTINGS is among the cases above, or in
        // the DNS test below.
        let dns = [
            "endpoints_dns",
            "dns_interval",
            "spool_dir",
            "spool_max_bytes",
            "spool_sync",
            "spool_full",
        ];
        for (pattern, _) in SETTINGS.iter().filter(|(p, _)| !p.contains('<')) {
            assert!(
                cases.iter().any(|(n, _)| n == pattern) || dns.contains(pattern),
                "{pattern} untested"
            );
        }
    }

    #[test]
    fn errors_name_the_setting_never_the_value() {
        let b = PipelineBuilder::default();
        let e = b
            .clone()
            .set("memory_budget", "lots-s3cret")
            .unwrap_err()
            .to_string();
        assert!(e.contains("memory_budget") && !e.contains("s3cret"), "{e}");
        let e = b
            .clone()
            .set("no_such_thing", "s3cret")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("unknown setting") && !e.contains("s3cret"),
            "{e}"
        );
        let e = b
            .clone()
            .set("spans.endpoint", "x")
            .unwrap_err()
            .to_string();
        assert!(e.contains("spans.endpoint: unknown setting"), "{e}");
        // Half a client certificate is refused at build, naming both.
        let e = b
            .set("tls_client_cert", "/c.pem")
            .unwrap()
            .build()
            .unwrap_err()
            .to_string();
        assert!(e.contains("tls_client_key"), "{e}");
    }

    #[test]
    fn dns_endpoints_by_name_resolve_with_the_given_resolver() {
        let c = PipelineBuilder::default()
            .resolver(Resolver::new(|host| {
                assert_eq!(host, "collectors.internal");
                Ok(vec![
                    "10.0.0.2".parse().unwrap(),
                    "10.0.0.1".parse().unwrap(),
                ])
            }))
            .set("dns_interval", "250ms")
            .unwrap()
            .set("endpoints_dns", "http://collectors.internal:4317")
            .unwrap()
            .set("metrics.endpoint", "http://127.0.0.1:9/v1/metrics")
            .unwrap()
            .build()
            .unwrap();
        let d = c.dns.as_ref().unwrap();
        assert_eq!(d.interval, Duration::from_millis(250));
        assert_eq!(d.signals, [Signal::Traces, Signal::Logs]);
        // Sorted, one endpoint per address, the port of the URL.
        let keys: Vec<String> = c.signals[Signal::Traces]
            .targets
            .iter()
            .map(|(e, _)| e.address())
            .collect();
        assert_eq!(keys, ["10.0.0.1:4317", "10.0.0.2:4317"]);
        assert_eq!(c.signals[Signal::Metrics].targets.len(), 1);
    }
}
