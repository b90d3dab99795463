//! What a worker watches besides its rings: its own CPU time against a
//! budget, and when records start and stop being lost (logged once each
//! way, never per record).

use std::time::{Duration, Instant};

use crate::engine::Engine;

/// Measures the worker thread's CPU time against its budget (a fraction of
/// one core), every `EVERY`.
pub(super) struct CpuMeter {
    budget: f64,
    wall: Instant,
    cpu: Duration,
}

impl CpuMeter {
    const EVERY: Duration = Duration::from_millis(100);

    pub(super) fn new(budget: f64) -> CpuMeter {
        CpuMeter {
            budget,
            wall: Instant::now(),
            cpu: thread_cpu_time(),
        }
    }

    /// Whether the thread used more than its budget since the last check
    /// (`None` between checks).
    pub(super) fn over(&mut self) -> Option<bool> {
        let wall = self.wall.elapsed();
        if wall < Self::EVERY {
            return None;
        }
        let cpu = thread_cpu_time();
        let used = (cpu.saturating_sub(self.cpu)).as_secs_f64() / wall.as_secs_f64();
        self.wall = Instant::now();
        self.cpu = cpu;
        Some(used > self.budget)
    }
}

/// CPU time of the calling thread.
fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_THREAD_CPUTIME_ID is
    // supported on Linux. On failure `ts` stays zero and we report zero.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(
        ts.tv_sec.max(0) as u64,
        ts.tv_nsec.clamp(0, 999_999_999) as u32,
    )
}

/// Logs when records start being lost and when they stop, at most once
/// each way, never per record (the OpenTelemetry error-handling guidance:
/// say so, but do not flood).
pub(super) struct LossLog {
    checked: Instant,
    lost: u64,
    /// While losing: when it began, the count then, and the last rise.
    losing: Option<(Instant, u64, Instant)>,
}

impl LossLog {
    const EVERY: Duration = Duration::from_millis(250);
    /// No new loss for this long ends a loss episode.
    const QUIET: Duration = Duration::from_secs(2);

    pub(super) fn new() -> LossLog {
        LossLog {
            checked: Instant::now(),
            lost: 0,
            losing: None,
        }
    }

    pub(super) fn check(&mut self, inner: &Engine, finishing: bool) {
        let now = Instant::now();
        if !finishing && now - self.checked < Self::EVERY {
            return;
        }
        self.checked = now;
        let s = inner.stats();
        let lost = s.dropped.total() + s.failed.total() + s.rejected;
        if lost > self.lost {
            if self.losing.is_none() {
                let by_reason = |counts: &mut dyn Iterator<Item = (&'static str, u64)>| {
                    counts
                        .map(|(name, n)| format!("{name} {n}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                log::warn!(
                    "otlpflow: losing records: {lost} so far (dropped: {}; failed: {}; rejected by the receiver {})",
                    by_reason(&mut s.dropped.iter().map(|(r, n)| (r.name(), n))),
                    by_reason(&mut s.failed.iter().map(|(r, n)| (r.name(), n))),
                    s.rejected
                );
                self.losing = Some((now, self.lost, now));
            } else if let Some(l) = self.losing.as_mut() {
                l.2 = now;
            }
            self.lost = lost;
        }
        if let Some((began, base, last)) = self.losing {
            if finishing || now - last >= Self::QUIET {
                log::warn!(
                    "otlpflow: records no longer being lost: {} lost over {:.1} s",
                    lost - base,
                    (last - began).as_secs_f64()
                );
                self.losing = None;
            }
        }
    }
}
