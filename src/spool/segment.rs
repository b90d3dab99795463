//! The spool's file format. A segment is `OTLPFSPL`, a format version (u32
//! little-endian) and 4 reserved bytes, then records: the body's length
//! (u32 LE), its CRC-32C (u32 LE), and the body: the signal (u8), the
//! endpoint key's length (u16 LE) and bytes, the number of OTLP records
//! (u32 LE), and the export request exactly as it was framed (and
//! compressed) for the wire. A record whose checksum does not match, or
//! that the file ends inside, is corrupt: it is skipped and counted, and
//! reading goes on at the next record when its length was readable.

use bytes::Bytes;

use crate::checksum::crc32c;
use crate::record::Signal;

pub(crate) const MAGIC: &[u8; 8] = b"OTLPFSPL";
pub(crate) const VERSION: u32 = 1;
pub(crate) const HEADER: usize = 16;
/// Length and checksum in front of each body.
const FRAME: usize = 8;
/// The largest body a reader accepts (a request is capped well below).
const MAX_BODY: usize = 256 << 20;

/// One spooled export request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) signal: Signal,
    /// The endpoint it was for (`host:port` and path).
    pub(crate) key: String,
    /// OTLP records in it.
    pub(crate) items: u32,
    /// The request as framed for the wire.
    pub(crate) request: Bytes,
}

/// A segment file's first bytes.
pub(crate) fn header() -> [u8; HEADER] {
    let mut h = [0u8; HEADER];
    h[..8].copy_from_slice(MAGIC);
    h[8..12].copy_from_slice(&VERSION.to_le_bytes());
    h
}

/// Appends `e`, framed, to `out`.
pub(crate) fn encode(e: &Entry, out: &mut Vec<u8>) {
    let key = &e.key.as_bytes()[..e.key.len().min(u16::MAX as usize)];
    let body_len = 1 + 2 + key.len() + 4 + e.request.len();
    let start = out.len();
    out.extend_from_slice(&(body_len as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.push(e.signal.index() as u8);
    out.extend_from_slice(&(key.len() as u16).to_le_bytes());
    out.extend_from_slice(key);
    out.extend_from_slice(&e.items.to_le_bytes());
    out.extend_from_slice(&e.request);
    let crc = crc32c(&out[start + FRAME..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// Reads a segment's records one at a time, so replay holds in memory only
/// the requests it is about to send, never a whole segment. A file with a
/// foreign header or version counts as one corrupt record; a record whose
/// checksum or body is bad is skipped and counted; a record the file ends
/// inside (or whose length cannot be) ends the segment, counted.
pub(crate) struct Reader<R> {
    src: R,
    /// Records skipped so far.
    pub(crate) corrupt: u64,
    /// A read that failed (the segment ends there).
    pub(crate) error: Option<std::io::Error>,
    done: bool,
}

impl<R: std::io::Read> Reader<R> {
    /// Reads and checks the header of `src`.
    pub(crate) fn new(src: R) -> Reader<R> {
        let mut r = Reader {
            src,
            corrupt: 0,
            error: None,
            done: false,
        };
        let mut h = [0u8; HEADER];
        let n = r.fill(&mut h);
        if n < HEADER || &h[..8] != MAGIC || h[8..12] != VERSION.to_le_bytes() {
            r.corrupt += u64::from(n > 0 && r.error.is_none());
            r.done = true;
        }
        r
    }

    /// The next sound record, or None at the segment's end.
    pub(crate) fn next_entry(&mut self) -> Option<Entry> {
        use std::io::Read;
        while !self.done {
            let mut frame = [0u8; FRAME];
            let n = self.fill(&mut frame);
            if n < FRAME {
                self.corrupt += u64::from(n > 0 && self.error.is_none());
                self.done = true;
                break;
            }
            let len = u32::from_le_bytes([frame[0], frame[1], frame[2], frame[3]]) as usize;
            let crc = u32::from_le_bytes([frame[4], frame[5], frame[6], frame[7]]);
            // Read through `take`, so a damaged length allocates no more
            // than the file holds.
            let mut body = Vec::new();
            let read = (&mut self.src)
                .take(len.min(MAX_BODY + 1) as u64)
                .read_to_end(&mut body);
            if let Err(e) = read {
                self.error = Some(e);
                self.done = true;
                break;
            }
            if len > MAX_BODY || body.len() < len {
                // Torn at the end, or a length that cannot be: nothing
                // after it can be framed.
                self.corrupt += 1;
                self.done = true;
                break;
            }
            if crc32c(&body) != crc {
                self.corrupt += 1;
                continue;
            }
            match body_entry(Bytes::from(body)) {
                Some(e) => return Some(e),
                None => self.corrupt += 1,
            }
        }
        None
    }

    /// Reads until `buf` is full or the source ends; returns the bytes read.
    fn fill(&mut self, buf: &mut [u8]) -> usize {
        let mut n = 0;
        while n < buf.len() {
            match self.src.read(&mut buf[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.error = Some(e);
                    break;
                }
            }
        }
        n
    }
}

/// The entry in a record's body; its request is a slice of `b`, not a copy.
fn body_entry(b: Bytes) -> Option<Entry> {
    let signal = Signal::from_bits(u32::from(*b.first()?))?;
    let key_len = u16::from_le_bytes([*b.get(1)?, *b.get(2)?]) as usize;
    let key = std::str::from_utf8(b.get(3..3 + key_len)?).ok()?.to_owned();
    let at = 3 + key_len;
    let items = u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?);
    Some(Entry {
        signal,
        key,
        items,
        request: b.slice(at + 4..),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(i: u8) -> Entry {
        Entry {
            signal: Signal::Logs,
            key: "127.0.0.1:4317/v1/logs".into(),
            items: 10 + i as u32,
            request: vec![i; 100 + i as usize].into(),
        }
    }

    /// Every sound entry of `data`, and the count of corrupt ones.
    fn decode(data: &[u8]) -> (Vec<Entry>, u64) {
        let mut r = Reader::new(data);
        let entries = std::iter::from_fn(|| r.next_entry()).collect();
        (entries, r.corrupt)
    }

    #[test]
    fn records_round_trip_and_damage_is_counted_not_fatal() {
        let mut seg = header().to_vec();
        for i in 0..3 {
            encode(&entry(i), &mut seg);
        }
        let (entries, corrupt) = decode(&seg);
        assert_eq!((entries.len(), corrupt), (3, 0));
        assert_eq!(entries[2], entry(2));
        // A flipped byte in the second record's request: it alone is lost.
        let mut flipped = seg.clone();
        let second = HEADER + FRAME + (1 + 2 + 22 + 4 + 100) + FRAME + 40;
        flipped[second] ^= 0xFF;
        let (entries, corrupt) = decode(&flipped);
        assert_eq!((entries.len(), corrupt), (2, 1));
        assert_eq!(entries[1], entry(2));
        // Torn inside the last record: the first two survive.
        let (entries, corrupt) = decode(&seg[..seg.len() - 30]);
        assert_eq!((entries.len(), corrupt), (2, 1));
        // A length far past the file's end allocates no more than is there.
        let mut huge = seg.clone();
        huge[HEADER..HEADER + 4].copy_from_slice(&(200u32 << 20).to_le_bytes());
        assert_eq!(decode(&huge), (vec![], 1));
        // Not a segment at all.
        assert_eq!(decode(b"hello, world, not a spool").1, 1);
        assert_eq!(decode(b""), (vec![], 0));
    }
}
