//! Handing a ring's cache lines back to memory once the consumer has read
//! them.
//!
//! Why: a producer writes each record into lines that the consumer read a
//! lap earlier on another core, where they may still sit as shared copies.
//! Every such store first has to invalidate that copy. Where the two cores
//! share no cache (a VM whose vCPUs the host placed on different dies: the
//! ~170 ns hand-offs of BENCHMARKS.md), the producer's store buffer fills
//! with stores waiting on those invalidations, and `record_span` took
//! 2-3x as long as where they share one. A line that no core holds is
//! fetched for writing without asking another core: with the consumer
//! evicting what it read, `record_span` took about the same time wherever
//! the cores were (BENCHMARKS.md, "Evicting what the worker read"). It
//! costs the worker's time and, with a full ring, throughput, so the
//! engine does it only when asked (`ring_eviction`).
//!
//! Eviction never changes memory's contents (`CLFLUSHOPT` writes a dirty
//! line back before dropping it, coherently across cores): it is a hint
//! about where the bytes should live, not a write, and a line evicted
//! while another thread used it costs that thread a miss, nothing more.
//! On x86-64 it uses `CLFLUSHOPT` where the CPU has it and `CLFLUSH`
//! (part of SSE2, on every x86-64 CPU) otherwise; elsewhere, and under
//! Miri, it does nothing.

/// Bytes in a cache line on the CPUs this targets.
pub const LINE: usize = 64;

/// How this CPU evicts a line, chosen once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Evict {
    /// `CLFLUSHOPT`: unordered with other flushes, so a run of them overlaps.
    FlushOpt,
    /// `CLFLUSH`: ordered with other flushes and stores; slower in bulk.
    Flush,
    /// No eviction: not on this target, or turned off.
    Off,
}

impl Evict {
    /// The best eviction this CPU offers.
    pub fn detect() -> Evict {
        #[cfg(all(target_arch = "x86_64", not(miri)))]
        {
            // CPUID leaf 7, sub-leaf 0, EBX bit 23: CLFLUSHOPT. (The
            // standard library's feature detection does not know this one.)
            let leaf7 = std::arch::x86_64::__cpuid_count(7, 0);
            if leaf7.ebx & (1 << 23) != 0 {
                Evict::FlushOpt
            } else {
                Evict::Flush
            }
        }
        #[cfg(not(all(target_arch = "x86_64", not(miri))))]
        {
            Evict::Off
        }
    }

    /// Evicts from every cache the lines holding the `len` bytes at
    /// `start`.
    ///
    /// # Safety
    /// The bytes must be allocated and mapped for the whole call (the
    /// instruction faults like a load on an unmapped address). Other
    /// threads may access them meanwhile: eviction does not change them.
    #[inline]
    #[allow(unused_variables)] // on targets without eviction
    pub unsafe fn lines(self, start: *const u8, len: usize) {
        #[cfg(all(target_arch = "x86_64", not(miri)))]
        match self {
            Evict::FlushOpt => {
                let mut at = 0;
                while at < len {
                    // SAFETY: inside the caller's bytes; CLFLUSHOPT writes
                    // a dirty line back unchanged, reads nothing into
                    // registers, and touches no flags or stack.
                    unsafe {
                        std::arch::asm!(
                            "clflushopt [{addr}]",
                            addr = in(reg) start.add(at),
                            options(nostack, preserves_flags, readonly),
                        )
                    };
                    at += LINE;
                }
            }
            Evict::Flush => {
                let mut at = 0;
                while at < len {
                    // SAFETY: as above; CLFLUSH is part of SSE2, which
                    // every x86-64 CPU has.
                    unsafe { std::arch::x86_64::_mm_clflush(start.add(at)) };
                    at += LINE;
                }
            }
            Evict::Off => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eviction_leaves_the_bytes_as_they_were() {
        let evict = Evict::detect();
        let mut bytes = vec![0u8; 4 * LINE];
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = i as u8;
        }
        for kind in [evict, Evict::Flush, Evict::Off] {
            for offset in (0..bytes.len()).step_by(LINE / 2) {
                // SAFETY: inside `bytes`, which lives across the call.
                unsafe { kind.lines(bytes.as_ptr().add(offset), bytes.len() - offset) };
            }
            assert!(bytes.iter().enumerate().all(|(i, &b)| b == i as u8));
        }
        #[cfg(all(target_arch = "x86_64", not(miri)))]
        assert_ne!(evict, Evict::Off);
    }
}
