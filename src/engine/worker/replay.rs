//! Replay from the disk spool, on worker 0, oldest segment first, each
//! request sent to the endpoint it was spooled for (or the signal's first
//! endpoint, if that one has left the set) while that endpoint's breaker lets
//! requests through, in at most half of its request slots while fresh data
//! waits (`IDLE_REPLAY` or all of them otherwise), so fresh data keeps
//! room. Segments are read a request at a time, just before it is sent,
//! and the next segment is opened once every request of the ones before it
//! is on its way, so the stream of requests does not pause at a segment's
//! end and replay holds in memory only what is in flight (reserved in the
//! memory budget, at most half of it) and the one request it is about to
//! send. A request
//! that fails with a retryable error goes back to the front of its
//! segment's queue (the breaker then holds replay back); a segment is
//! deleted once every request in it is acknowledged or refused for good, so
//! a segment on disk never has a copy elsewhere.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::export_task::lane_key;
use super::Worker;
use crate::export::ExportError;
use crate::flow::concurrency::Outcome;
use crate::otlp::form::{convert, Form};
use crate::spool::{Entry, SegmentReader, Spool};

/// Replay requests in flight per endpoint while no fresh data waits.
const IDLE_REPLAY: usize = 64;

/// A segment in replay.
pub(super) struct Replay {
    seq: u64,
    /// Its file, read a request at a time; None once read to the end.
    reader: Option<SegmentReader>,
    /// Its requests read and not yet sent (the next one, and those back
    /// after a failed attempt).
    entries: Rc<RefCell<VecDeque<Entry>>>,
    /// Requests of it in flight.
    outstanding: Rc<Cell<usize>>,
}

impl Worker {
    /// Starts what replay the endpoints have room for.
    pub(super) fn replay(&mut self) {
        let Some(spool) = self.inner.spool.clone() else {
            return;
        };
        if self.idx != 0 {
            return;
        }
        let now = self.shared.now_ns();
        loop {
            // The oldest segment with a request to send (reading its next
            // one from the file); the next segment from disk when every
            // loaded one has sent all it has.
            let mut next = None;
            for r in self.replaying.iter_mut() {
                if r.entries.borrow().is_empty() {
                    if let Some(reader) = r.reader.as_mut() {
                        match spool.next_entry(r.seq, reader) {
                            Some(e) => r.entries.borrow_mut().push_back(e),
                            None => r.reader = None,
                        }
                    }
                }
                if !r.entries.borrow().is_empty() {
                    next = Some((r.entries.clone(), r.outstanding.clone()));
                    break;
                }
            }
            let (queue, outstanding) = match next {
                Some(n) => n,
                None => {
                    if !spool.has_work() {
                        break;
                    }
                    let Some((seq, reader)) = spool.next_segment() else {
                        break;
                    };
                    self.replaying.push_back(Replay {
                        seq,
                        reader: Some(reader),
                        entries: Rc::default(),
                        outstanding: Rc::new(Cell::new(0)),
                    });
                    continue;
                }
            };
            let Some(lane) = queue.borrow().front().map(|e| self.lane_for(e)) else {
                break;
            };
            let Some(lane) = lane else {
                // No endpoint of its signal at all: nothing can take it.
                if let Some(e) = queue.borrow_mut().pop_front() {
                    spool
                        .counters
                        .failed
                        .fetch_add(e.items as u64, Ordering::Relaxed);
                }
                continue;
            };
            if !self.reform_front(&queue, lane, &spool) {
                continue;
            }
            // With fresh data waiting, replay keeps to half the slots;
            // without, it may use them all, and at least `IDLE_REPLAY`
            // (replay is bound by round trips: 4 requests in flight
            // replayed about 170k spans/s here, 16 about 260k, 64 about
            // 450k).
            let limit = self.shared.limit();
            let share = if self.batches_empty() {
                limit.max(IDLE_REPLAY)
            } else {
                limit.div_ceil(2)
            };
            let busy = self.shared.lane_in_flight.borrow()[lane];
            let refused = self.shared.breakers.borrow()[lane].refuses(now);
            if refused || busy >= share {
                break;
            }
            // A replayed request's bytes count against the memory budget
            // while it is in flight, and replay keeps to half the budget
            // (one request at least), so fresh records keep room.
            let bytes = queue.borrow().front().map_or(0, |e| e.request.len() as u64);
            if let Some(b) = &self.inner.budget {
                let mine = self.replay_bytes.get();
                if mine > 0 && (mine + bytes).saturating_mul(2) > b.limit() {
                    break;
                }
                if !b.try_reserve(bytes) {
                    break;
                }
            }
            let Some(entry) = queue.borrow_mut().pop_front() else {
                break;
            };
            outstanding.set(outstanding.get() + 1);
            self.replay_bytes.set(self.replay_bytes.get() + bytes);
            self.send_replayed(spool.clone(), lane, entry, queue, outstanding);
        }
        // Segments wholly acknowledged leave the disk.
        self.replaying.retain(|r| {
            let settled =
                r.reader.is_none() && r.entries.borrow().is_empty() && r.outstanding.get() == 0;
            if settled {
                spool.done(r.seq);
            }
            !settled
        });
    }

    /// The lane a spooled request goes to: its endpoint's while that is in
    /// the signal's set, else the set's first. An endpoint that left the
    /// set may keep its lane (to send what it holds) but is not replayed
    /// to: it may be gone for good, and its breaker would hold all of
    /// replay back behind the request.
    fn lane_for(&self, e: &Entry) -> Option<usize> {
        let t = &self.table;
        let members = t.members(e.signal);
        members
            .iter()
            .copied()
            .find(|l| lane_key(&t.exports[*l]) == e.key)
            .or_else(|| members.first().copied())
    }

    /// Puts the request at the front of `queue` in the form `lane` sends
    /// (the protocol or compression may have changed since it was spooled,
    /// in this process or an earlier one). One that cannot be converted
    /// leaves the queue, counted failed. Returns whether the front request
    /// may be sent.
    fn reform_front(&self, queue: &RefCell<VecDeque<Entry>>, lane: usize, spool: &Spool) -> bool {
        let s = &self.table.exports[lane];
        let to = Form {
            protocol: s.protocol,
            compression: s.compression,
        };
        let mut queue = queue.borrow_mut();
        let Some(e) = queue.front_mut() else {
            return false;
        };
        let limit = self.inner.config.max_request_bytes;
        match convert(&e.request, to, s.compression_level, limit) {
            Ok(None) => true,
            Ok(Some(request)) => {
                e.request = request.into();
                true
            }
            Err(err) => {
                spool
                    .counters
                    .failed
                    .fetch_add(e.items as u64, Ordering::Relaxed);
                *self.inner.last_error.lock() = Some(format!(
                    "spool: a request for {} could not be converted to {:?} {:?}: {err}",
                    s.endpoint.address(),
                    to.protocol,
                    to.compression
                ));
                queue.pop_front();
                false
            }
        }
    }

    fn send_replayed(
        &self,
        spool: std::sync::Arc<Spool>,
        lane: usize,
        entry: Entry,
        queue: Rc<RefCell<VecDeque<Entry>>>,
        outstanding: Rc<Cell<usize>>,
    ) {
        let shared = self.shared.clone();
        let replay_bytes = self.replay_bytes.clone();
        let entry_bytes = entry.request.len() as u64;
        shared.lane_in_flight.borrow_mut()[lane] += 1;
        tokio::task::spawn_local(async move {
            let exporter = shared.exporters.borrow()[lane].clone();
            let timeout = shared.settings(lane).timeout;
            let chunks = [entry.request.clone()];
            let t0 = Instant::now();
            let result = match tokio::time::timeout(timeout, exporter.send(&chunks)).await {
                Ok(r) => r,
                Err(_) => Err(ExportError::Timeout),
            };
            let rtt = t0.elapsed();
            match result {
                Ok(ack) => {
                    shared.on_attempt(lane, false, rtt, Outcome::Answered, false);
                    let delivered = (entry.items as u64).saturating_sub(ack.rejected);
                    spool
                        .counters
                        .replayed
                        .fetch_add(delivered, Ordering::Relaxed);
                }
                Err(e) => {
                    let outcome = if e.throttled() {
                        Outcome::Throttled
                    } else {
                        Outcome::Other
                    };
                    shared.on_attempt(lane, false, rtt, outcome, e.no_answer());
                    // Retryable: back to the front of the queue, for when
                    // the breaker lets requests through again. A permanent
                    // refusal is the end of it, counted.
                    if e.retryable() {
                        queue.borrow_mut().push_front(entry);
                    } else {
                        spool
                            .counters
                            .failed
                            .fetch_add(entry.items as u64, Ordering::Relaxed);
                        log::warn!("otlpflow: spool: a replayed request failed for good: {e}");
                    }
                }
            }
            shared.inner.release_memory(entry_bytes);
            replay_bytes.set(replay_bytes.get() - entry_bytes);
            shared.lane_in_flight.borrow_mut()[lane] -= 1;
            outstanding.set(outstanding.get() - 1);
            shared.slot_freed.notify_one();
            shared.inner.workers[shared.idx].notify.notify_one();
        });
    }
}
