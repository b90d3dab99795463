//! A zero-allocation walk of an `ExportTraceServiceRequest` in protobuf wire
//! format: checks that every field is well formed and nested lengths stay in
//! bounds, that span ids have their OTLP sizes, and counts spans. The sink
//! uses it where decoding every span with prost would make the receiver,
//! not the engine, the bottleneck.

/// Why a message did not walk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WalkError {
    /// A varint ran past the end or over 10 bytes.
    Varint,
    /// A length ran past the end of its enclosing message.
    Length,
    /// A wire type protobuf does not define (or a deprecated group).
    WireType,
    /// A field had the wrong wire type for its number.
    FieldType,
    /// A trace id was not 16 bytes, or a span id not 8.
    IdSize,
}

impl std::fmt::Display for WalkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            WalkError::Varint => "malformed varint",
            WalkError::Length => "length exceeds the enclosing message",
            WalkError::WireType => "invalid wire type",
            WalkError::FieldType => "field has the wrong wire type",
            WalkError::IdSize => "trace id must be 16 bytes and span id 8",
        })
    }
}

struct Fields<'a> {
    buf: &'a [u8],
    pos: usize,
}

#[derive(Clone, Copy)]
enum Field<'a> {
    Varint,
    Fixed,
    Bytes(&'a [u8]),
}

impl<'a> Fields<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Fields { buf, pos: 0 }
    }

    #[inline]
    fn varint(&mut self) -> Result<u64, WalkError> {
        // One-byte varints (keys and short lengths) are the common case.
        if let Some(&b) = self.buf.get(self.pos) {
            if b < 0x80 {
                self.pos += 1;
                return Ok(b as u64);
            }
        }
        self.varint_slow()
    }

    #[inline(never)]
    fn varint_slow(&mut self) -> Result<u64, WalkError> {
        let mut v = 0u64;
        for i in 0..10 {
            let b = *self.buf.get(self.pos).ok_or(WalkError::Varint)?;
            self.pos += 1;
            v |= ((b & 0x7f) as u64) << (7 * i);
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err(WalkError::Varint)
    }

    fn skip(&mut self, n: usize) -> Result<&'a [u8], WalkError> {
        let end = self.pos.checked_add(n).ok_or(WalkError::Length)?;
        let s = self.buf.get(self.pos..end).ok_or(WalkError::Length)?;
        self.pos = end;
        Ok(s)
    }

    /// The next field as (number, value), or `None` at the end.
    #[inline]
    fn next(&mut self) -> Result<Option<(u64, Field<'a>)>, WalkError> {
        if self.pos >= self.buf.len() {
            return Ok(None);
        }
        let key = self.varint()?;
        let value = match key & 7 {
            0 => {
                self.varint()?;
                Field::Varint
            }
            1 => {
                self.skip(8)?;
                Field::Fixed
            }
            2 => {
                let n = self.varint()?;
                Field::Bytes(self.skip(usize::try_from(n).map_err(|_| WalkError::Length)?)?)
            }
            5 => {
                self.skip(4)?;
                Field::Fixed
            }
            _ => return Err(WalkError::WireType),
        };
        Ok(Some((key >> 3, value)))
    }
}

/// Checks a message's fields are well formed, without looking inside them.
fn skim(buf: &[u8]) -> Result<(), WalkError> {
    let mut f = Fields::new(buf);
    while f.next()?.is_some() {}
    Ok(())
}

fn expect_bytes<'a>(v: Field<'a>) -> Result<&'a [u8], WalkError> {
    match v {
        Field::Bytes(b) => Ok(b),
        _ => Err(WalkError::FieldType),
    }
}

/// Walks a span's fields: each must be well formed and inside the span, and
/// the ids must have their sizes. Attributes, events and links are not
/// opened here (the sampled full decode checks them): opening them doubles
/// the walk's cost, and the walk must stay cheaper than the engine. This is
/// the receiver's innermost loop, so it reads bytes directly rather than
/// through `Fields`.
fn walk_span(buf: &[u8]) -> Result<(), WalkError> {
    let mut pos = 0;
    let varint = |pos: &mut usize| -> Result<u64, WalkError> {
        match buf.get(*pos) {
            Some(&b) if b < 0x80 => {
                *pos += 1;
                Ok(b as u64)
            }
            _ => {
                let mut f = Fields { buf, pos: *pos };
                let v = f.varint_slow()?;
                *pos = f.pos;
                Ok(v)
            }
        }
    };
    while pos < buf.len() {
        let key = varint(&mut pos)?;
        match key & 7 {
            0 => {
                varint(&mut pos)?;
            }
            1 => pos += 8,
            5 => pos += 4,
            2 => {
                let n = varint(&mut pos)?;
                let n = usize::try_from(n).map_err(|_| WalkError::Length)?;
                let need = match key >> 3 {
                    1 => Some(16),
                    2 => Some(8),
                    4 if n != 0 => Some(8),
                    _ => None,
                };
                if need.is_some_and(|want| want != n) {
                    return Err(WalkError::IdSize);
                }
                pos = pos.checked_add(n).ok_or(WalkError::Length)?;
            }
            _ => return Err(WalkError::WireType),
        }
        if pos > buf.len() {
            return Err(WalkError::Length);
        }
    }
    Ok(())
}

/// Walks a log record: fields well formed, trace id 16 bytes and span id 8
/// when present.
fn walk_log(buf: &[u8]) -> Result<(), WalkError> {
    let mut f = Fields::new(buf);
    while let Some((num, v)) = f.next()? {
        let want = match num {
            9 => 16,
            10 => 8,
            _ => continue,
        };
        if expect_bytes(v)?.len() != want {
            return Err(WalkError::IdSize);
        }
    }
    Ok(())
}

/// Walks a metric and returns its number of data points (the entries of
/// field 1 of its gauge, sum, histogram, exponential histogram or summary).
fn walk_metric(buf: &[u8]) -> Result<u64, WalkError> {
    let mut points = 0;
    let mut f = Fields::new(buf);
    while let Some((num, v)) = f.next()? {
        if matches!(num, 5 | 7 | 9 | 10 | 11) {
            let mut data = Fields::new(expect_bytes(v)?);
            while let Some((num, v)) = data.next()? {
                if num == 1 {
                    skim(expect_bytes(v)?)?;
                    points += 1;
                }
            }
        }
    }
    Ok(points)
}

/// Walks an `ExportTraceServiceRequest` and returns its number of spans.
pub fn count_spans(request: &[u8]) -> Result<u64, WalkError> {
    count_records(request, crate::record::Signal::Traces)
}

/// Walks an `Export{Trace,Logs,Metrics}ServiceRequest` (one shape, see
/// `engine::batch`) and returns its number of spans, log records or metric
/// data points.
pub fn count_records(request: &[u8], signal: crate::record::Signal) -> Result<u64, WalkError> {
    use crate::record::Signal;
    let mut spans = 0;
    let mut top = Fields::new(request);
    while let Some((num, v)) = top.next()? {
        if num != 1 {
            continue;
        }
        let mut rs = Fields::new(expect_bytes(v)?);
        while let Some((num, v)) = rs.next()? {
            match num {
                1 => skim(expect_bytes(v)?)?,
                2 => {
                    let mut ss = Fields::new(expect_bytes(v)?);
                    while let Some((num, v)) = ss.next()? {
                        match num {
                            1 => skim(expect_bytes(v)?)?,
                            2 => {
                                let b = expect_bytes(v)?;
                                spans += match signal {
                                    Signal::Traces => walk_span(b).map(|_| 1)?,
                                    Signal::Logs => walk_log(b).map(|_| 1)?,
                                    Signal::Metrics => walk_metric(b)?,
                                };
                            }
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
    }
    Ok(spans)
}

/// Nesting depth `decode_cost` looks into: OTLP's deepest path (request,
/// resource, scope, span, event, attribute, value, array or kvlist, value,
/// ...) with room to spare; deeper bytes count as one leaf.
const COST_DEPTH: u32 = 12;

/// Bytes one decoded message may take in memory beyond its wire bytes: the
/// largest OTLP struct prost allocates (a `Span`, about 300 bytes) plus the
/// slack of a growing `Vec`.
pub const DECODED_BYTES_PER_MESSAGE: u64 = 512;

/// An upper bound on what a full prost decode of `message` allocates,
/// computed without allocating: its bytes, plus
/// [`DECODED_BYTES_PER_MESSAGE`] for every length-delimited field at any
/// depth that parses as a message (a string that happens to parse counts
/// too: the bound errs high). A hostile request of empty messages (2 bytes
/// each on the wire, hundreds decoded) shows here before anything is
/// decoded.
pub fn decode_cost(message: &[u8]) -> u64 {
    fn messages(buf: &[u8], depth: u32) -> Option<u64> {
        let mut n = 0u64;
        let mut f = Fields::new(buf);
        while let Some((_, v)) = f.next().ok()? {
            if let Field::Bytes(b) = v {
                n += 1;
                if depth < COST_DEPTH && !b.is_empty() {
                    n += messages(b, depth + 1).unwrap_or(0);
                }
            }
        }
        Some(n)
    }
    let n = messages(message, 0).unwrap_or(0);
    (message.len() as u64).saturating_add(n.saturating_mul(DECODED_BYTES_PER_MESSAGE))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_truncation_without_panicking() {
        // resource_spans { scope_spans { spans { trace_id: 16 bytes, span_id: 8 } } }
        let mut span = vec![0x0a, 16];
        span.extend_from_slice(&[1; 16]);
        span.extend_from_slice(&[0x12, 8]);
        span.extend_from_slice(&[2; 8]);
        let mut ss = vec![0x12, span.len() as u8];
        ss.extend_from_slice(&span);
        let mut rs = vec![0x12, ss.len() as u8];
        rs.extend_from_slice(&ss);
        let mut req = vec![0x0a, rs.len() as u8];
        req.extend_from_slice(&rs);
        assert_eq!(count_spans(&req), Ok(1));
        for cut in 0..req.len() {
            assert!(count_spans(&req[..cut]).is_err() || cut == 0, "cut {cut}");
        }
        assert_eq!(count_spans(&[0x0b]), Err(WalkError::WireType));
        // Empty spans: two bytes each on the wire, a decoded span each.
        let mut many = Vec::new();
        for _ in 0..1000 {
            many.extend_from_slice(&[0x12, 0x00]);
        }
        let mut rs = vec![0x12];
        crate::record::wire::put_varint(&mut rs, many.len() as u64);
        rs.extend_from_slice(&many);
        let mut req = vec![0x0a];
        crate::record::wire::put_varint(&mut req, rs.len() as u64);
        req.extend_from_slice(&rs);
        assert_eq!(count_spans(&req), Ok(1000));
        assert!(decode_cost(&req) >= 1000 * DECODED_BYTES_PER_MESSAGE);
        assert_eq!(count_spans(&[0x08, 0xff]), Err(WalkError::Varint));
    }
}
