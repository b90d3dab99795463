//! Compression of request bodies: zstd (a context reused for every batch of a
//! worker) and gzip. The input is the request as a list of chunks (one when
//! the batch had one scope, else the head and one chunk per scope).

use std::io::Write;

use zstd::zstd_safe::{self, CCtx, CParameter, InBuffer, OutBuffer};

use crate::config::Compression;

/// One worker's compressor. Not shared: each worker owns its contexts.
pub struct Compressor {
    kind: Compression,
    level: i32,
    zstd: Option<CCtx<'static>>,
    /// A request of several chunks joined for zstd (reused; as large as
    /// the largest such request, which `max_request_bytes` bounds).
    joined: Vec<u8>,
}

impl Compressor {
    /// A compressor for `kind` at `level` (ignored for `None`).
    pub fn new(kind: Compression, level: i32) -> Compressor {
        let zstd = (kind == Compression::Zstd).then(|| {
            let mut cctx = CCtx::create();
            // The level was validated by the builder; a failure here leaves
            // zstd's default level, which still produces a valid stream.
            let _ = cctx.set_parameter(CParameter::CompressionLevel(level));
            cctx
        });
        Compressor {
            kind,
            level,
            zstd,
            joined: Vec::new(),
        }
    }

    /// The configured algorithm.
    pub fn kind(&self) -> Compression {
        self.kind
    }

    /// Compresses the concatenation of `chunks` (`total` bytes) and returns it
    /// after `reserve` zeroed bytes that the caller fills with framing. The
    /// buffer holds no more than its length: the memory budget charges an
    /// in-flight request its length.
    pub fn compress(
        &mut self,
        chunks: &[&[u8]],
        total: usize,
        reserve: usize,
    ) -> std::io::Result<Vec<u8>> {
        let mut out = self.compress_into(chunks, total, reserve)?;
        // Compressing took room for the worst case (zstd: about the raw
        // size), and the result is a fraction of it (a twentieth for the
        // benchmark span): a request waiting for its reply or its retry
        // would hold the rest unaccounted. Shrinking in place hands it back
        // to the allocator (gen with zstd to a receiver 500 ms away, 16 MB
        // budget: peak RSS 30.1-33.4 MB before, 22.3-22.9 after;
        // BENCHMARKS.md).
        out.shrink_to_fit();
        Ok(out)
    }

    fn compress_into(
        &mut self,
        chunks: &[&[u8]],
        total: usize,
        reserve: usize,
    ) -> std::io::Result<Vec<u8>> {
        match self.kind {
            Compression::None => {
                let mut out = Vec::with_capacity(reserve + total);
                out.resize(reserve, 0);
                for c in chunks {
                    out.extend_from_slice(c);
                }
                Ok(out)
            }
            Compression::Zstd => {
                let cctx = self
                    .zstd
                    .as_mut()
                    .ok_or_else(|| std::io::Error::other("no zstd context"))?;
                let bound = zstd_safe::compress_bound(total);
                let mut out = Vec::with_capacity(reserve + bound + 64);
                out.resize(reserve, 0);
                let zerr = |code: usize| {
                    std::io::Error::other(format!("zstd: {}", zstd_safe::get_error_name(code)))
                };
                // One call on the whole message with room for the worst
                // case: zstd then compresses straight from the input,
                // without copying it into its own window buffer first and
                // without the streaming bookkeeping (gen with zstd, 30
                // alternating rounds: the workers' CPU 0.165 s per million
                // spans against 0.193 streaming chunk by chunk; BENCHMARKS.md).
                // Several chunks are joined for it.
                let src: &[u8] = if chunks.len() == 1 {
                    chunks[0]
                } else {
                    self.joined.clear();
                    for c in chunks {
                        self.joined.extend_from_slice(c);
                    }
                    &self.joined
                };
                let mut input = InBuffer::around(src);
                loop {
                    reserve_more(&mut out);
                    let pos = out.len();
                    let mut output = OutBuffer::around_pos(&mut out, pos);
                    let left = cctx.compress_stream2(
                        &mut output,
                        &mut input,
                        zstd_safe::zstd_sys::ZSTD_EndDirective::ZSTD_e_end,
                    );
                    match left {
                        Ok(0) => break,
                        Ok(_) => {}
                        Err(code) => {
                            // The next request starts a new frame.
                            let _ = cctx.reset(zstd_safe::ResetDirective::SessionOnly);
                            return Err(zerr(code));
                        }
                    }
                }
                Ok(out)
            }
            Compression::Gzip => {
                let mut out = Vec::with_capacity(reserve + total / 3 + 64);
                out.resize(reserve, 0);
                let mut enc = flate2::write::GzEncoder::new(
                    out,
                    flate2::Compression::new(self.level.clamp(0, 9) as u32),
                );
                for c in chunks {
                    enc.write_all(c)?;
                }
                enc.finish()
            }
        }
    }
}

/// Makes sure `out` has room to grow.
fn reserve_more(out: &mut Vec<u8>) {
    if out.capacity() - out.len() < 4096 {
        out.reserve(out.capacity().max(64 * 1024));
    }
}

/// The error of a message past the limit: `ErrorKind::FileTooLarge`, so that
/// a receiver can tell it from a corrupt stream.
fn too_large() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::FileTooLarge,
        "decompressed message larger than the limit",
    )
}

/// Decompresses a body with the named encoding, refusing to produce more than
/// `limit` bytes (`ErrorKind::FileTooLarge`).
pub fn decompress(encoding: Compression, data: &[u8], limit: usize) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut out = Vec::new();
    let read = match encoding {
        Compression::None => {
            if data.len() > limit {
                return Err(too_large());
            }
            return Ok(data.to_vec());
        }
        Compression::Gzip => {
            // A gzip member ends with its size (modulo 2^32): room for it
            // at once, rather than doubling up to it.
            let declared = data
                .last_chunk::<4>()
                .filter(|_| data.len() >= GZIP_MIN)
                .map(|t| u32::from_le_bytes(*t) as usize);
            out.reserve_exact(first_capacity(declared, data.len(), limit));
            flate2::read::GzDecoder::new(data)
                .take(limit as u64 + 1)
                .read_to_end(&mut out)?
        }
        Compression::Zstd => return decompress_zstd(data, limit),
    };
    if read > limit {
        return Err(too_large());
    }
    Ok(out)
}

thread_local! {
    /// A zstd decompression context per thread: creating one costs more
    /// than decompressing a typical request.
    static DCTX: std::cell::RefCell<zstd_safe::DCtx<'static>> = std::cell::RefCell::new(zstd_safe::DCtx::create());
}

/// The smallest gzip member: a 10-byte header and an 8-byte trailer.
const GZIP_MIN: usize = 18;

/// The first capacity for decompressing `input` bytes: the size the data
/// declares (a zstd frame written in one call, as ours are, says it; a gzip
/// member ends with it), else eight times the input; never more than
/// `limit` nor than 32 times the input, so that a small request cannot make
/// a large allocation on a promise. Growing from eight times the input, a
/// request of the benchmark span (ratio about 20) was copied twice on the
/// way (BENCHMARKS.md).
fn first_capacity(declared: Option<usize>, input: usize, limit: usize) -> usize {
    declared
        .unwrap_or(input.saturating_mul(8))
        .min(input.saturating_mul(32))
        .min(limit)
        + 1024
}

/// The content size the zstd frame at the start of `data` declares.
fn zstd_declared(data: &[u8]) -> Option<usize> {
    match zstd_safe::get_frame_content_size(data) {
        Ok(Some(n)) => Some(usize::try_from(n).unwrap_or(usize::MAX)),
        _ => None,
    }
}

/// Decompresses one or more zstd frames with the thread's context.
fn decompress_zstd(data: &[u8], limit: usize) -> std::io::Result<Vec<u8>> {
    let zerr =
        |code: usize| std::io::Error::other(format!("zstd: {}", zstd_safe::get_error_name(code)));
    DCTX.with(|cell| {
        let mut dctx = cell.borrow_mut();
        // A previous error may have left a frame half-read.
        dctx.reset(zstd_safe::ResetDirective::SessionOnly)
            .map_err(zerr)?;
        let mut out: Vec<u8> =
            Vec::with_capacity(first_capacity(zstd_declared(data), data.len(), limit));
        let mut input = InBuffer::around(data);
        loop {
            if out.capacity() - out.len() < 16 * 1024 {
                out.reserve(out.capacity().max(64 * 1024));
            }
            let (before_in, before_out) = (input.pos, out.len());
            let pos = out.len();
            let hint = {
                let mut output = OutBuffer::around_pos(&mut out, pos);
                dctx.decompress_stream(&mut output, &mut input)
                    .map_err(zerr)?
            };
            if out.len() > limit {
                return Err(too_large());
            }
            let done_input = input.pos == data.len();
            if hint == 0 && done_input {
                return Ok(out);
            }
            if done_input && out.len() == before_out && input.pos == before_in {
                return Err(std::io::Error::other("zstd: truncated frame"));
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_each_algorithm() {
        let a: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let b = b"tail bytes".to_vec();
        for kind in [Compression::None, Compression::Gzip, Compression::Zstd] {
            let mut c = Compressor::new(kind, 1);
            for _ in 0..3 {
                let out = c.compress(&[&a, &b], a.len() + b.len(), 5).unwrap();
                assert_eq!(&out[..5], &[0; 5]);
                let back = decompress(kind, &out[5..], 1 << 20).unwrap();
                assert_eq!(back.len(), a.len() + b.len());
                assert_eq!(&back[..a.len()], &a[..]);
                assert_eq!(&back[a.len()..], &b[..]);
            }
        }
    }

    /// The benchmark span's kind of data, 150 KB of it: 300-byte records
    /// alike but for their first `changing` bytes (pseudo-random).
    fn records(changing: u32) -> Vec<u8> {
        let mut x = 1u32;
        (0..150_000u32)
            .map(|i| {
                if i % 300 < changing {
                    x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                    (x >> 24) as u8
                } else {
                    (i % 300) as u8
                }
            })
            .collect()
    }

    #[test]
    fn a_compressed_request_holds_no_more_than_its_length() {
        // zstd and gzip both take room for far more than they keep.
        let data = records(8);
        for kind in [Compression::None, Compression::Gzip, Compression::Zstd] {
            let mut c = Compressor::new(kind, 1);
            let out = c.compress(&[&data], data.len(), 5).unwrap();
            if kind != Compression::None {
                assert!(out.len() < data.len() / 4, "{kind:?}: {}", out.len());
            }
            assert_eq!(out.capacity(), out.len(), "{kind:?}");
        }
    }

    #[test]
    fn truncated_zstd_is_an_error_not_a_hang() {
        let data = vec![7u8; 100_000];
        let mut c = Compressor::new(Compression::Zstd, 1);
        let out = c.compress(&[&data], data.len(), 0).unwrap();
        for cut in [1, out.len() / 2, out.len() - 1] {
            assert!(
                decompress(Compression::Zstd, &out[..cut], 1 << 20).is_err(),
                "cut {cut}"
            );
        }
        // The context recovers for the next, valid frame.
        assert_eq!(decompress(Compression::Zstd, &out, 1 << 20).unwrap(), data);
        assert!(decompress(Compression::Zstd, b"not zstd at all", 1 << 20).is_err());
    }

    #[test]
    fn a_frame_is_decompressed_into_its_declared_size_but_a_claim_is_capped() {
        // Ratio above 8 (the old first guess), like the benchmark span's
        // requests: decompressed into one buffer of the declared size,
        // never grown.
        let data = records(16);
        let mut c = Compressor::new(Compression::Zstd, 1);
        let frame = c.compress(&[&data], data.len(), 0).unwrap();
        // Between the old guess and the cap.
        let ratio = data.len() / frame.len();
        assert!((9..32).contains(&ratio), "ratio {ratio}");
        let out = decompress(Compression::Zstd, &frame, 64 << 20).unwrap();
        assert_eq!(out, data);
        assert_eq!(out.capacity(), data.len() + 1024);
        // A frame of a megabyte of zeros declares a megabyte in a few
        // dozen bytes: the first allocation stays at 32 times the input.
        let zeros = vec![0u8; 1 << 20];
        let bomb = c.compress(&[&zeros], zeros.len(), 0).unwrap();
        assert!(bomb.len() * 32 < zeros.len());
        assert_eq!(
            first_capacity(zstd_declared(&bomb), bomb.len(), 64 << 20),
            bomb.len() * 32 + 1024
        );
        assert_eq!(
            decompress(Compression::Zstd, &bomb, 64 << 20).unwrap(),
            zeros
        );
        // Not a frame: eight times the input, as before.
        assert_eq!(zstd_declared(b"not zstd"), None);
        assert_eq!(first_capacity(None, 8, 64 << 20), 8 * 8 + 1024);
        // gzip says its size at its end: the same, without growing.
        let mut g = Compressor::new(Compression::Gzip, 1);
        let member = g.compress(&[&data], data.len(), 0).unwrap();
        let out = decompress(Compression::Gzip, &member, 64 << 20).unwrap();
        assert_eq!(out, data);
        assert_eq!(out.capacity(), data.len() + 1024);
        // A member whose trailer claims 4 GiB: the first allocation is 32
        // times its size, and the decoder refuses the wrong size.
        let mut liar = member.clone();
        let n = liar.len();
        liar[n - 4..].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(
            first_capacity(Some(u32::MAX as usize), n, 64 << 20),
            n * 32 + 1024
        );
        assert!(decompress(Compression::Gzip, &liar, 64 << 20).is_err());
    }

    #[test]
    fn decompression_is_bounded() {
        let big = vec![0u8; 1 << 20];
        let mut c = Compressor::new(Compression::Zstd, 1);
        let out = c.compress(&[&big], big.len(), 0).unwrap();
        assert!(decompress(Compression::Zstd, &out, 1000).is_err());
    }
}
