//! The pipeline's instrumentation scopes: each registered once, numbered in
//! order (the number travels with every record), with its `scope` field
//! encoded. Finding a scope already registered is a hash lookup: a linear
//! search made registering n distinct scopes cost n²/2 comparisons under
//! the table's write lock (30,000 scopes took 1.3 s here, 100,000 would
//! take about 15), and a host that names a scope per tenant or per request
//! has that many.
//!
//! The table is bounded (`max_scopes`): every scope costs its entry here
//! and a slot in each worker's cache and each batch's index, which are
//! sized by the highest id, and a host naming scopes per request would
//! otherwise grow them for the life of the process (a million scopes held
//! 300 MB). Past the bound a new scope is answered with the shared
//! overflow scope, as the bridges do with their targets.

use std::collections::HashMap;

use bytes::Bytes;

/// The scopes, by id and by their encoded field.
#[derive(Clone, Default)]
pub(super) struct ScopeTable {
    /// The encoded `scope` field (name, version, attributes), by id.
    list: Vec<Bytes>,
    /// Ids by encoded field.
    index: HashMap<Bytes, u32>,
    /// The overflow scope's id, once a scope past the bound asked for it.
    overflow: Option<u32>,
    /// Scopes registered outside the bound (otlpflow's own).
    own: usize,
}

/// The name of the scope that stands for every scope past the bound.
pub(crate) const OVERFLOW_SCOPE: &str = "otlpflow.overflow";

impl ScopeTable {
    /// The id to answer for the scope encoded as `encoded` without
    /// changing the table, and whether it is the overflow scope's: its own
    /// id if it is registered, else the overflow scope's once `limit`
    /// scopes are and that one is registered.
    pub(super) fn find(&self, encoded: &[u8], limit: usize) -> Option<(u32, bool)> {
        if let Some(id) = self.index.get(encoded) {
            return Some((*id, false));
        }
        match self.overflow {
            Some(id) if self.hosts() >= limit => Some((id, true)),
            _ => None,
        }
    }

    /// As [`ScopeTable::find`], registering the scope if fewer than
    /// `limit` are, else the overflow scope (`overflow()` is its encoded
    /// field) if it is not yet: the table holds at most `limit + 1`.
    pub(super) fn register(
        &mut self,
        encoded: Bytes,
        limit: usize,
        overflow: impl FnOnce() -> Bytes,
    ) -> (u32, bool) {
        if let Some(found) = self.find(&encoded, limit) {
            return found;
        }
        if self.hosts() < limit {
            return (self.insert(encoded), false);
        }
        // The host may have registered it under the bound (the bridges
        // do, for their own overflow): it keeps that id.
        let overflow = overflow();
        let id = match self.index.get(&overflow) {
            Some(id) => *id,
            None => self.insert(overflow),
        };
        self.overflow = Some(id);
        (id, true)
    }

    /// Registers one of otlpflow's own scopes outside the bound: it is
    /// often registered after the host's have filled the table (the
    /// self-metrics' at their first collection), and takes none of the
    /// host's places. A host's scope encoded the same shares it.
    pub(super) fn register_own(&mut self, encoded: Bytes) -> u32 {
        if let Some(id) = self.index.get(&encoded) {
            return *id;
        }
        self.own += 1;
        self.insert(encoded)
    }

    /// Scopes registered under the bound.
    fn hosts(&self) -> usize {
        self.list.len() - self.own
    }

    fn insert(&mut self, encoded: Bytes) -> u32 {
        let id = self.list.len() as u32;
        self.index.insert(encoded.clone(), id);
        self.list.push(encoded);
        id
    }

    /// The encoded `scope` field of scope `id`.
    pub(super) fn encoded(&self, id: usize) -> Option<&Bytes> {
        self.list.get(id)
    }

    /// How many scopes there are.
    pub(super) fn len(&self) -> usize {
        self.list.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn o() -> Bytes {
        Bytes::from_static(b"o")
    }

    #[test]
    fn a_scope_registered_twice_keeps_its_id() {
        let mut t = ScopeTable::default();
        let a = t.register(Bytes::from_static(b"a1"), 8, o);
        let b = t.register(Bytes::from_static(b"b1"), 8, o);
        assert_eq!((a, b), ((0, false), (1, false)));
        assert_eq!(t.find(b"a1", 8), Some((0, false)));
        assert_eq!(t.find(b"c1", 8), None);
        assert_eq!(t.len(), 2);
        assert_eq!(t.encoded(1).map(|e| &e[..]), Some(&b"b1"[..]));
        assert!(t.encoded(2).is_none());
    }

    #[test]
    fn past_the_bound_only_known_scopes_and_the_overflow_scope_have_ids() {
        let mut t = ScopeTable::default();
        assert_eq!(t.register(Bytes::from_static(b"a"), 2, o), (0, false));
        assert_eq!(t.register(Bytes::from_static(b"b"), 2, o), (1, false));
        // Full, and no overflow scope yet: only known scopes are found.
        assert_eq!(t.find(b"c", 2), None);
        assert_eq!(t.register(Bytes::from_static(b"c"), 2, o), (2, true));
        assert_eq!(t.find(b"d", 2), Some((2, true)));
        assert_eq!(t.find(b"a", 2), Some((0, false)));
        assert_eq!(t.register(Bytes::from_static(b"d"), 2, o), (2, true));
        assert_eq!(t.len(), 3);
        assert_eq!(t.encoded(2).map(|e| &e[..]), Some(&b"o"[..]));
        // An overflow scope registered under the bound keeps its id.
        let mut t = ScopeTable::default();
        assert_eq!(t.register(o(), 1, o), (0, false));
        assert_eq!(t.register(Bytes::from_static(b"c"), 1, o), (0, true));
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn an_own_scope_takes_none_of_the_hosts_places() {
        // Registered first, a host still gets its `limit` scopes.
        let mut t = ScopeTable::default();
        assert_eq!(t.register_own(Bytes::from_static(b"self")), 0);
        assert_eq!(t.register(Bytes::from_static(b"a"), 2, o), (1, false));
        assert_eq!(t.register(Bytes::from_static(b"b"), 2, o), (2, false));
        assert_eq!(t.register(Bytes::from_static(b"c"), 2, o), (3, true));
        // Registered after the table is full, it gets an id of its own.
        let mut t = ScopeTable::default();
        assert_eq!(t.register(Bytes::from_static(b"a"), 1, o), (0, false));
        assert_eq!(t.register(Bytes::from_static(b"b"), 1, o), (1, true));
        assert_eq!(t.register_own(Bytes::from_static(b"self")), 2);
        assert_eq!(t.register_own(Bytes::from_static(b"self")), 2);
        assert_eq!(t.find(b"self", 1), Some((2, false)));
        assert_eq!(t.register(Bytes::from_static(b"c"), 1, o), (1, true));
        // A host scope encoded as an own one already registered shares it.
        assert_eq!(t.register_own(Bytes::from_static(b"a")), 0);
        assert_eq!(t.len(), 3);
    }
}
