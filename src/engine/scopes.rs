//! The pipeline's instrumentation scopes: each registered once, numbered in
//! order (the number travels with every record), with its `scope` field
//! encoded. Finding a scope already registered is a hash lookup: a linear
//! search made registering n distinct scopes cost n²/2 comparisons under
//! the table's write lock (30,000 scopes took 1.3 s here, 100,000 would
//! take about 15), and a host that names a scope per tenant or per request
//! has that many.

use std::collections::HashMap;

use bytes::Bytes;

/// The scopes, by id and by their encoded field.
#[derive(Clone, Default)]
pub(super) struct ScopeTable {
    /// The encoded `scope` field (name, version, attributes), by id.
    list: Vec<Bytes>,
    /// Ids by encoded field.
    index: HashMap<Bytes, u32>,
}

impl ScopeTable {
    /// The id of the scope encoded as `encoded`, registered if new.
    pub(super) fn id(&mut self, encoded: Bytes) -> u32 {
        if let Some(id) = self.index.get(&encoded) {
            return *id;
        }
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

    #[test]
    fn a_scope_registered_twice_keeps_its_id() {
        let mut t = ScopeTable::default();
        let a = t.id(Bytes::from_static(b"a1"));
        let b = t.id(Bytes::from_static(b"b1"));
        assert_eq!((a, b), (0, 1));
        assert_eq!(t.id(Bytes::from_static(b"a1")), 0);
        assert_eq!(t.len(), 2);
        assert_eq!(t.encoded(1).map(|e| &e[..]), Some(&b"b1"[..]));
        assert!(t.encoded(2).is_none());
    }
}
