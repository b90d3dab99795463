//! Why a record was lost, one table per kind of loss: refused at ingest
//! ([`DropReason`]) or failed after it was accepted ([`FailReason`]). Every
//! place that shows these counts (the [`crate::Stats`] snapshot, the carry
//! over a fork, the Prometheus lines, the self-metrics, the C struct, the
//! Python dict) walks these tables; a reason is added here and nowhere
//! else.

use std::ops::Index;

/// Defines a reason enum, its table (`ALL`, `name`, `describe`) and a
/// per-reason count type indexed by it.
macro_rules! reasons {
    (
        $(#[$meta:meta])* $enum:ident, $(#[$cmeta:meta])* $counts:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $idx:literal, $name:literal, $describe:literal; )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u32)]
        pub enum $enum {
            $( $(#[$vmeta])* $variant = $idx, )+
        }

        impl $enum {
            /// Every reason, in index order.
            pub const ALL: &'static [$enum] = &[$($enum::$variant),+];
            /// The number of reasons.
            pub const COUNT: usize = Self::ALL.len();

            /// The reason's name: the Prometheus `reason` label, the
            /// self-metrics' `error.type`, the key in the JSON stats.
            pub fn name(self) -> &'static str {
                match self { $($enum::$variant => $name),+ }
            }

            /// One line saying what the reason means.
            pub fn describe(self) -> &'static str {
                match self { $($enum::$variant => $describe),+ }
            }

            /// The position in [`Self::ALL`] and in the C arrays.
            #[inline]
            pub fn index(self) -> usize {
                self as usize
            }
        }

        $(#[$cmeta])*
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
        pub struct $counts([u64; $enum::COUNT]);

        impl $counts {
            /// The sum over every reason.
            pub fn total(&self) -> u64 {
                self.0.iter().sum()
            }

            /// Each reason with its count, in index order.
            pub fn iter(&self) -> impl Iterator<Item = ($enum, u64)> + '_ {
                $enum::ALL.iter().map(|r| (*r, self.0[r.index()]))
            }

            /// The counts in index order (the C arrays' layout).
            pub fn as_array(&self) -> [u64; $enum::COUNT] {
                self.0
            }

            pub(crate) fn add(&mut self, reason: $enum, n: u64) {
                self.0[reason.index()] += n;
            }
        }

        impl Index<$enum> for $counts {
            type Output = u64;
            fn index(&self, r: $enum) -> &u64 {
                &self.0[r.index()]
            }
        }

        impl serde::Serialize for $counts {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                use serde::ser::SerializeMap;
                let mut m = s.serialize_map(Some($enum::COUNT + 1))?;
                for (r, n) in self.iter() {
                    m.serialize_entry(r.name(), &n)?;
                }
                m.serialize_entry("total", &self.total())?;
                m.end()
            }
        }
    };
}

reasons! {
    /// Why a record was refused at ingest (it never entered a ring).
    DropReason,
    /// Records refused at ingest, by [`DropReason`].
    Dropped {
        /// The ring was full (`DropNewest`, or `Block` after its wait).
        Full = 0, "full", "the shard ring was full";
        /// Larger than a ring record may be.
        TooLarge = 1, "too_large", "larger than a ring record may be";
        /// Offered after shutdown began.
        Shutdown = 2, "shutdown", "offered after shutdown began";
        /// Invalid input (a scope of another pipeline, a malformed point).
        Invalid = 3, "invalid", "invalid input";
        /// Over an ingest rate limit.
        RateLimited = 4, "rate_limited", "over an ingest rate limit";
        /// Over the memory budget (`DropNewest`, or `Block` after its wait).
        Memory = 5, "memory", "over the memory budget";
        /// The system's memory use over `system_memory_limit` (`DropNewest`,
        /// or `Block` after its wait).
        SystemMemory = 6, "system_memory", "the system's memory use over its limit";
    }
}

reasons! {
    /// Why an accepted record failed for good (it will never be exported).
    FailReason,
    /// Records failed after they were accepted, by [`FailReason`].
    Failed {
        /// A permanent error: refused by the receiver (bad request,
        /// unauthenticated), an untrusted certificate, a malformed response,
        /// a compression failure.
        Permanent = 0, "permanent", "a permanent error (refused, untrusted, malformed)";
        /// Retries ran out (time budget, or the endpoint stayed down) on a
        /// retryable error.
        Exhausted = 1, "exhausted", "retries ran out on a retryable error";
        /// Waiting for a retry, dropped for newer data
        /// (`RetryQueue::DropOldest`).
        Evicted = 2, "evicted", "waiting for a retry, evicted for newer data";
        /// Still unsent at shutdown's deadline.
        Shutdown = 3, "shutdown", "unsent at shutdown's deadline";
        /// In flight in the parent at a fork (the parent sends them; the
        /// child counts them so that its own accounting holds).
        Fork = 4, "fork", "in flight in the parent at a fork";
    }
}

impl DropReason {
    /// The reason a hot-path refusal is counted under.
    pub fn of(e: crate::error::RecordError) -> DropReason {
        use crate::error::RecordError as E;
        match e {
            E::Full => DropReason::Full,
            E::TooLarge => DropReason::TooLarge,
            E::Shutdown => DropReason::Shutdown,
            E::InvalidScope | E::Invalid => DropReason::Invalid,
            E::RateLimited => DropReason::RateLimited,
            E::Memory => DropReason::Memory,
            E::SystemMemory => DropReason::SystemMemory,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_dense_and_named_once() {
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
        for (i, r) in FailReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
        let mut names: Vec<_> = DropReason::ALL.iter().map(|r| r.name()).collect();
        names.dedup();
        assert_eq!(names.len(), DropReason::COUNT);
        let mut f = Failed::default();
        f.add(FailReason::Evicted, 3);
        f.add(FailReason::Fork, 2);
        assert_eq!((f[FailReason::Evicted], f.total()), (3, 5));
        let json = serde_json::to_string(&f).unwrap();
        assert!(
            json.contains("\"evicted\":3") && json.contains("\"total\":5"),
            "{json}"
        );
    }
}
