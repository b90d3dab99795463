//! A pipeline's instruments, found by identity: the same scope, kind,
//! name (regardless of ASCII case), unit, description and bounds are the
//! same instrument, as the OpenTelemetry API specifies. Found by hash: a
//! search in turn made registering n distinct instruments cost n²/2
//! comparisons under the table's lock (30,000 took 6.4 s here).

use std::collections::HashMap;
use std::sync::Arc;

use super::{Instrument, Kind};

/// What makes two instruments the same.
#[derive(Clone, PartialEq, Eq, Hash)]
pub(crate) struct Identity {
    kind: Kind,
    scope: crate::Scope,
    /// Lower case: names differing only in ASCII case are the same.
    name: String,
    unit: String,
    description: String,
    /// The bounds' bits (-0.0 as 0.0, which compare equal).
    bounds: Vec<u64>,
}

impl Identity {
    pub(crate) fn new(
        kind: Kind,
        scope: crate::Scope,
        name: &str,
        unit: &str,
        description: &str,
        bounds: &[f64],
    ) -> Identity {
        Identity {
            kind,
            scope,
            name: name.to_ascii_lowercase(),
            unit: unit.to_owned(),
            description: description.to_owned(),
            bounds: bounds.iter().map(|b| (b + 0.0).to_bits()).collect(),
        }
    }
}

/// The instruments in the order they were made, and an index by identity.
#[derive(Clone, Default)]
pub(crate) struct Instruments {
    list: Vec<Arc<Instrument>>,
    index: HashMap<Identity, usize>,
}

impl Instruments {
    /// Every instrument, oldest first.
    pub(crate) fn list(&self) -> &[Arc<Instrument>] {
        &self.list
    }

    /// The instrument of this identity, made by `make` if there is none.
    pub(crate) fn get_or_make(
        &mut self,
        identity: Identity,
        make: impl FnOnce() -> Instrument,
    ) -> Arc<Instrument> {
        if let Some(&at) = self.index.get(&identity) {
            return self.list[at].clone();
        }
        let made = Arc::new(make());
        self.index.insert(identity, self.list.len());
        self.list.push(made.clone());
        made
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_instrument_per_identity_found_by_hash() {
        let scope = crate::Scope::from_parts(0, 0);
        let mut all = Instruments::default();
        let mut get = |name: &str, unit: &str, bounds: &[f64]| {
            let id = Identity::new(Kind::Histogram, scope, name, unit, "", bounds);
            let b = bounds.to_vec();
            all.get_or_make(id, || {
                Instrument::new(Kind::Histogram, scope, name, unit, "", b, 10)
            })
        };
        let a = get("latency", "ms", &[0.0, 1.0]);
        // The name regardless of ASCII case; -0.0 is the bound 0.0.
        assert!(Arc::ptr_eq(&a, &get("LATENCY", "ms", &[-0.0, 1.0])));
        assert!(!Arc::ptr_eq(&a, &get("latency", "s", &[0.0, 1.0])));
        assert!(!Arc::ptr_eq(&a, &get("latency", "ms", &[0.0, 2.0])));
        for i in 0..10_000 {
            get(&format!("m{i}"), "1", &[]);
        }
        assert_eq!(all.list().len(), 10_003);
        assert_eq!(all.list()[0].name, "latency");
    }
}
