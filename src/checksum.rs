//! CRC-32 checksums, table-driven, for two polynomials: IEEE 802.3 (the
//! Collector's hash ring, `route`) and Castagnoli (CRC-32C, the spool's
//! records). Both reflected, with the usual all-ones start and final xor.

/// CRC-32 (IEEE 802.3): Go's `crc32.ChecksumIEEE`.
pub(crate) fn crc32_ieee(data: &[u8]) -> u32 {
    const IEEE: [u32; 256] = table(0xEDB8_8320);
    checksum(&IEEE, data)
}

/// CRC-32C (Castagnoli).
pub(crate) fn crc32c(data: &[u8]) -> u32 {
    const CASTAGNOLI: [u32; 256] = table(0x82F6_3B78);
    checksum(&CASTAGNOLI, data)
}

/// The byte table of the reflected polynomial `poly`.
const fn table(poly: u32) -> [u32; 256] {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 { poly ^ (c >> 1) } else { c >> 1 };
            k += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
}

fn checksum(table: &[u32; 256], data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc = table[((crc ^ b as u32) & 0xFF) as usize] ^ (crc >> 8);
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_standard_check_values() {
        assert_eq!(crc32_ieee(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!((crc32_ieee(b""), crc32c(b"")), (0, 0));
    }
}
