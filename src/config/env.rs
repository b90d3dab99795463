//! The standard OpenTelemetry environment variables
//! (`OTEL_EXPORTER_OTLP_*`, `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`)
//! and otlpflow's own `OTLPFLOW_*` ones, applied to a builder.

use std::time::Duration;

use super::*;

/// Settings by name that an `OTEL_*` variable sets: they have no
/// `OTLPFLOW_*` one, so that no setting has two variables to rank.
const OTEL_COVERED: &[&str] = &[
    "endpoint",
    "protocol",
    "compression",
    "request_timeout",
    "service_name",
    "service_version",
    "tls_ca_file",
    "tls_client_cert",
    "tls_client_key",
    "metrics_interval",
    "metrics_temporality",
];

/// Settings `apply_flow_env` reads under their own variables (some of
/// them older than the rule, `OTLPFLOW_RATE_LIMIT` with its own format).
const FLOW_VARS: &[&str] = &[
    "policy",
    "memory_budget",
    "system_memory_limit",
    "rate_limit",
    "egress_byte_rate",
    "spool_dir",
    "spool_max_bytes",
    "endpoints",
    "failover",
    "concurrency",
];

/// The signal's part of a per-signal variable's name.
fn env_name(signal: Signal) -> &'static str {
    match signal {
        Signal::Traces => "TRACES",
        Signal::Logs => "LOGS",
        Signal::Metrics => "METRICS",
    }
}

impl PipelineBuilder {
    /// A builder configured from the standard OpenTelemetry environment
    /// variables (see [`PipelineBuilder::apply_env`]).
    pub fn from_env() -> Result<Self, Error> {
        PipelineBuilder::default().apply_env()
    }

    /// Applies the standard environment variables: `OTEL_SERVICE_NAME`,
    /// `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_METRIC_EXPORT_INTERVAL` (ms),
    /// `OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE`, and
    /// `OTEL_EXPORTER_OTLP_{ENDPOINT,
    /// PROTOCOL, HEADERS, COMPRESSION, TIMEOUT}` with their `_TRACES_`,
    /// `_LOGS_` and `_METRICS_` variants taking precedence for their
    /// signal; `_CERTIFICATE`, `_CLIENT_CERTIFICATE`, `_CLIENT_KEY` and
    /// `_INSECURE` (one TLS setup for all signals: the `_TRACES_` variant,
    /// else the general one); then otlpflow's own, `OTLPFLOW_<NAME>` for
    /// the settings by name no `OTEL_*` variable covers. Setters called
    /// afterwards override them (explicit setting > per-signal variable >
    /// general variable > default). A malformed variable is a
    /// configuration error naming it.
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
            Endpoint::parse(&v).map_err(|e| Error::config(format!("{name}: {}", e.message())))?;
            self.endpoint = Some(UrlText(v));
        }
        // The per-signal variables set that signal's overrides.
        for signal in Signal::ALL {
            let get = |suffix: &str| {
                let name = format!("OTEL_EXPORTER_OTLP_{}_{suffix}", env_name(signal));
                var(&name)
                    .filter(|v| !v.trim().is_empty())
                    .map(|v| (name, v))
            };
            let o = &mut self.signals[signal];
            if let Some((name, v)) = get("ENDPOINT") {
                let v = with_scheme(&v);
                Endpoint::parse(&v)
                    .map_err(|e| Error::config(format!("{name}: {}", e.message())))?;
                o.endpoint = Some(UrlText(v));
            }
            if let Some((name, v)) = get("PROTOCOL") {
                o.protocol = Some(
                    Protocol::parse(&v)
                        .map_err(|e| Error::config(format!("{name}: {}", e.message())))?,
                );
            }
            if let Some((name, v)) = get("COMPRESSION") {
                o.compression = Some(
                    Compression::parse(&v)
                        .map_err(|e| Error::config(format!("{name}: {}", e.message())))?,
                );
            }
            if let Some((name, v)) = get("TIMEOUT") {
                o.timeout = Some(parse_millis(&name, &v)?);
            }
            if let Some((name, v)) = get("HEADERS") {
                o.headers.0.extend(parse_key_values(&name, &v)?);
            }
        }
        let general = |suffix: &str| {
            let name = format!("OTEL_EXPORTER_OTLP_{suffix}");
            var(&name)
                .filter(|v| !v.trim().is_empty())
                .map(|v| (name, v))
        };
        if let Some((name, v)) = general("PROTOCOL") {
            self.protocol = Protocol::parse(&v)
                .map_err(|e| Error::config(format!("{name}: {}", e.message())))?;
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
            self.compression = Compression::parse(&v)
                .map_err(|e| Error::config(format!("{name}: {}", e.message())))?;
        }
        if let Some((name, v)) = general("TIMEOUT") {
            self.request_timeout = parse_millis(&name, &v)?;
        }
        if let Some((name, v)) = general("HEADERS") {
            for (k, val) in parse_key_values(&name, &v)? {
                self.headers.0.push((k, val));
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
        let name = "OTEL_METRIC_EXPORT_INTERVAL";
        if let Some(v) = var(name).filter(|v| !v.trim().is_empty()) {
            self.metrics_interval = parse_millis(name, &v)?;
        }
        let name = "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE";
        if let Some(v) = var(name).filter(|v| !v.trim().is_empty()) {
            // `lowmemory` differs from `delta` only for asynchronous
            // counters, which otlpflow's instruments are not.
            self.temporality = match v.trim().to_ascii_lowercase().as_str() {
                "cumulative" => crate::record::Temporality::Cumulative,
                "delta" | "lowmemory" => crate::record::Temporality::Delta,
                other => {
                    return Err(Error::config(format!(
                        "{name}: {other:?} is not cumulative, delta or lowmemory"
                    )))
                }
            };
        }
        self.apply_flow_env(&var)?.apply_named_env(&var)
    }

    /// `OTLPFLOW_<NAME>` for each setting by name (`named::SETTINGS`) that
    /// no `OTEL_*` variable sets and `apply_flow_env` does not read: the
    /// name in upper case, its value as `set` takes it (the OpenTelemetry
    /// SDKs' set-up from the environment, where no code can call a setter,
    /// still reaches `prometheus`, `self_metrics`, the spool, the retry
    /// and batch settings). Settings with a template in their name
    /// (headers, resource attributes, per-signal ones) have none.
    fn apply_named_env(mut self, var: &impl Fn(&str) -> Option<String>) -> Result<Self, Error> {
        for (name, _) in super::named::SETTINGS {
            if name.contains('<') || OTEL_COVERED.contains(name) || FLOW_VARS.contains(name) {
                continue;
            }
            let env = format!("OTLPFLOW_{}", name.to_ascii_uppercase());
            let Some(v) = var(&env).filter(|v| !v.trim().is_empty()) else {
                continue;
            };
            // `set`'s error names the setting and what it expects, never
            // the value; the variable is named in front of it.
            self = self
                .set(name, v.trim())
                .map_err(|e| Error::config(format!("{env}: {}", e.message())))?;
        }
        Ok(self)
    }

    /// otlpflow's own variables for flow control (the OpenTelemetry ones
    /// have no equivalent): `OTLPFLOW_POLICY` (`drop` or `block[:MS]`),
    /// `OTLPFLOW_MEMORY_BUDGET` (bytes, with an optional K/M/G suffix),
    /// `OTLPFLOW_RATE_LIMIT` (records per second; the burst is one second's
    /// worth), `OTLPFLOW_EGRESS_BYTES_PER_SECOND`, `OTLPFLOW_CONCURRENCY`
    /// (`adaptive`, `adaptive:MIN:MAX` or a fixed number); for a collector
    /// fleet `OTLPFLOW_ENDPOINTS` (base URLs, comma-separated) and
    /// `OTLPFLOW_FAILOVER` (`true` or `false`).
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
        if let Some(v) = get("OTLPFLOW_SYSTEM_MEMORY_LIMIT") {
            let f: f64 = v
                .parse()
                .map_err(|_| bad("OTLPFLOW_SYSTEM_MEMORY_LIMIT", &v, "a fraction like 0.8"))?;
            self.flow.system_memory_limit = Some(f);
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
        if let Some(v) = get("OTLPFLOW_SPOOL_DIR") {
            self = self.set("spool_dir", &v)?;
        }
        if let Some(v) = get("OTLPFLOW_SPOOL_MAX_BYTES") {
            self = self.set("spool_max_bytes", &v)?;
        }
        if let Some(v) = get("OTLPFLOW_ENDPOINTS") {
            self = self.set("endpoints", &v)?;
        }
        if let Some(v) = get("OTLPFLOW_FAILOVER") {
            self = self
                .set("failover", &v)
                .map_err(|_| bad("OTLPFLOW_FAILOVER", &v, "true or false"))?;
        }
        if let Some(v) = get("OTLPFLOW_CONCURRENCY") {
            self = super::named::apply_concurrency(self, &v).ok_or_else(|| {
                bad(
                    "OTLPFLOW_CONCURRENCY",
                    &v,
                    "adaptive, adaptive:MIN:MAX or a number",
                )
            })?;
        }
        Ok(self)
    }
}

fn parse_millis(name: &str, v: &str) -> Result<Duration, Error> {
    let ms: u64 = v
        .trim()
        .parse()
        .map_err(|_| Error::config(format!("{name}: {v:?} is not a number of milliseconds")))?;
    Ok(Duration::from_millis(ms))
}

/// Parses `k1=v1,k2=v2` with percent-encoded keys and values (W3C baggage
/// style, as the OpenTelemetry environment variables use).
///
/// Errors name the variable and the entry's position, never its text: the
/// entries of `OTEL_EXPORTER_OTLP_HEADERS` are credentials.
fn parse_key_values(var: &str, s: &str) -> Result<Vec<(String, String)>, Error> {
    let mut out = Vec::new();
    for (n, item) in s
        .split(',')
        .map(str::trim)
        .filter(|i| !i.is_empty())
        .enumerate()
    {
        let at = n + 1;
        let (k, v) = item.split_once('=').ok_or_else(|| {
            Error::config(format!("{var}: entry {at} (comma-separated) has no '='"))
        })?;
        let k = percent_decode(k.trim()).ok_or_else(|| {
            Error::config(format!(
                "{var}: entry {at}: bad percent-encoding in the key"
            ))
        })?;
        let v = percent_decode(v.trim()).ok_or_else(|| {
            Error::config(format!(
                "{var}: entry {at}: bad percent-encoding in the value"
            ))
        })?;
        if k.is_empty() {
            return Err(Error::config(format!("{var}: entry {at}: empty key")));
        }
        out.push((k, v));
    }
    Ok(out)
}

pub(super) fn percent_decode(s: &str) -> Option<String> {
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
    fn settings_without_an_otel_variable_have_an_otlpflow_one() {
        let vars = |k: &str| {
            match k {
                "OTLPFLOW_SELF_METRICS" => Some("true"),
                "OTLPFLOW_MAX_BATCH_ITEMS" => Some(" 7 "),
                "OTLPFLOW_PROMETHEUS" => Some("127.0.0.1:9464"),
                "OTLPFLOW_RETRY_MAX_ELAPSED" => Some("90s"),
                "OTLPFLOW_MAX_SCOPES" => Some("64"),
                // Named settings with an OTEL_ variable are read from it only.
                "OTLPFLOW_SERVICE_NAME" => Some("not-read"),
                "OTLPFLOW_ENDPOINT" => Some("http://not-read:4317"),
                _ => None,
            }
            .map(str::to_owned)
        };
        let c = PipelineBuilder::default()
            .apply_env_from(vars)
            .unwrap()
            .build()
            .unwrap();
        assert!(c.self_metrics);
        assert_eq!((c.max_batch_items, c.max_scopes), (7, 64));
        assert_eq!(c.prometheus, Some("127.0.0.1:9464".parse().unwrap()));
        assert_eq!(c.retry.max_elapsed, Duration::from_secs(90));
        assert!(c.resource_is_default);
        assert!(!format!("{:?}", c.signals[Signal::Traces].targets).contains("not-read"));
        // A value that does not parse names the variable, not the value.
        let e = PipelineBuilder::default()
            .apply_env_from(|k: &str| {
                (k == "OTLPFLOW_MAX_BATCH_ITEMS").then(|| "seven-s3cret".to_owned())
            })
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "configuration error: OTLPFLOW_MAX_BATCH_ITEMS: max_batch_items: expects a whole number"
        );
    }

    #[test]
    fn the_metrics_temporality_preference_is_read() {
        use crate::record::Temporality;
        let with = |v: &'static str| {
            PipelineBuilder::default().apply_env_from(move |k: &str| {
                (k == "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE").then(|| v.to_owned())
            })
        };
        for (v, t) in [
            ("delta", Temporality::Delta),
            ("LowMemory", Temporality::Delta),
            (" cumulative ", Temporality::Cumulative),
        ] {
            assert_eq!(with(v).unwrap().build().unwrap().temporality, t, "{v}");
        }
        let e = with("sometimes").err().unwrap();
        assert!(
            e.to_string().contains("TEMPORALITY_PREFERENCE") && e.to_string().contains("lowmemory"),
            "{e}"
        );
        let default = PipelineBuilder::default().apply_env_from(|_| None).unwrap();
        assert_eq!(
            default.build().unwrap().temporality,
            Temporality::Cumulative
        );
    }

    #[test]
    fn the_metric_export_interval_is_read_in_milliseconds() {
        let with = |v: &'static str| {
            PipelineBuilder::default().apply_env_from(move |k: &str| {
                (k == "OTEL_METRIC_EXPORT_INTERVAL").then(|| v.to_owned())
            })
        };
        let c = with("15000").unwrap().build().unwrap();
        assert_eq!(c.metrics_interval, Duration::from_secs(15));
        let e = with("15s").err().unwrap();
        assert!(e.to_string().contains("OTEL_METRIC_EXPORT_INTERVAL"), "{e}");
        let c = PipelineBuilder::default()
            .apply_env_from(|_| None)
            .unwrap()
            .build()
            .unwrap();
        assert_eq!(c.metrics_interval, Duration::from_secs(60));
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
        assert_eq!(c.signals.traces.endpoint().host, "traces");
        assert_eq!(c.signals.traces.http_path(), "/");
        assert_eq!(c.signals.traces.compression, Compression::Gzip);
        assert_eq!(c.signals.traces.timeout, Duration::from_millis(2500));
        assert_eq!(c.signals.traces.headers.0[0].1.to_str().unwrap(), "s=cret");
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
        assert_eq!(c.signals.traces.compression, Compression::None);
        // Malformed variables name themselves.
        let bad = |k: &str| (k == "OTEL_EXPORTER_OTLP_TIMEOUT").then(|| "soon".to_owned());
        let e = PipelineBuilder::default().apply_env_from(bad).unwrap_err();
        assert!(e.to_string().contains("OTEL_EXPORTER_OTLP_TIMEOUT"), "{e}");
        let bad =
            |k: &str| (k == "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL").then(|| "http/json".to_owned());
        let e = PipelineBuilder::default().apply_env_from(bad).unwrap_err();
        let e = e.to_string();
        assert!(
            e.starts_with("configuration error: OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: "),
            "{e}"
        );
        assert_eq!(e.matches("configuration error").count(), 1, "{e}");
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
        assert_eq!(c.signals.traces.endpoint().scheme, "http");
        let c = PipelineBuilder::default()
            .apply_env_from(env("false"))
            .unwrap()
            .build()
            .unwrap();
        assert_eq!(c.signals.traces.endpoint().scheme, "https");
        assert!(PipelineBuilder::default()
            .apply_env_from(env("maybe"))
            .is_err());
    }

    #[test]
    fn otlp_http_endpoint_rules() {
        let b = || PipelineBuilder::default().protocol(Protocol::HttpProtobuf);
        let c = b().build().unwrap();
        assert_eq!(
            (
                c.signals.traces.endpoint().port,
                c.signals.traces.http_path()
            ),
            (4318, "/v1/traces")
        );
        let c = b().endpoint("http://gw:9000/otlp/").build().unwrap();
        assert_eq!(c.signals.traces.http_path(), "/otlp/v1/traces");
        let c = b()
            .traces_endpoint("http://gw:9000/custom/traces")
            .endpoint("http://x:1")
            .build()
            .unwrap();
        assert_eq!(
            (
                c.signals.traces.endpoint().host.as_str(),
                c.signals.traces.http_path()
            ),
            ("gw", "/custom/traces")
        );
        assert_eq!(
            PipelineBuilder::default()
                .build()
                .unwrap()
                .signals
                .traces
                .endpoint()
                .port,
            4317
        );
        assert!(Protocol::parse("http/json")
            .unwrap_err()
            .to_string()
            .contains("http/json"));
    }

    #[test]
    fn a_fleet_from_the_environment() {
        let env = |k: &str| -> Option<String> {
            match k {
                "OTLPFLOW_ENDPOINTS" => Some("http://c0:4317, http://c1:4317".to_owned()),
                "OTLPFLOW_FAILOVER" => Some("true".to_owned()),
                _ => None,
            }
        };
        let c = PipelineBuilder::default()
            .apply_env_from(env)
            .unwrap()
            .build()
            .unwrap();
        let hosts: Vec<&str> = c
            .signals
            .logs
            .targets
            .iter()
            .map(|(e, _)| e.host.as_str())
            .collect();
        assert_eq!(hosts, ["c0", "c1"]);
        assert!(c.flow.failover);
        let bad = |k: &str| (k == "OTLPFLOW_FAILOVER").then(|| "perhaps".to_owned());
        let e = PipelineBuilder::default().apply_env_from(bad).unwrap_err();
        assert!(e.to_string().contains("OTLPFLOW_FAILOVER"), "{e}");
    }
}
