//! CRC-32 checksums for two polynomials: IEEE 802.3 (the Collector's hash
//! ring, `route`) and Castagnoli (CRC-32C, the spool's records). Both
//! reflected, with the usual all-ones start and final xor. Eight bytes at a
//! time through eight tables ("slicing by 8"); CRC-32C uses the CPU's
//! `crc32` instruction where it has one (x86-64 with SSE4.2), since the
//! spool checks every byte it writes and replays.

/// CRC-32 (IEEE 802.3): Go's `crc32.ChecksumIEEE`.
pub(crate) fn crc32_ieee(data: &[u8]) -> u32 {
    const IEEE: [[u32; 256]; 8] = tables(0xEDB8_8320);
    !update(&IEEE, !0, data)
}

/// CRC-32C (Castagnoli).
pub(crate) fn crc32c(data: &[u8]) -> u32 {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("sse4.2") {
        // SAFETY: the CPU has SSE4.2, checked just above.
        return !unsafe { crc32c_sse42(!0, data) };
    }
    !update(&CASTAGNOLI, !0, data)
}

const CASTAGNOLI: [[u32; 256]; 8] = tables(0x82F6_3B78);

/// Table `k` maps a byte to its CRC followed by `k` zero bytes.
const fn tables(poly: u32) -> [[u32; 256]; 8] {
    let mut t = [[0u32; 256]; 8];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 { poly ^ (c >> 1) } else { c >> 1 };
            k += 1;
        }
        t[0][i] = c;
        i += 1;
    }
    let mut k = 1;
    while k < 8 {
        let mut i = 0;
        while i < 256 {
            let prev = t[k - 1][i];
            t[k][i] = (prev >> 8) ^ t[0][(prev & 0xFF) as usize];
            i += 1;
        }
        k += 1;
    }
    t
}

/// The register after `data`, starting from `crc` (no final xor).
fn update(t: &[[u32; 256]; 8], mut crc: u32, data: &[u8]) -> u32 {
    let mut words = data.chunks_exact(8);
    for w in &mut words {
        let lo = crc ^ u32::from_le_bytes([w[0], w[1], w[2], w[3]]);
        crc = t[7][(lo & 0xFF) as usize]
            ^ t[6][((lo >> 8) & 0xFF) as usize]
            ^ t[5][((lo >> 16) & 0xFF) as usize]
            ^ t[4][(lo >> 24) as usize]
            ^ t[3][w[4] as usize]
            ^ t[2][w[5] as usize]
            ^ t[1][w[6] as usize]
            ^ t[0][w[7] as usize];
    }
    for &b in words.remainder() {
        crc = t[0][((crc ^ b as u32) & 0xFF) as usize] ^ (crc >> 8);
    }
    crc
}

/// `update` for CRC-32C with the SSE4.2 `crc32` instruction.
///
/// # Safety
/// The CPU must support SSE4.2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse4.2")]
unsafe fn crc32c_sse42(crc: u32, data: &[u8]) -> u32 {
    use std::arch::x86_64::{_mm_crc32_u64, _mm_crc32_u8};
    let mut c = u64::from(crc);
    let mut words = data.chunks_exact(8);
    for w in &mut words {
        let v = u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]);
        c = _mm_crc32_u64(c, v);
    }
    let mut c = c as u32;
    for &b in words.remainder() {
        c = _mm_crc32_u8(c, b);
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One bit at a time, straight from the definition.
    fn bitwise(poly: u32, data: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &b in data {
            crc ^= b as u32;
            for _ in 0..8 {
                crc = if crc & 1 != 0 {
                    poly ^ (crc >> 1)
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }

    #[test]
    fn the_standard_check_values() {
        assert_eq!(crc32_ieee(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!((crc32_ieee(b""), crc32c(b"")), (0, 0));
    }

    #[test]
    fn every_path_agrees_with_the_definition_at_every_length() {
        let data: Vec<u8> = (0..300u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        for n in 0..data.len() {
            let d = &data[..n];
            assert_eq!(crc32_ieee(d), bitwise(0xEDB8_8320, d), "ieee {n}");
            assert_eq!(crc32c(d), bitwise(0x82F6_3B78, d), "crc32c {n}");
            assert_eq!(
                !update(&CASTAGNOLI, !0, d),
                bitwise(0x82F6_3B78, d),
                "table {n}"
            );
        }
    }
}
