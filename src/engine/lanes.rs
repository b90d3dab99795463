//! Lanes: one per endpoint of each signal, each with its own batch,
//! exporter, circuit breaker and request slots in every worker. The table
//! is append-only: a signal's endpoint set may change while the pipeline
//! runs (`Pipeline::set_endpoints`, DNS re-resolution), and an endpoint that
//! leaves the set keeps its lane (what it holds is still sent) but is no
//! longer routed to. A new set is a new table, swapped in whole, with a new
//! ring: the workers pick it up at their next drain.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

use crate::config::{Config, Endpoint};
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
    /// set: endpoints already known keep their lanes, new ones get new
    /// lanes, the ring is rebuilt over the set in its order. Returns
    /// whether anything changed.
    pub(super) fn set(
        &self,
        config: &Config,
        signal: Signal,
        targets: &[(Endpoint, String)],
    ) -> Result<bool, Error> {
        if targets.is_empty() {
            return Err(Error::config(format!(
                "{}.endpoints: the list is empty",
                signal.name()
            )));
        }
        let _one = self.change.lock();
        let old = self.current();
        let mut exports = old.exports.clone();
        let mut members = Vec::with_capacity(targets.len());
        let mut clients = Vec::new();
        for (endpoint, path) in targets {
            let known = exports.iter().position(|e| {
                e.signal == signal && e.endpoint == *endpoint && e.http_path == *path
            });
            let lane = match known {
                Some(l) => l,
                None => {
                    let s =
                        ExportSettings::for_target(config, signal, endpoint, path, &mut clients)?;
                    exports.push(Arc::new(s));
                    exports.len() - 1
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
