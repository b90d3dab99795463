//! The public face of a running pipeline: [`Pipeline`] and starting one
//! from a [`PipelineBuilder`].

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use super::{fork, BatchResult, Engine, Pipeline, PipelineCore, Scope, NEXT_PIPELINE};
use crate::config::{Config, PipelineBuilder};
use crate::error::{Error, RecordError};
use crate::metrics::{Counter, Gauge, Histogram, Identity, Instrument, Kind, UpDownCounter};
use crate::record::span::Head;
use crate::record::wire::write_into;
use crate::record::{LogRecord, MetricPoint, OwnedValue, Signal, Span};
use crate::stats::{self, Stats};

impl PipelineBuilder {
    /// Validates the settings and starts the pipeline's worker threads.
    pub fn start(self) -> Result<Pipeline, Error> {
        Pipeline::start(self.build()?)
    }
}

impl Pipeline {
    /// Starts configuring a pipeline.
    pub fn builder() -> PipelineBuilder {
        PipelineBuilder::default()
    }

    pub(crate) fn start(config: Config) -> Result<Pipeline, Error> {
        let id = NEXT_PIPELINE.fetch_add(1, Ordering::Relaxed);
        let prometheus = config.prometheus;
        let (inner, threads) = Engine::launch(config, id, Default::default(), None)?;
        let core = Arc::new(PipelineCore {
            engine: fork::EngineSlot::new(inner),
            generation: AtomicU64::new(fork::generation()),
            threads: Mutex::new(threads),
            restart: Mutex::new(()),
            collector: AtomicBool::new(false),
            prometheus: Mutex::new(None),
        });
        fork::register(&core);
        let pipeline = Pipeline { core };
        if pipeline.core.engine().config.self_metrics {
            pipeline.core.start_collector();
        }
        if let Some(addr) = prometheus {
            // The server holds a weak handle: it never keeps the pipeline
            // alive, and answers 503 once the pipeline is gone.
            let weak = Arc::downgrade(&pipeline.core);
            let server = crate::prometheus::Server::start(addr, move || {
                let p = Pipeline {
                    core: weak.upgrade()?,
                };
                Some(crate::prometheus::Scrape {
                    stats: p.stats(),
                    health: p.health(),
                    ring_fill: p.ring_fill(),
                    endpoints: p.endpoint_stats(),
                })
            })
            .map_err(|e| Error::config(format!("prometheus: cannot listen on {addr}: {e}")))?;
            *pipeline.core.prometheus.lock() = Some(server);
        }
        Ok(pipeline)
    }

    /// The engine, restarted first if this process is a fork child that has
    /// not used the pipeline since the fork. One relaxed load on the hot path.
    #[inline]
    pub(super) fn engine(&self) -> &Engine {
        if fork::generation() != self.core.generation.load(Ordering::Relaxed) {
            self.core.restart_after_fork();
        }
        self.core.engine()
    }

    /// Registers (or finds) an instrumentation scope.
    pub fn scope(&self, name: &str, version: &str) -> Scope {
        self.scope_with_attributes(name, version, &[])
    }

    /// The temporality of sums and histograms
    /// (`PipelineBuilder::metrics_temporality`).
    #[cfg_attr(not(feature = "opentelemetry"), allow(dead_code))]
    pub(crate) fn metrics_temporality(&self) -> crate::record::Temporality {
        self.engine().config.temporality
    }

    /// The bound on distinct scopes (`PipelineBuilder::max_scopes`).
    #[cfg_attr(not(feature = "opentelemetry"), allow(dead_code))]
    pub(crate) fn max_scopes(&self) -> usize {
        self.engine().config.max_scopes
    }

    /// Registers (or finds) an instrumentation scope with attributes.
    pub fn scope_with_attributes(
        &self,
        name: &str,
        version: &str,
        attributes: &[(String, OwnedValue)],
    ) -> Scope {
        self.engine().scope(name, version, attributes)
    }

    /// Records one finished span. Never allocates or takes a lock on the
    /// common path; under `Policy::Block` a full ring parks the caller up to
    /// the configured wait. A span without a trace id or a span id (all
    /// zero; see [`Span::has_ids`]) is refused as `Invalid` and counted.
    #[inline]
    pub fn record_span(&self, scope: &Scope, span: &Span<'_>) -> Result<(), RecordError> {
        if !span.has_ids() {
            return Err(self.refuse_invalid(Signal::Traces));
        }
        self.engine().record_encoded(
            scope,
            Signal::Traces,
            || span.encoded_len(),
            |buf, scratch| {
                write_into(buf, scratch, |w| {
                    span.encode_fields(w, Head::Fields, span.attribute_set)
                })
            },
        )
    }

    /// Counts one record of `signal` the host could not even express as a
    /// record (a malformed span from a binding, say) as offered and
    /// dropped as `invalid`, so that it is accounted for like any other
    /// refusal. Returns the error to hand back.
    pub fn refuse_invalid(&self, signal: Signal) -> RecordError {
        self.engine().refuse_offered(signal, RecordError::Invalid)
    }

    /// Records one log record, as `record_span` does a span.
    #[inline]
    pub fn record_log(&self, scope: &Scope, log: &LogRecord<'_>) -> Result<(), RecordError> {
        let inner = self.engine();
        if !log.severity_number.is_valid() {
            return Err(inner.refuse_offered(Signal::Logs, RecordError::Invalid));
        }
        inner.record_encoded(
            scope,
            Signal::Logs,
            || log.encoded_len(),
            |buf, scratch| write_into(buf, scratch, |w| log.encode_fields(w)),
        )
    }

    /// Records one metric data point the host aggregated itself. Points of
    /// the same metric (name, unit, description, type) that meet in a batch
    /// are exported as one `Metric`. A malformed point (no name, histogram
    /// buckets that do not match its bounds or count) is refused as
    /// `Invalid` and counted.
    #[inline]
    pub fn record_metric(&self, scope: &Scope, point: &MetricPoint<'_>) -> Result<(), RecordError> {
        let inner = self.engine();
        if crate::record::metric::invalid(point).is_some() {
            return Err(inner.refuse_offered(Signal::Metrics, RecordError::Invalid));
        }
        inner.record_encoded(
            scope,
            Signal::Metrics,
            || point.encoded_len(),
            |buf, scratch| write_into(buf, scratch, |w| point.encode_fields(w)),
        )
    }

    /// A monotonic counter (exported as a cumulative or delta sum, see
    /// `PipelineBuilder::metrics_temporality`). Like every instrument:
    /// asked for again with the same scope, name (regardless of ASCII
    /// case), unit and description (and, for a histogram, bounds), it is
    /// the same instrument, one stream, as the OpenTelemetry API specifies.
    pub fn counter(&self, scope: &Scope, name: &str, unit: &str, description: &str) -> Counter {
        Counter(self.instrument(Kind::Counter, scope, name, unit, description, Vec::new()))
    }

    /// A counter that can go down (a non-monotonic sum).
    pub fn up_down_counter(
        &self,
        scope: &Scope,
        name: &str,
        unit: &str,
        description: &str,
    ) -> UpDownCounter {
        UpDownCounter(self.instrument(
            Kind::UpDownCounter,
            scope,
            name,
            unit,
            description,
            Vec::new(),
        ))
    }

    /// A gauge: the last value set, per attribute set.
    pub fn gauge(&self, scope: &Scope, name: &str, unit: &str, description: &str) -> Gauge {
        Gauge(self.instrument(Kind::Gauge, scope, name, unit, description, Vec::new()))
    }

    /// An explicit-bucket histogram with these bucket bounds (finite,
    /// strictly increasing; empty for the OpenTelemetry defaults).
    pub fn histogram(
        &self,
        scope: &Scope,
        name: &str,
        unit: &str,
        description: &str,
        bounds: &[f64],
    ) -> Result<Histogram, Error> {
        if bounds.iter().any(|b| !b.is_finite()) || bounds.windows(2).any(|w| w[0] >= w[1]) {
            return Err(Error::config(format!(
                "histogram {name}: bounds must be finite and strictly increasing"
            )));
        }
        let bounds = if bounds.is_empty() {
            crate::metrics::DEFAULT_BOUNDS.to_vec()
        } else {
            bounds.to_vec()
        };
        Ok(Histogram(self.instrument(
            Kind::Histogram,
            scope,
            name,
            unit,
            description,
            bounds,
        )))
    }

    fn instrument(
        &self,
        kind: Kind,
        scope: &Scope,
        name: &str,
        unit: &str,
        description: &str,
        bounds: Vec<f64>,
    ) -> Arc<Instrument> {
        let inner = self.engine();
        let mut all = inner.instruments.write();
        // The same identity is the same instrument (see
        // `metrics::Instruments`): one stream, however often it is asked
        // for. Each call used to add one, kept for the pipeline's life and
        // exported as a stream of its own for the same metric.
        let limit = inner.config.cardinality_limit;
        let identity = Identity::new(kind, *scope, name, unit, description, &bounds);
        let i = all.get_or_make(identity, || {
            Instrument::new(kind, *scope, name, unit, description, bounds, limit)
        });
        drop(all);
        self.core.start_collector();
        i
    }

    /// Collects every instrument now and records its data points (the
    /// collector thread does this every `metrics_interval`; `flush` and
    /// `shutdown` do it first). Returns the points recorded.
    pub fn collect_metrics(&self) -> u64 {
        self.engine().collect_metrics()
    }

    /// Records many spans; returns how many were accepted and dropped. One
    /// refusal does not stop the others.
    pub fn record_batch(&self, scope: &Scope, spans: &[Span<'_>]) -> BatchResult {
        let mut r = BatchResult::default();
        for s in spans {
            match self.record_span(scope, s) {
                Ok(()) => r.accepted += 1,
                Err(_) => r.dropped += 1,
            }
        }
        r
    }

    /// Replaces `signal`'s endpoints while the pipeline runs (base URLs, as
    /// `PipelineBuilder::endpoints` takes them; at most 256). The ring is
    /// rebuilt over the new set, which moves about 1/N of the traces when
    /// an endpoint joins N-1 others; an endpoint that leaves keeps sending
    /// what it already holds, and what it still holds when a later change
    /// gives its lane to a new endpoint goes there. Returns whether the set
    /// changed.
    pub fn set_endpoints<S: AsRef<str>>(&self, signal: Signal, urls: &[S]) -> Result<bool, Error> {
        let e = self.engine();
        let targets = urls
            .iter()
            .map(|u| crate::config::base_target(u.as_ref(), signal))
            .collect::<Result<Vec<_>, _>>()?;
        e.lanes.set(&e.config, signal, &targets)
    }

    /// `signal`'s endpoints now (`host:port`), in the order its ring was
    /// built from.
    pub fn endpoints(&self, signal: Signal) -> Vec<String> {
        self.engine().lanes.addresses(signal)
    }

    /// Per endpoint of each signal: what it took and whether its circuit
    /// breaker is open (one entry per signal when nothing is routed).
    pub fn endpoint_stats(&self) -> Vec<crate::stats::EndpointStats> {
        let e = self.engine();
        e.lanes
            .current()
            .exports
            .iter()
            .enumerate()
            .map(|(lane, s)| {
                let mut st = crate::stats::EndpointStats::new(s.signal, s.endpoint.address());
                for w in e.workers.iter() {
                    if let Some(c) = w.endpoints.lock().get(lane) {
                        st.add(c);
                    }
                }
                st
            })
            .collect()
    }

    /// A snapshot of the counters, taken without stopping anything.
    pub fn stats(&self) -> Stats {
        self.engine().stats()
    }

    /// The export path's health: `Down` when every worker that has sent
    /// anything has its circuit breaker open or its last few attempts failed,
    /// `Degraded` when some are failing or a worker's smoothed round trip is
    /// over half the request timeout or the system's memory use is over
    /// `system_memory_limit`, `Healthy` otherwise. Recovers by itself
    /// (the breaker probes the endpoint and closes on its first answer).
    pub fn health(&self) -> crate::stats::Health {
        let inner = self.engine();
        let h = stats::health(
            inner.workers.iter().map(|w| &w.counters),
            inner.config.min_timeout().as_nanos() as u64 / 2,
        );
        // Refusing records for want of system memory is degraded service.
        if h == crate::stats::Health::Healthy && inner.under_memory_pressure() {
            return crate::stats::Health::Degraded;
        }
        h
    }

    /// The last export error seen, if any.
    pub fn last_error(&self) -> Option<String> {
        self.engine().last_error.lock().clone()
    }

    /// Waits until every record accepted before this call has been exported
    /// or has failed for good, or until `timeout`. Returns the stats then.
    pub fn flush(&self, timeout: Duration) -> Result<Stats, Error> {
        let deadline = crate::clock::deadline_after(timeout);
        let inner = self.engine();
        if inner.stop.load(Ordering::Acquire) {
            return Err(Error::shutdown());
        }
        inner.collect_metrics();
        inner.flush_until(deadline)?;
        Ok(inner.stats())
    }

    /// Refuses new records, flushes what was accepted (up to `timeout`), stops
    /// and joins the workers. Records still unsent at the deadline are counted
    /// as failed (`failed_shutdown`), so that afterwards `in_flight` is zero.
    /// A second call returns `Error::is_shutdown`.
    pub fn shutdown(&self, timeout: Duration) -> Result<Stats, Error> {
        self.engine().shutdown(&self.core.threads, timeout)
    }

    /// The address of the Prometheus endpoint, if one was configured.
    pub fn prometheus_addr(&self) -> Option<std::net::SocketAddr> {
        self.core.prometheus.lock().as_ref().map(|s| s.addr())
    }

    /// Each shard ring's fill, 0.0 (empty) to 1.0 (full), in shard order.
    pub fn ring_fill(&self) -> Vec<f64> {
        self.engine()
            .shards
            .iter()
            .map(|s| s.ring.used() as f64 / s.ring.capacity().max(1) as f64)
            .collect()
    }

    /// Uses `attributes` as the resource of every request from now on, if
    /// the pipeline's builder set none (no service name, version or
    /// resource attribute; the `OTEL_SERVICE_NAME` and
    /// `OTEL_RESOURCE_ATTRIBUTES` it read do not count, as an SDK's resource
    /// holds them too); returns whether it did. Once only: the bridges call
    /// it with their SDK's resource.
    pub fn adopt_resource(&self, attributes: &[(String, OwnedValue)]) -> bool {
        let engine = self.engine();
        if !engine.resource_adoptable.swap(false, Ordering::AcqRel) {
            return false;
        }
        *engine.resource_field.write() =
            bytes::Bytes::from(super::batch::resource_field(attributes));
        true
    }

    /// Whether `shutdown` has begun.
    pub fn is_shut_down(&self) -> bool {
        self.engine().closed.load(Ordering::Acquire)
    }
}
