//! Adaptive request concurrency: AIMD on the number of export requests in
//! flight, after Vector's adaptive request concurrency. Time is cut into
//! windows one smoothed round trip long. At the end of a window:
//!
//! - if a response in it was a throttle (HTTP 429/503, gRPC
//!   RESOURCE_EXHAUSTED/UNAVAILABLE, a timeout), or its mean round trip is
//!   more than `CONGESTED` times the reference round trip, the limit is cut
//!   by `DECREASE` (multiplicative decrease);
//! - else, if the limit was reached in it (the pipeline wanted more) and the
//!   round trip is within `STEADY` times the reference, the limit grows by
//!   one (additive increase); in between it holds.
//!
//! Before the first cut, and again whenever the limit is back at its
//! minimum, growth is a slow start (as TCP's): the limit doubles per
//! window instead of growing by one, so a long round trip (a collector in
//! another region) is filled in a few round trips rather than dozens. On
//! a path of `LONG_ROUND_TRIP_NS` or more it quadruples: each window is a
//! long wait there, and the ceiling (which the memory budget sets) bounds
//! the overshoot.
//!
//! The reference is the least window mean seen (the round trip without a
//! queue, as TCP Vegas keeps it), learnt again whenever the limit is at its
//! minimum: with one request out there is no queue to measure, so a path
//! that really got slower (a receiver moved further away) drives the limit
//! down to the minimum once and is then the new reference. Vector compares
//! with a moving average of past round trips instead; tried here, that
//! average (or a slowly rising minimum) follows the queue's own growth and
//! the limit creeps up past a receiver's capacity.
//!
//! The limit stays within `[min, max]`. One controller per worker, used on
//! the worker's thread only: plain fields, no atomics. Times are passed in
//! (nanoseconds on any monotonic clock) so that tests can drive it.

/// A path whose round trip without a queue is at least this is long: the
/// automatic flow settings grow concurrency and batches only on such paths.
pub const LONG_ROUND_TRIP_NS: u64 = 10_000_000;

/// Multiplicative decrease factor.
const DECREASE: f64 = 0.9;
/// Smoothing of the reported round trip.
const ALPHA: f64 = 0.4;
/// A window mean over this multiple of the reference is congestion.
const CONGESTED: f64 = 2.0;
/// A window mean within this multiple of the reference lets the limit grow.
const STEADY: f64 = 1.5;

/// What came back for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Answered (success or a non-throttling error): the round trip counts.
    Answered,
    /// The receiver pushed back, or the request timed out.
    Throttled,
    /// Failed without telling anything about load (connect refused, say).
    Other,
}

/// The controller.
#[derive(Debug, Clone)]
pub struct Aimd {
    min: usize,
    max: usize,
    limit: usize,
    past_mean: f64,
    reference: f64,
    have_past: bool,
    window_start: u64,
    window_sum: f64,
    window_n: u32,
    reached: bool,
    throttled: bool,
    /// The last load verdict (`set_overloaded`); `None` until the first
    /// one when told to await it (`await_load_verdict`): no growth then.
    overloaded: Option<bool>,
    /// Doubling rather than adding one (until the first cut).
    slow_start: bool,
    /// Where it started.
    start: usize,
    /// It grows past `start` only while the reference round trip is at
    /// least this (0: always).
    grow_above_ns: u64,
}

impl Aimd {
    /// A controller starting at `min`, moving within `[min, max]`.
    pub fn new(min: usize, max: usize, now_ns: u64) -> Aimd {
        Aimd::starting_at(min, max, min, now_ns)
    }

    /// A controller starting at `start` (within `[min, max]`), in slow
    /// start.
    pub fn starting_at(min: usize, max: usize, start: usize, now_ns: u64) -> Aimd {
        let min = min.max(1);
        let max = max.max(min);
        Aimd {
            min,
            max,
            limit: start.clamp(min, max),
            past_mean: 0.0,
            reference: 0.0,
            have_past: false,
            window_start: now_ns,
            window_sum: 0.0,
            window_n: 0,
            reached: false,
            throttled: false,
            overloaded: Some(false),
            slow_start: true,
            start: start.clamp(min, max),
            grow_above_ns: 0,
        }
    }

    /// Grows past its start only while the path's round trip without a
    /// queue (the reference) is at least `ns`: a path that short is kept
    /// full by the few requests it starts with, and more in flight would
    /// only queue at the receiver (or for the CPU, with the receiver on the
    /// same cores).
    pub fn grow_only_above(mut self, ns: u64) -> Aimd {
        self.grow_above_ns = ns;
        self
    }

    /// Grows only once `set_overloaded` has given a first verdict. A
    /// worker with a CPU budget learns whether it is over only after a
    /// measuring interval; slow start on a short path could multiply the
    /// limit many times before that, and the budget would then take many
    /// windows of decrease to bring it back.
    pub fn await_load_verdict(mut self) -> Aimd {
        self.overloaded = None;
        self
    }

    /// The round trip without a queue, as far as it is known (nanoseconds;
    /// 0 before the first answer).
    pub fn reference_ns(&self) -> u64 {
        self.reference as u64
    }

    /// The current limit on requests in flight.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// A request was sent; `in_flight` counts it.
    pub fn on_send(&mut self, in_flight: usize) {
        if in_flight >= self.limit {
            self.reached = true;
        }
    }

    /// Something other than the receiver says to back off (the worker is
    /// over its CPU budget): until cleared, every window counts as
    /// throttled.
    pub fn set_overloaded(&mut self, overloaded: bool) {
        self.overloaded = Some(overloaded);
    }

    /// A request finished after `rtt_ns`.
    pub fn on_response(&mut self, now_ns: u64, rtt_ns: u64, outcome: Outcome) {
        match outcome {
            Outcome::Answered => {
                self.window_sum += rtt_ns as f64;
                self.window_n += 1;
            }
            Outcome::Throttled => self.throttled = true,
            Outcome::Other => {}
        }
        // The first window ends at the first answer; later ones last one
        // smoothed round trip.
        let length = if self.have_past {
            self.past_mean as u64
        } else {
            0
        };
        if now_ns.saturating_sub(self.window_start) >= length
            && (self.window_n > 0 || self.throttled)
        {
            self.end_window(now_ns);
        }
    }

    fn end_window(&mut self, now_ns: u64) {
        let mean = if self.window_n > 0 {
            Some(self.window_sum / self.window_n as f64)
        } else {
            None
        };
        let congested = match (mean, self.have_past) {
            (Some(m), true) => m > self.reference * CONGESTED,
            _ => false,
        };
        if self.throttled || self.overloaded == Some(true) || congested {
            self.limit = ((self.limit as f64 * DECREASE) as usize).clamp(self.min, self.max);
            // Back at the minimum, the path is learnt afresh: slow start.
            self.slow_start = self.limit == self.min;
        } else if self.reached && self.overloaded.is_some() {
            let steady = match (mean, self.have_past) {
                (Some(m), true) => m <= self.reference * STEADY,
                _ => true,
            };
            // The reference, or this first window's mean before there is one.
            let reference = if self.have_past {
                self.reference
            } else {
                mean.unwrap_or(0.0)
            };
            let short = self.limit >= self.start && (reference as u64) < self.grow_above_ns;
            if steady && !short {
                let grown = if self.slow_start {
                    // On a long path each window is long: quadrupling
                    // reaches the default ceiling (112 under a 256M
                    // budget) from 4 in 3 windows rather than 5 (0.4 s
                    // of a 200 ms path's start).
                    if reference as u64 >= LONG_ROUND_TRIP_NS {
                        self.limit * 4
                    } else {
                        self.limit * 2
                    }
                } else {
                    self.limit + 1
                };
                self.limit = grown.min(self.max);
            }
        }
        if let Some(m) = mean {
            if self.have_past {
                self.past_mean = ALPHA * m + (1.0 - ALPHA) * self.past_mean;
                self.reference = if self.limit == self.min {
                    m
                } else {
                    self.reference.min(m)
                };
            } else {
                self.past_mean = m;
                self.reference = m;
                self.have_past = true;
            }
        }
        self.window_start = now_ns;
        self.window_sum = 0.0;
        self.window_n = 0;
        self.reached = false;
        self.throttled = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    /// Drives the controller with a receiver whose round trip is `rtt(n)` for
    /// `n` requests in flight, always saturated, from time `now`; returns the
    /// limits seen.
    fn drive(
        c: &mut Aimd,
        now: &mut u64,
        rounds: usize,
        rtt: impl Fn(usize) -> (u64, Outcome),
    ) -> Vec<usize> {
        let mut seen = Vec::new();
        for _ in 0..rounds {
            let n = c.limit();
            c.on_send(n);
            let (r, outcome) = rtt(n);
            *now += r;
            for _ in 0..n {
                c.on_response(*now, r, outcome);
            }
            seen.push(c.limit());
        }
        seen
    }

    #[test]
    fn grows_while_the_round_trip_holds() {
        let mut c = Aimd::new(1, 64, 0);
        let seen = drive(&mut c, &mut 0, 200, |_| (5 * MS, Outcome::Answered));
        assert_eq!(*seen.last().unwrap(), 64, "{seen:?}");
        assert!(seen.windows(2).all(|w| w[1] >= w[0]));
    }

    #[test]
    fn slow_start_doubles_until_the_first_cut() {
        let mut c = Aimd::new(1, 1024, 0);
        let now = &mut 0;
        let seen = drive(&mut c, now, 8, |_| (5 * MS, Outcome::Answered));
        assert_eq!(seen, [2, 4, 8, 16, 32, 64, 128, 256]);
        // A throttle cuts it and ends the doubling: one at a time after.
        let cut = drive(&mut c, now, 1, |_| (5 * MS, Outcome::Throttled));
        assert_eq!(cut, [230]);
        // (The cut round's later throttles close one more window.)
        let seen = drive(&mut c, now, 4, |_| (5 * MS, Outcome::Answered));
        assert_eq!(seen, [207, 208, 209, 210]);
    }

    #[test]
    fn slow_start_quadruples_over_a_long_path_up_to_the_ceiling() {
        let mut c = Aimd::new(1, 1000, 0);
        let now = &mut 0;
        let seen = drive(&mut c, now, 6, |_| (200 * MS, Outcome::Answered));
        assert_eq!(seen, [4, 16, 64, 256, 1000, 1000]);
        // The first cut ends it there too.
        drive(&mut c, now, 1, |_| (200 * MS, Outcome::Throttled));
        let seen = drive(&mut c, now, 3, |_| (200 * MS, Outcome::Answered));
        assert_eq!(seen, [810, 811, 812]);
    }

    #[test]
    fn grows_past_its_start_only_over_a_long_path() {
        // 1 ms away: a few requests keep the path full; it stays at 4.
        let mut c = Aimd::starting_at(1, 256, 4, 0).grow_only_above(LONG_ROUND_TRIP_NS);
        let seen = drive(&mut c, &mut 0, 50, |_| (MS, Outcome::Answered));
        assert!(seen.iter().all(|&l| l == 4), "{seen:?}");
        // 50 ms away: slow start from 4 up to the ceiling.
        let mut c = Aimd::starting_at(1, 256, 4, 0).grow_only_above(LONG_ROUND_TRIP_NS);
        let seen = drive(&mut c, &mut 0, 5, |_| (50 * MS, Outcome::Answered));
        assert_eq!(seen, [16, 64, 256, 256, 256]);
        // Cut below its start on a short path, it may grow back to it.
        let mut c = Aimd::starting_at(1, 256, 4, 0).grow_only_above(LONG_ROUND_TRIP_NS);
        let now = &mut 0;
        drive(&mut c, now, 3, |_| (MS, Outcome::Throttled));
        assert!(c.limit() < 4);
        let seen = drive(&mut c, now, 20, |_| (MS, Outcome::Answered));
        assert_eq!(*seen.last().unwrap(), 4, "{seen:?}");
    }

    #[test]
    fn settles_near_a_receiver_capacity() {
        // A receiver serving 8 requests at once: beyond that, requests queue
        // and the round trip grows in proportion.
        let mut c = Aimd::new(1, 256, 0);
        let seen = drive(&mut c, &mut 0, 400, |n| {
            (5 * MS * (n.max(8) as u64) / 8, Outcome::Answered)
        });
        let tail = &seen[300..];
        let max = *tail.iter().max().unwrap();
        assert!(max <= 20, "kept growing past the knee: {tail:?}");
        assert!(tail.iter().all(|&l| l >= 6), "collapsed: {tail:?}");
    }

    #[test]
    fn backs_off_under_throttling_and_recovers() {
        let mut c = Aimd::new(1, 64, 0);
        let now = &mut 0;
        drive(&mut c, now, 100, |_| (5 * MS, Outcome::Answered));
        let high = c.limit();
        let seen = drive(&mut c, now, 60, |_| (5 * MS, Outcome::Throttled));
        assert_eq!(*seen.last().unwrap(), 1, "{seen:?}");
        assert!(seen.windows(2).all(|w| w[1] <= w[0]), "{seen:?}");
        assert!(high > 30);
        let seen = drive(&mut c, now, 60, |_| (5 * MS, Outcome::Answered));
        assert!(*seen.last().unwrap() > 30, "{seen:?}");
    }

    #[test]
    fn learns_a_slower_path_again() {
        let mut c = Aimd::new(1, 64, 0);
        let now = &mut 0;
        drive(&mut c, now, 100, |_| (MS, Outcome::Answered));
        assert_eq!(c.limit(), 64);
        // The receiver moves 10x further away: the limit falls to the
        // minimum, takes the new round trip as its reference, and grows.
        let seen = drive(&mut c, now, 200, |_| (10 * MS, Outcome::Answered));
        assert!(seen.contains(&1), "{seen:?}");
        assert_eq!(*seen.last().unwrap(), 64, "{seen:?}");
    }

    #[test]
    fn an_overload_signal_cuts_the_limit_like_a_throttle() {
        let mut c = Aimd::new(1, 64, 0);
        let now = &mut 0;
        drive(&mut c, now, 100, |_| (MS, Outcome::Answered));
        assert_eq!(c.limit(), 64);
        c.set_overloaded(true);
        let seen = drive(&mut c, now, 60, |_| (MS, Outcome::Answered));
        assert_eq!(seen[0], 57);
        assert_eq!(*seen.last().unwrap(), 1, "{seen:?}");
        c.set_overloaded(false);
        let seen = drive(&mut c, now, 20, |_| (MS, Outcome::Answered));
        assert!(*seen.last().unwrap() > 10, "{seen:?}");
    }

    #[test]
    fn awaiting_a_load_verdict_holds_the_start_until_one_comes() {
        let mut c = Aimd::starting_at(1, 64, 4, 0).await_load_verdict();
        let now = &mut 0;
        let seen = drive(&mut c, now, 30, |_| (MS, Outcome::Answered));
        assert!(seen.iter().all(|&l| l == 4), "{seen:?}");
        c.set_overloaded(true);
        let seen = drive(&mut c, now, 30, |_| (MS, Outcome::Answered));
        assert_eq!(*seen.last().unwrap(), 1, "{seen:?}");
        c.set_overloaded(false);
        let seen = drive(&mut c, now, 30, |_| (MS, Outcome::Answered));
        assert!(*seen.last().unwrap() > 4, "{seen:?}");
    }

    #[test]
    fn does_not_grow_when_not_saturated() {
        let mut c = Aimd::new(2, 64, 0);
        let mut now = 0;
        for _ in 0..100 {
            c.on_send(1);
            now += 5 * MS;
            c.on_response(now, 5 * MS, Outcome::Answered);
        }
        assert_eq!(c.limit(), 2);
    }
}
