//! A circuit breaker for one endpoint: after `threshold` consecutive failed
//! attempts it opens and no request is sent; when the open period ends, one
//! request goes through as a probe (half-open). A probe that succeeds closes
//! the breaker; one that fails opens it again for twice as long, up to
//! `max_open`. Only failures that say nothing came back count (connection
//! refused or reset, timeouts, 502/503/504, UNAVAILABLE): an endpoint that
//! answers, even with an error, is up.
//!
//! Used on one worker thread: plain fields. Times are nanoseconds on any
//! monotonic clock, passed in.

/// Where the breaker stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Sending normally.
    Closed = 0,
    /// Not sending until the open period ends.
    Open = 1,
    /// One probe is out; everything else waits for its answer.
    HalfOpen = 2,
}

/// What a sender may do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Send.
    Go,
    /// Send as the probe; report its result.
    Probe,
    /// Wait until this instant, then ask again.
    WaitUntil(u64),
    /// A probe is out: wait for its result, then ask again.
    WaitProbe,
}

/// The breaker.
#[derive(Debug, Clone)]
pub struct Breaker {
    threshold: u32,
    min_open_ns: u64,
    max_open_ns: u64,
    failures: u32,
    state: State,
    open_until: u64,
    open_for: u64,
    opened: u64,
}

impl Breaker {
    /// A closed breaker that opens after `threshold` failures in a row, for
    /// `min_open_ns` at first and at most `max_open_ns`.
    pub fn new(threshold: u32, min_open_ns: u64, max_open_ns: u64) -> Breaker {
        Breaker {
            threshold: threshold.max(1),
            min_open_ns,
            max_open_ns: max_open_ns.max(min_open_ns),
            failures: 0,
            state: State::Closed,
            open_until: 0,
            open_for: min_open_ns,
            opened: 0,
        }
    }

    /// The state now.
    pub fn state(&self) -> State {
        self.state
    }

    /// How many times it has opened.
    pub fn opened(&self) -> u64 {
        self.opened
    }

    /// Asks to send at `now_ns`.
    pub fn admit(&mut self, now_ns: u64) -> Admit {
        match self.state {
            State::Closed => Admit::Go,
            State::Open if now_ns >= self.open_until => {
                self.state = State::HalfOpen;
                Admit::Probe
            }
            State::Open => Admit::WaitUntil(self.open_until),
            State::HalfOpen => Admit::WaitProbe,
        }
    }

    /// Whether a new request would have to wait at `now_ns`: open and
    /// not yet due for its probe, or a probe out.
    pub fn refuses(&self, now_ns: u64) -> bool {
        match self.state {
            State::Closed => false,
            State::Open => now_ns < self.open_until,
            State::HalfOpen => true,
        }
    }

    /// An attempt was answered.
    pub fn on_success(&mut self) {
        self.failures = 0;
        self.state = State::Closed;
        self.open_for = self.min_open_ns;
    }

    /// An attempt got no answer. `probe` says whether it was the probe.
    pub fn on_failure(&mut self, now_ns: u64, probe: bool) {
        self.failures = self.failures.saturating_add(1);
        match self.state {
            State::HalfOpen if probe => {
                self.open_for = (self.open_for.saturating_mul(2)).min(self.max_open_ns);
                self.open(now_ns);
            }
            State::Closed if self.failures >= self.threshold => self.open(now_ns),
            _ => {}
        }
    }

    fn open(&mut self, now_ns: u64) {
        self.state = State::Open;
        self.open_until = now_ns.saturating_add(self.open_for);
        self.opened += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn opens_after_the_threshold_probes_and_closes() {
        let mut b = Breaker::new(3, 100 * MS, 400 * MS);
        for t in 0..2 {
            assert_eq!(b.admit(t), Admit::Go);
            b.on_failure(t, false);
        }
        assert_eq!(b.state(), State::Closed);
        b.on_failure(2, false);
        assert_eq!(b.state(), State::Open);
        assert_eq!(b.admit(50 * MS), Admit::WaitUntil(2 + 100 * MS));
        assert_eq!(b.admit(2 + 100 * MS), Admit::Probe);
        assert_eq!(b.admit(2 + 100 * MS), Admit::WaitProbe);
        // The probe fails: open twice as long.
        b.on_failure(200 * MS, true);
        assert_eq!(b.admit(300 * MS), Admit::WaitUntil(400 * MS));
        assert_eq!(b.admit(400 * MS), Admit::Probe);
        b.on_failure(400 * MS, true);
        assert_eq!(
            b.admit(400 * MS),
            Admit::WaitUntil(800 * MS),
            "capped at max_open"
        );
        assert_eq!(b.admit(800 * MS), Admit::Probe);
        b.on_success();
        assert_eq!(b.state(), State::Closed);
        assert_eq!(b.admit(800 * MS), Admit::Go);
        assert_eq!(b.opened(), 3);
    }
}
