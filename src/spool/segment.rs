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

/// What reading a segment found.
#[derive(Debug, Default)]
pub(crate) struct Read {
    pub(crate) entries: Vec<Entry>,
    /// Records skipped: a bad checksum, a bad body, a torn end.
    pub(crate) corrupt: u64,
}

/// Reads a whole segment; the requests are slices of `data`, not copies.
/// A file with a foreign header is all corrupt.
pub(crate) fn decode(data: &Bytes) -> Read {
    let mut r = Read::default();
    if data.len() < HEADER || &data[..8] != MAGIC {
        r.corrupt += u64::from(!data.is_empty());
        return r;
    }
    let version = u32::from_le_bytes([data[8], data[9], data[10], data[11]]);
    if version != VERSION {
        r.corrupt += 1;
        return r;
    }
    let mut at = HEADER;
    while at < data.len() {
        let Some(frame) = data.get(at..at + FRAME) else {
            r.corrupt += 1;
            break;
        };
        let len = u32::from_le_bytes([frame[0], frame[1], frame[2], frame[3]]) as usize;
        let crc = u32::from_le_bytes([frame[4], frame[5], frame[6], frame[7]]);
        let body_at = at + FRAME;
        let Some(body) = data.get(body_at..body_at + len).filter(|_| len <= MAX_BODY) else {
            // Torn at the end (or a length that cannot be): nothing after it
            // can be framed.
            r.corrupt += 1;
            break;
        };
        at += FRAME + len;
        match (crc32c(body) == crc)
            .then(|| body_entry(data, body_at, len))
            .flatten()
        {
            Some(e) => r.entries.push(e),
            None => r.corrupt += 1,
        }
    }
    r
}

/// The entry in the body at `data[at..at + len]`.
fn body_entry(data: &Bytes, at: usize, len: usize) -> Option<Entry> {
    let b = &data[at..at + len];
    let signal = Signal::from_bits(u32::from(*b.first()?))?;
    let key_len = u16::from_le_bytes([*b.get(1)?, *b.get(2)?]) as usize;
    let key = std::str::from_utf8(b.get(3..3 + key_len)?).ok()?;
    let items_at = 3 + key_len;
    let items = u32::from_le_bytes(b.get(items_at..items_at + 4)?.try_into().ok()?);
    Some(Entry {
        signal,
        key: key.to_owned(),
        items,
        request: data.slice(at + items_at + 4..at + len),
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

    #[test]
    fn records_round_trip_and_damage_is_counted_not_fatal() {
        let mut seg = header().to_vec();
        for i in 0..3 {
            encode(&entry(i), &mut seg);
        }
        let seg = Bytes::from(seg);
        let r = decode(&seg);
        assert_eq!((r.entries.len(), r.corrupt), (3, 0));
        assert_eq!(r.entries[2], entry(2));
        // A flipped byte in the second record's request: it alone is lost.
        let mut flipped = seg.to_vec();
        let second = HEADER + FRAME + (1 + 2 + 22 + 4 + 100) + FRAME + 40;
        flipped[second] ^= 0xFF;
        let r = decode(&flipped.into());
        assert_eq!((r.entries.len(), r.corrupt), (2, 1));
        assert_eq!(r.entries[1], entry(2));
        // Torn inside the last record: the first two survive.
        let r = decode(&seg.slice(..seg.len() - 30));
        assert_eq!((r.entries.len(), r.corrupt), (2, 1));
        // Not a segment at all.
        assert_eq!(
            decode(&Bytes::from_static(b"hello, world, not a spool")).corrupt,
            1
        );
        assert_eq!(decode(&Bytes::new()).corrupt, 0);
    }
}
