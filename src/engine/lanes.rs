//! Lanes: one per endpoint of each signal, each with its own batch,
//! exporter, circuit breaker and request slots in every worker. A signal's
//! endpoint set may change while the pipeline runs
//! (`Pipeline::set_endpoints`, DNS re-resolution): an endpoint that leaves
//! the set keeps its lane (what it holds is still sent) but is no longer
//! routed to, until a later change gives that lane to a new endpoint. Lane
//! ids never move. A new set is a new table, swapped in whole, with a new
//! ring: the workers pick it up at their next drain.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

use crate::config::{Config, Endpoint, MAX_ENDPOINTS};
use crate::error::Error;
use crate::export::ExportSettings;
use crate::record::{PerSignal, Signal};
use crate::route::Router;

/// One version of the lanes.
pub(super) struct LaneTable {
    /// Every lane's settings, by lane id.
    pub(super) exports: Vec<Arc<ExportSettings>>,
    /// Each signal's current lanes, in the order its ring was built from.
    members: PerSignal<Vec<usize>>,
    routers: PerSignal<Router>,
}

impl LaneTable {
    /// The lane of an encoded record of `signal` (see `Router::pick`);
    /// `down` is asked about lane ids.
    #[inline]
    pub(super) fn route(
        &self,
        signal: Signal,
        record: &[u8],
        turn: &mut usize,
        down: Option<&dyn Fn(usize) -> bool>,
    ) -> usize {
        let members = &self.members[signal];
        // One endpoint: nothing to choose (and no call into the router per
        // record).
        if let [only] = members[..] {
            return only;
        }
        match down {
            None => members[self.routers[signal].pick(signal, record, turn, None)],
            Some(d) => {
                let by_index = |i: usize| d(members[i]);
                members[self.routers[signal].pick(signal, record, turn, Some(&by_index))]
            }
        }
    }

    /// `signal`'s current lanes, in ring order.
    pub(super) fn members(&self, signal: Signal) -> &[usize] {
        &self.members[signal]
    }

    /// Whether `signal` has a single endpoint.
    pub(super) fn alone(&self, signal: Signal) -> bool {
        self.members[signal].len() == 1
    }
}

/// The current table and its version.
pub(super) struct Lanes {
    table: RwLock<Arc<LaneTable>>,
    /// Bumped after each swap (Release), read by the workers (Acquire).
    version: AtomicU64,
    /// The resource's `service.name` (`Routing::Service`).
    service: String,
    /// One change at a time.
    change: Mutex<()>,
}

impl Lanes {
    pub(super) fn new(config: &Config) -> Result<Lanes, Error> {
        let by_signal = ExportSettings::for_config(config)?;
        let service = config
            .resource
            .iter()
            .find(|(k, _)| k == "service.name")
            .and_then(|(_, v)| match v {
                crate::record::OwnedValue::Str(s) => Some(s.clone()),
                _ => None,
            })
            .unwrap_or_default();
        let mut exports = Vec::new();
        let mut members = PerSignal::from_fn(|_| Vec::new());
        for signal in Signal::ALL {
            for s in &by_signal[signal] {
                members[signal].push(exports.len());
                exports.push(Arc::new(s.clone()));
            }
        }
        let routers = PerSignal::from_fn(|signal| {
            router(config, signal, &exports, &members[signal], &service)
        });
        Ok(Lanes {
            table: RwLock::new(Arc::new(LaneTable {
                exports,
                members,
                routers,
            })),
            version: AtomicU64::new(0),
            service,
            change: Mutex::new(()),
        })
    }

    /// The current table.
    pub(super) fn current(&self) -> Arc<LaneTable> {
        self.table.read().clone()
    }

    /// `signal`'s current endpoints (`host:port`), in ring order.
    pub(super) fn addresses(&self, signal: Signal) -> Vec<String> {
        let t = self.current();
        t.members[signal]
            .iter()
            .map(|l| t.exports[*l].endpoint.address())
            .collect()
    }

    /// The current table's version.
    #[inline]
    pub(super) fn version(&self) -> u64 {
        // Acquire pairs with the Release bump in `set`: a worker that sees
        // the new number reads the new table.
        self.version.load(Ordering::Acquire)
    }

    /// Makes `targets` (endpoint and OTLP/HTTP path) `signal`'s endpoint
    /// set: endpoints already known keep their lanes; a new one takes the
    /// lane of an endpoint that had left the set before this change, or
    /// else a new lane; the ring is rebuilt over the set in its order.
    /// Returns whether anything changed.
    ///
    /// Reusing lanes bounds the table: a DNS name whose addresses churn (a
    /// fleet's pods replaced at every deploy) made a lane, with its
    /// exporter, compressor and counters in every worker, for each address
    /// it ever answered. A reused lane's records still waiting (a retry,
    /// a batch the workers had not sent) go to the endpoint that took it.
    pub(super) fn set(
        &self,
        config: &Config,
        signal: Signal,
        targets: &[(Endpoint, String)],
    ) -> Result<bool, Error> {
        if targets.is_empty() || targets.len() > MAX_ENDPOINTS {
            return Err(Error::config(format!(
                "{}.endpoints: {} endpoints; from 1 to {MAX_ENDPOINTS} are allowed",
                signal.name(),
                targets.len()
            )));
        }
        let _one = self.change.lock();
        let old = self.current();
        let mut exports = old.exports.clone();
        let lane_of = |exports: &[Arc<ExportSettings>], (endpoint, path): &(Endpoint, String)| {
            exports
                .iter()
                .position(|e| e.signal == signal && e.endpoint == *endpoint && e.http_path == *path)
        };
        let known: Vec<Option<usize>> = targets.iter().map(|t| lane_of(&exports, t)).collect();
        // The signal's lanes in neither the old set nor the new one.
        let mut retired = (0..exports.len())
            .filter(|l| {
                exports[*l].signal == signal
                    && !old.members[signal].contains(l)
                    && !known.contains(&Some(*l))
            })
            .collect::<Vec<_>>()
            .into_iter();
        let mut members = Vec::with_capacity(targets.len());
        let mut clients = Vec::new();
        for (t, known) in targets.iter().zip(&known) {
            // A target listed twice has its lane from the first time.
            let lane = match known.or_else(|| lane_of(&exports, t)) {
                Some(l) => l,
                None => {
                    let s = Arc::new(ExportSettings::for_target(
                        config,
                        signal,
                        &t.0,
                        &t.1,
                        &mut clients,
                    )?);
                    match retired.next() {
                        Some(l) => {
                            exports[l] = s;
                            l
                        }
                        None => {
                            exports.push(s);
                            exports.len() - 1
                        }
                    }
                }
            };
            if !members.contains(&lane) {
                members.push(lane);
            }
        }
        if members == old.members[signal] {
            return Ok(false);
        }
        let mut all = old.members.clone();
        all[signal] = members;
        let routers = PerSignal::from_fn(|s| {
            if s == signal {
                router(config, s, &exports, &all[s], &self.service)
            } else {
                old.routers[s].clone()
            }
        });
        *self.table.write() = Arc::new(LaneTable {
            exports,
            members: all,
            routers,
        });
        self.version.fetch_add(1, Ordering::Release);
        Ok(true)
    }
}

/// The router of `signal` over lanes `members`, keyed by `host:port`.
fn router(
    config: &Config,
    signal: Signal,
    exports: &[Arc<ExportSettings>],
    members: &[usize],
    service: &str,
) -> Router {
    let keys: Vec<String> = members
        .iter()
        .map(|l| exports[*l].endpoint.address())
        .collect();
    Router::new(config.signals[signal].routing, &keys, service)
}
