//! Routing a signal's records across several endpoints (a collector
//! fleet): by trace id or service name on a consistent-hash ring, or round
//! robin.
//!
//! The ring is the one the OpenTelemetry Collector's `loadbalancing`
//! exporter builds, so that otlpflow and such collectors agree on where a
//! trace goes: each endpoint's key is its `host:port`; it gets 100
//! positions `crc32_ieee(key ++ [i as u8]) % 36000` for `i` in `0..100`; a
//! position already taken is skipped (the endpoint listed first keeps it);
//! the positions are sorted; a record goes to the first position at or
//! after `crc32_ieee(16 trace id bytes) % 36000`, wrapping around to the
//! first.
//!
//! The trace id is read where the encoder put it: a span starts with it
//! (field 1, 16 bytes); a log record carries it as field 9, found by
//! skipping the fields before it. Nothing is decoded or re-encoded.

use crate::checksum::crc32_ieee;
use crate::config::Routing;
use crate::record::Signal;

/// Positions on the ring.
const RING_SIZE: u32 = 36_000;
/// Positions per endpoint.
const POSITIONS: u32 = 100;

/// A consistent-hash ring over endpoints, as the Collector builds it.
#[derive(Debug, Clone)]
pub(crate) struct HashRing {
    /// (position, endpoint index), sorted by position.
    positions: Vec<(u32, u16)>,
}

impl HashRing {
    /// The ring of endpoints keyed `keys` (`host:port`), in order.
    pub(crate) fn new<K: AsRef<str>>(keys: &[K]) -> HashRing {
        let mut positions: Vec<(u32, u16)> = Vec::with_capacity(keys.len() * POSITIONS as usize);
        let mut taken = std::collections::HashSet::new();
        for (e, key) in keys.iter().enumerate() {
            let key = key.as_ref().as_bytes();
            let mut buf = Vec::with_capacity(key.len() + 1);
            for i in 0..POSITIONS {
                buf.clear();
                buf.extend_from_slice(key);
                buf.push(i as u8);
                let pos = crc32_ieee(&buf) % RING_SIZE;
                if taken.insert(pos) {
                    positions.push((pos, e as u16));
                }
            }
        }
        positions.sort_unstable();
        HashRing { positions }
    }

    /// The endpoint for `key`'s hash.
    pub(crate) fn pick(&self, key: &[u8]) -> usize {
        self.pick_avoiding(key, |_| false)
    }

    /// The endpoint for `key`'s hash, passing over those `down` says are
    /// down to the next one on the ring (the first pick if all are down).
    pub(crate) fn pick_avoiding(&self, key: &[u8], down: impl Fn(usize) -> bool) -> usize {
        let n = self.positions.len();
        if n == 0 {
            return 0;
        }
        let h = crc32_ieee(key) % RING_SIZE;
        let start = self.positions.partition_point(|(p, _)| *p < h) % n;
        let first = self.positions[start].1 as usize;
        (0..n)
            .map(|k| self.positions[(start + k) % n].1 as usize)
            .find(|e| !down(*e))
            .unwrap_or(first)
    }
}

/// Where one signal's records go.
#[derive(Debug, Clone)]
pub(crate) struct Router {
    routing: Routing,
    endpoints: usize,
    ring: HashRing,
    /// Under `Routing::Service`: the one endpoint of this pipeline's
    /// service.
    service: usize,
}

impl Router {
    /// A router over endpoints keyed `keys`; `service_name` is the
    /// resource's.
    pub(crate) fn new<K: AsRef<str>>(routing: Routing, keys: &[K], service_name: &str) -> Router {
        let ring = HashRing::new(keys);
        let service = ring.pick(service_name.as_bytes());
        Router {
            routing,
            endpoints: keys.len().max(1),
            ring,
            service,
        }
    }

    /// The endpoint index of an encoded record of `signal`. `turn` is the
    /// caller's round-robin counter; `down`, when failing over, says which
    /// endpoints to pass over.
    #[inline]
    pub(crate) fn pick(
        &self,
        signal: Signal,
        record: &[u8],
        turn: &mut usize,
        down: Option<&dyn Fn(usize) -> bool>,
    ) -> usize {
        if self.endpoints == 1 {
            return 0;
        }
        let avoid = |e: usize| down.is_some_and(|d| d(e));
        match self.routing {
            Routing::Service if !avoid(self.service) => self.service,
            Routing::Service => self.ring.pick_avoiding(b"", avoid),
            Routing::TraceId => match trace_id(signal, record) {
                Some(id) => self.ring.pick_avoiding(id, avoid),
                None => round_robin(turn, self.endpoints, avoid),
            },
            Routing::RoundRobin => round_robin(turn, self.endpoints, avoid),
        }
    }
}

/// The next endpoint in turn that is not down (the next one if all are).
fn round_robin(turn: &mut usize, n: usize, down: impl Fn(usize) -> bool) -> usize {
    let first = (*turn + 1) % n;
    *turn = (0..n)
        .map(|k| (first + k) % n)
        .find(|e| !down(*e))
        .unwrap_or(first);
    *turn
}

/// The trace id of an encoded span or log record, if it has one.
pub(crate) fn trace_id(signal: Signal, record: &[u8]) -> Option<&[u8]> {
    match signal {
        // Field 1, length 16, first: the span encoder writes it first
        // whenever it is not all zero.
        Signal::Traces => match record {
            [0x0A, 0x10, id @ ..] if id.len() >= 16 => Some(&id[..16]),
            _ => None,
        },
        Signal::Logs => field_bytes(record, 9).filter(|id| id.len() == 16),
        Signal::Metrics => None,
    }
}

/// The bytes of length-delimited field `field` of a message, found by
/// skipping the fields before it.
fn field_bytes(mut msg: &[u8], field: u64) -> Option<&[u8]> {
    while !msg.is_empty() {
        let key = varint(&mut msg)?;
        let len = match key & 7 {
            0 => {
                varint(&mut msg)?;
                0
            }
            1 => 8,
            2 => usize::try_from(varint(&mut msg)?).ok()?,
            5 => 4,
            _ => return None,
        };
        let body = msg.get(..len)?;
        msg = &msg[len..];
        if key >> 3 == field && key & 7 == 2 {
            return Some(body);
        }
    }
    None
}

fn varint(buf: &mut &[u8]) -> Option<u64> {
    let mut v = 0u64;
    for i in 0..10 {
        let (&b, rest) = buf.split_first()?;
        *buf = rest;
        v |= u64::from(b & 0x7F) << (7 * i);
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_contested_position_stays_with_the_first_endpoint() {
        // The same key twice: the second gets no position at all.
        let ring = HashRing::new(&["a:1", "a:1"]);
        assert_eq!(ring.positions.len(), 100);
        assert!(ring.positions.iter().all(|(_, e)| *e == 0));
        assert!(ring.positions.windows(2).all(|w| w[0].0 < w[1].0));
    }

    #[test]
    fn trace_ids_are_read_from_spans_and_logs() {
        let id = [7u8; 16];
        let span = crate::record::Span {
            trace_id: id,
            span_id: [1; 8],
            name: "x",
            ..Default::default()
        };
        let mut buf = vec![0; span.encoded_len()];
        span.encode(&mut buf);
        assert_eq!(trace_id(Signal::Traces, &buf), Some(&id[..]));
        let log = crate::record::LogRecord {
            time_unix_nano: 5,
            severity_text: "INFO",
            body: Some(crate::record::Value::Str("hello")),
            trace_id: id,
            span_id: [2; 8],
            ..Default::default()
        };
        let mut buf = vec![0; log.encoded_len()];
        log.encode(&mut buf);
        assert_eq!(trace_id(Signal::Logs, &buf), Some(&id[..]));
        let anonymous = crate::record::LogRecord {
            time_unix_nano: 5,
            ..Default::default()
        };
        let mut buf = vec![0; anonymous.encoded_len()];
        anonymous.encode(&mut buf);
        assert_eq!(trace_id(Signal::Logs, &buf), None);
    }
}
