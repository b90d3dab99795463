//! Draining: the one copy out of the rings, into the batch of each
//! record's signal, up to the batch limits; and the shard latency samples.

use std::sync::atomic::{fence, Ordering};

use bytes::Bytes;

use super::Worker;
use crate::engine::batch::Batch;
use crate::engine::receipt::{Shares, RECEIPT_BIT, RECEIPT_PREFIX};
use crate::engine::{Engine, SCOPE_MASK, SIGNAL_SHIFT};
use crate::record::Signal;
use crate::stats::FailReason;

impl Worker {
    /// Moves committed records from this worker's rings into the batch, up to
    /// the batch limits. Returns the number of records moved.
    pub(super) fn drain(&mut self) -> usize {
        let Worker {
            inner,
            consumers,
            batches,
            shares,
            turns,
            scope_cache,
            idx,
            charged,
            samples,
            shared,
            table,
            ..
        } = self;
        let now_ns = inner.epoch.elapsed().as_nanos() as u64;
        let cfg = &inner.config;
        let max_items = (inner.workers[*idx]
            .counters
            .batch_target
            .load(Ordering::Relaxed) as usize)
            .min(cfg.batch_cap());
        let mut total = 0;
        let mut unknown = 0u64;
        for (shard_idx, consumer) in consumers.iter_mut() {
            let limit = inner.batch_limit;
            let full = |b: &Batch| b.is_full(max_items, limit);
            if batches.iter().any(full) {
                break;
            }
            let room = limit - batches.iter().map(Batch::bytes).max().unwrap_or(0);
            // Take the shard's latency sample before reading: its record was
            // committed before the sample was set, so it is in the ring now.
            // Load first: a swap on every drain would pull the producers'
            // line away from them even when there is no sample.
            let slot = &inner.shards[*shard_idx].counters.sample_ns;
            if slot.load(Ordering::Relaxed) != 0 {
                let sample = slot.swap(0, Ordering::Acquire);
                if sample != 0 {
                    samples.push(sample);
                }
            }
            let n = consumer.read(room, |tag, payload| {
                let Some(signal) = Signal::from_bits((tag >> SIGNAL_SHIFT) & 3) else {
                    // Never written by this crate: skip it rather than
                    // stall, and count it as failed, not lost silently.
                    debug_assert!(false, "ring record with tag {tag:#x}");
                    unknown += 1;
                    return true;
                };
                // The memory budget held the whole ring record.
                let held = payload.len() as u64;
                // One bit test for records without a receipt.
                let record = if tag & RECEIPT_BIT == 0 {
                    payload
                } else {
                    payload.get(RECEIPT_PREFIX..).unwrap_or_default()
                };
                let down = |lane: usize| shared.breakers.borrow()[lane].refuses(now_ns);
                let failover: Option<&dyn Fn(usize) -> bool> =
                    if cfg.flow.failover { Some(&down) } else { None };
                let lane = table.route(signal, record, &mut turns[signal], failover);
                let batch = &mut batches[lane];
                // Close the batch before a record would take it past the
                // request limit: the record waits in the ring for the next.
                if batch.items() >= max_items {
                    return false;
                }
                if !batch.is_empty() && batch.bytes() + record.len() + 16 > limit {
                    // Full below the limit: it goes now, not at `linger`.
                    batch.close();
                    return false;
                }
                batch.push(tag & SCOPE_MASK, record, |t| {
                    scope_bytes(inner, scope_cache, t)
                });
                if tag & RECEIPT_BIT != 0 {
                    add_share(&mut shares[lane], inner, tag, payload);
                }
                charged[lane] += held;
                true
            });
            if n > 0 {
                total += n;
                let shard = &inner.shards[*shard_idx];
                // SeqCst fence pairs with the producer's SeqCst increment of
                // `waiters` in `wait_for_space`: either we see the waiter or
                // it sees the space we just freed.
                fence(Ordering::SeqCst);
                if shard.waiters.load(Ordering::Relaxed) > 0 && shard.ring.used() <= shard.low_water
                {
                    let _g = shard.lock.lock();
                    shard.space.notify_all();
                }
                inner.wake_async();
            }
        }
        if total > 0 {
            let counters = &inner.workers[*idx].counters;
            counters.drain(total as u64);
            if unknown > 0 {
                counters.fail(FailReason::Permanent, unknown);
            }
        }
        total
    }
}

/// Carries one record's share of its receipt with the batch.
#[cold]
#[inline(never)]
fn add_share(shares: &mut Shares, inner: &Engine, tag: u32, payload: &[u8]) {
    if let Some((id, _)) = receipt_of(tag, payload) {
        shares.add(&inner.receipts, id);
    }
}

/// A receipt's id and the record behind it, if the ring record carries
/// one (tag bit `RECEIPT_BIT`).
#[inline]
pub(super) fn receipt_of(tag: u32, payload: &[u8]) -> Option<(u64, &[u8])> {
    if tag & RECEIPT_BIT == 0 {
        return None;
    }
    let (id, record) = payload.split_first_chunk::<RECEIPT_PREFIX>()?;
    Some((u64::from_le_bytes(*id), record))
}

/// The encoded `scope` field for a tag, cached per worker.
fn scope_bytes(inner: &Engine, cache: &mut Vec<Option<Bytes>>, tag: u32) -> Bytes {
    let t = tag as usize;
    if let Some(Some(b)) = cache.get(t) {
        return b.clone();
    }
    let b = inner.scopes.read().encoded(t).cloned().unwrap_or_default();
    if cache.len() <= t {
        cache.resize(t + 1, None);
    }
    cache[t] = Some(b.clone());
    b
}
