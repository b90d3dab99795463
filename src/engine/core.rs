//! What every clone of a pipeline shares: the engine (replaced in a fork
//! child), the threads to join, the metrics collector thread and the
//! Prometheus endpoint; and dropping the last clone.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::{fork, Engine, PipelineCore};

impl PipelineCore {
    /// Starts the thread that collects instruments every
    /// `metrics_interval`, once. It holds the engine (not the pipeline), and
    /// exits when shutdown begins; shutdown joins it.
    pub(super) fn start_collector(&self) {
        self.start_collector_for(self.engine.get_arc());
    }

    pub(super) fn start_collector_for(&self, engine: Arc<Engine>) {
        if self.collector.swap(true, Ordering::AcqRel) {
            return;
        }
        let spawned = std::thread::Builder::new()
            .name("otlpflow-metrics".into())
            .spawn(move || {
                crate::threads::mark_own();
                let every = engine.config.metrics_interval;
                loop {
                    {
                        let mut g = engine.collect_lock.lock();
                        if !engine.closed.load(Ordering::Acquire) {
                            engine.collector_cv.wait_for(&mut g, every);
                        }
                    }
                    if engine.closed.load(Ordering::Acquire) {
                        return;
                    }
                    engine.collect_metrics();
                }
            });
        match spawned {
            Ok(h) => self.threads.lock().push(h),
            Err(e) => {
                *self.engine().last_error.lock() = Some(format!("metrics collector: {e}"));
                self.collector.store(false, Ordering::Release);
            }
        }
    }

    /// The current engine.
    #[inline]
    pub(super) fn engine(&self) -> &Engine {
        self.engine.get()
    }

    /// In a fork child: the parent's worker threads do not exist here, and
    /// its rings may hold half-written records. Start a fresh engine with the
    /// same configuration and scopes, carrying the counts over, and retain the
    /// old one forever (its locks or memory may be in any state).
    #[cold]
    pub(super) fn restart_after_fork(&self) {
        let _g = self.restart.lock();
        let generation = fork::generation();
        if self.generation.load(Ordering::Relaxed) == generation {
            return;
        }
        let old = self.engine();
        // The parent's thread handles name threads that do not exist here:
        // keep them, never join them.
        fork::retain(Box::new(std::mem::take(&mut *self.threads.lock())));
        let scopes = fork::read_inherited(&old.scopes);
        let instruments = fork::read_inherited(&old.instruments);
        let config = old.config.clone();
        let closed = old.closed.load(Ordering::Relaxed);
        let carried = old.stats();
        if closed {
            // A pipeline shut down before the fork stays shut down.
            self.generation.store(generation, Ordering::Relaxed);
            return;
        }
        match Engine::launch(config, old.id, scopes, Some(carried)) {
            Ok((inner, threads)) => {
                *self.threads.lock() = threads;
                // The host's instrument handles point at these: the child
                // collects them with a collector of its own (the parent's
                // thread does not exist here).
                let has_instruments = !instruments.list().is_empty() || inner.config.self_metrics;
                *inner.instruments.write() = instruments;
                self.collector.store(false, Ordering::Release);
                if has_instruments {
                    self.start_collector_for(inner.clone());
                }
                self.engine.replace(inner);
            }
            Err(e) => {
                *old.last_error.lock() = Some(format!("restart after fork: {e}"));
                old.closed.store(true, Ordering::SeqCst);
            }
        }
        self.generation.store(generation, Ordering::Relaxed);
    }
}

impl Drop for PipelineCore {
    fn drop(&mut self) {
        if let Some(mut server) = self.prometheus.lock().take() {
            server.stop();
        }
        if fork::generation() != self.generation.load(Ordering::Relaxed) {
            // A fork child that never used the pipeline: nothing of it runs
            // here, and the parent owns its work. Keep the parent's engine.
            fork::retain(Box::new(std::mem::take(&mut *self.threads.lock())));
            self.engine.retain_current();
            return;
        }
        let engine = self.engine();
        if !engine.closed.load(Ordering::Acquire) {
            let _ = engine.shutdown(&self.threads, Duration::from_secs(5));
        }
        // The slot drops its engine after this; the workers are joined.
    }
}
