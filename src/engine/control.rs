//! Flush and shutdown: ask every worker to send what it holds and wait for
//! it, then stop and join the threads.

use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::Engine;
use crate::error::Error;
use crate::stats::Stats;

impl Engine {
    /// Shutdown: refuse, flush until `deadline`, stop and join the workers.
    pub(super) fn shutdown(
        &self,
        threads: &Mutex<Vec<JoinHandle<()>>>,
        timeout: Duration,
    ) -> Result<Stats, Error> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(Error::shutdown());
        }
        // The instruments' last values go out with the rest.
        self.collect_metrics();
        if self.closed.swap(true, Ordering::SeqCst) {
            return Err(Error::shutdown());
        }
        {
            let _g = self.collect_lock.lock();
            self.collector_cv.notify_all();
        }
        let deadline = crate::clock::deadline_after(timeout);
        let deadline_ns = (deadline - self.epoch).as_nanos() as u64;
        self.stop_deadline_ns
            .store(deadline_ns.max(1), Ordering::SeqCst);
        // Wake producers parked on full rings: they will see `closed`.
        for s in self.shards.iter() {
            let _g = s.lock.lock();
            s.space.notify_all();
        }
        self.async_room.notify_waiters();
        let flushed = self.flush_until(deadline);
        self.stop.store(true, Ordering::SeqCst);
        self.wake_all();
        let threads = std::mem::take(&mut *threads.lock());
        for t in threads {
            if t.join().is_err() {
                return Err(Error::internal("a worker thread panicked"));
            }
        }
        let stats = self.stats();
        match flushed {
            Err(e) if !e.is_timeout() => Err(e),
            _ => Ok(stats),
        }
    }

    /// Asks every worker to flush and waits for all of them.
    pub(super) fn flush_until(&self, deadline: Instant) -> Result<(), Error> {
        let epoch = self.flush_requested.fetch_add(1, Ordering::SeqCst) + 1;
        self.wake_all();
        let mut guard = self.flush_lock.lock();
        loop {
            let done = self
                .workers
                .iter()
                .all(|w| w.flush_done.load(Ordering::Acquire) >= epoch);
            if done {
                return Ok(());
            }
            if self.flush_cv.wait_until(&mut guard, deadline).timed_out() {
                let done = self
                    .workers
                    .iter()
                    .all(|w| w.flush_done.load(Ordering::Acquire) >= epoch);
                return if done {
                    Ok(())
                } else {
                    Err(Error::timeout(
                        "flush: records still in flight at the deadline",
                    ))
                };
            }
        }
    }

    pub(super) fn stop_deadline(&self) -> Option<Instant> {
        match self.stop_deadline_ns.load(Ordering::SeqCst) {
            0 => None,
            ns => Some(self.epoch + Duration::from_nanos(ns)),
        }
    }
}
