//! Setting values from text, as people write them in environment
//! variables, `set(name, value)` calls and command lines: durations,
//! booleans, numbers, comma-separated lists, `A,B` pairs and rates.

use std::time::Duration;

use crate::record::Signal;

/// Parses a duration: a number with a unit `ns`, `us`, `ms`, `s`, `m` or
/// `h` (`250ms`, `1.5s`), or a bare whole number of milliseconds (as the
/// OpenTelemetry environment variables have it).
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    if let Ok(ms) = s.parse::<u64>() {
        return Some(Duration::from_millis(ms));
    }
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let (number, unit) = (&s[..split], s[split..].trim());
    let x: f64 = number.parse().ok()?;
    let seconds = match unit {
        "ns" => 1e-9,
        "us" | "µs" => 1e-6,
        "ms" => 1e-3,
        "s" => 1.0,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        _ => return None,
    };
    Duration::try_from_secs_f64(x * seconds).ok()
}

pub(super) fn parse_bool(v: &str) -> Option<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

/// `A` or `A,B`: the second defaults to `default_b(a)`.
pub(super) fn pair<A, B>(
    v: &str,
    a: impl Fn(&str) -> Option<A>,
    b: impl Fn(&str) -> Option<B>,
    default_b: impl Fn(&A) -> Option<B>,
) -> Option<(A, B)> {
    match v.split_once(',') {
        Some((x, y)) => Some((a(x.trim())?, b(y.trim())?)),
        None => {
            let x = a(v.trim())?;
            let y = default_b(&x)?;
            Some((x, y))
        }
    }
}

/// A rate with an optional burst (one second's worth by default).
pub(super) fn rate(v: &str, unit: impl Fn(&str) -> Option<u64>) -> Option<(f64, u64)> {
    pair(
        v,
        |s| unit(s).map(|r| r as f64),
        &unit,
        |r| Some(r.ceil().max(1.0) as u64),
    )
}

/// A rate of records: a number, possibly fractional.
pub(super) fn records(v: &str) -> Option<(f64, u64)> {
    pair(v, number::<f64>, number::<u64>, |r| {
        Some(r.ceil().max(1.0) as u64)
    })
}

pub(super) fn number<T: std::str::FromStr>(v: &str) -> Option<T> {
    v.trim().parse().ok()
}

/// A comma-separated list, its items trimmed, empty ones left out.
pub(super) fn list(v: &str) -> Vec<String> {
    v.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

pub(super) fn signal_named(s: &str) -> Option<Signal> {
    Signal::ALL.into_iter().find(|sig| sig.name() == s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_people_write() {
        for (text, want) in [
            ("250", Duration::from_millis(250)),
            ("250ms", Duration::from_millis(250)),
            ("1.5s", Duration::from_millis(1500)),
            ("2m", Duration::from_secs(120)),
            ("1h", Duration::from_secs(3600)),
            ("10us", Duration::from_micros(10)),
        ] {
            assert_eq!(parse_duration(text), Some(want), "{text}");
        }
        for bad in ["", "s", "5 parsecs", "-1s", "1e400s"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }
}
