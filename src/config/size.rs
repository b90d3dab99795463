//! Byte sizes as people write them: `4096`, `64K`, `8M`, `8MiB`, `8MB`,
//! `512KiB`, `1G`, `1.5GiB`, with or without a space, any case.

/// Parses a byte size. `K`, `M`, `G` and `T` (and `KiB`, `MiB`, `GiB`,
/// `TiB`) are powers of 1024, as memory sizes are usually meant; `KB`,
/// `MB`, `GB` and `TB` are powers of 1000, as the SI has them; `B` or no
/// unit is bytes. A fraction is allowed with a unit (`1.5G`) and rounds
/// down to whole bytes. `None` for anything else, a negative number, or a
/// size past `u64::MAX`.
pub fn parse_bytes(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, unit) = (&s[..split], s[split..].trim());
    let multiplier: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "t" | "tib" => 1 << 40,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        _ => return None,
    };
    if number.is_empty() {
        return None;
    }
    if let Ok(whole) = number.parse::<u64>() {
        return whole.checked_mul(multiplier);
    }
    // A fraction: exact enough in f64 for any size that fits a u64 budget.
    let x: f64 = number.parse().ok()?;
    let bytes = x * multiplier as f64;
    (multiplier > 1 && bytes.is_finite() && bytes < u64::MAX as f64).then_some(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::parse_bytes;

    #[test]
    fn sizes_people_write() {
        let mib = 1u64 << 20;
        for (text, want) in [
            ("4096", Some(4096)),
            ("4096B", Some(4096)),
            ("64K", Some(64 << 10)),
            ("512KiB", Some(512 << 10)),
            ("512 kib", Some(512 << 10)),
            ("8M", Some(8 * mib)),
            ("8m", Some(8 * mib)),
            ("8MiB", Some(8 * mib)),
            ("8 MiB", Some(8 * mib)),
            ("8MB", Some(8_000_000)),
            ("1G", Some(1 << 30)),
            ("1GB", Some(1_000_000_000)),
            ("1.5GiB", Some(3 << 29)),
            ("2T", Some(2 << 40)),
            (" 16M ", Some(16 * mib)),
        ] {
            assert_eq!(parse_bytes(text), want, "{text}");
        }
        for bad in [
            "",
            "M",
            "8X",
            "8MBB",
            "-1M",
            "1.5",
            "1e3M",
            "99999999999999999999T",
            "17179869184G",
        ] {
            assert_eq!(parse_bytes(bad), None, "{bad}");
        }
    }
}
