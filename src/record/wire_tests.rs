//! Tests of the wire writer: every fast path writes what the general
//! writes make, and scratch space never panics.

use super::*;

#[test]
fn nested_messages_get_their_length_after_their_body() {
    for body in [0usize, 1, 127, 128, 300, 16_383, 16_384, 70_000] {
        let want = {
            let mut out = Vec::new();
            put_len_header(&mut out, 3, body);
            out.extend((0..body).map(|i| i as u8));
            out.push(0xEE);
            out
        };
        let mut buf = vec![0; want.len()];
        let mut w = Writer::new(&mut buf);
        let start = w.begin_message(3);
        for i in 0..body {
            w.raw(&[i as u8]);
        }
        w.end_message(start);
        w.raw(&[0xEE]);
        assert!(w.is_full());
        assert_eq!(buf, want, "body of {body}");
    }
}

/// Writes a message with a nested body of `body` bytes, a varint and a
/// fixed field through `w`.
fn write_sample(w: &mut Writer<'_>, body: usize) {
    w.key(1, VARINT);
    w.varint(300);
    let start = w.begin_message(3);
    for i in 0..body {
        w.raw(&[i as u8]);
    }
    w.end_message(start);
    w.fixed64_field(2, 7);
    w.fixed32_field(16, 0x101);
    w.fixed64_field(3000, 9);
    w.nested_bytes_field(5, 1, b"value");
    assert!(w.short_string_pair(9, b"key", b"val"));
    assert!(w.short_varint_pair(9, b"key", 3, 300));
    w.bytes_field(4, b"tail");
}

#[test]
fn short_pairs_and_nested_bytes_are_what_the_general_writes_make() {
    let long = [b'x'; 130];
    for (key, value) in [
        (&b"k"[..], &b""[..]),
        (b"", b"no key"),
        (b"http.request.method", b"GET"),
        (b"url.path", &long[..120]),
        (b"url.path", &long[..]),
    ] {
        // The general form: begin, fields, end.
        let mut want = vec![0; 512];
        let n = write_into(&mut want, true, |w| {
            let kv = w.begin_message(9);
            w.bytes_field(1, key);
            let v = w.begin_message(2);
            w.bytes_field(1, value);
            w.end_message(v);
            w.end_message(kv);
        })
        .unwrap();
        let mut got = vec![0; 512];
        let m = write_into(&mut got, true, |w| {
            if !w.short_string_pair(9, key, value) {
                let kv = w.begin_message(9);
                w.bytes_field(1, key);
                w.nested_bytes_field(2, 1, value);
                w.end_message(kv);
            }
        })
        .unwrap();
        assert_eq!(
            got[..m],
            want[..n],
            "{} and {} bytes",
            key.len(),
            value.len()
        );
        let short = !key.is_empty() && 2 + key.len() + 4 + value.len() < 0x80;
        let mut probe = vec![0; 512];
        assert_eq!(
            write_into(&mut probe, true, |w| assert_eq!(
                w.short_string_pair(9, key, value),
                short
            )),
            Some(if short { n } else { 0 })
        );
    }
}

#[test]
fn short_varint_pairs_are_what_the_general_writes_make() {
    let long = [b'k'; 130];
    for key in [&b"app.item_id"[..], b"", b"k", &long[..100], &long[..]] {
        for v in [0u64, 1, 127, 128, 300, 1 << 40, u64::MAX] {
            let mut want = vec![0; 512];
            let n = write_into(&mut want, true, |w| {
                let kv = w.begin_message(9);
                w.bytes_field(1, key);
                let value = w.begin_message(2);
                w.varint_field(3, v);
                w.end_message(value);
                w.end_message(kv);
            })
            .unwrap();
            let mut got = vec![0; 512];
            let wrote = write_into(&mut got, true, |w| {
                assert_eq!(
                    w.short_varint_pair(9, key, 3, v),
                    !key.is_empty() && n < 0x80 + 2,
                    "{} key bytes, {v}",
                    key.len()
                )
            })
            .unwrap();
            if wrote > 0 {
                assert_eq!(got[..wrote], want[..n], "{} key bytes, {v}", key.len());
            }
        }
    }
}

#[test]
fn scratch_space_reports_what_fits_and_never_panics() {
    for body in [0usize, 5, 127, 128, 300] {
        let mut exact = vec![0; 4096];
        let n = write_into(&mut exact, true, |w| write_sample(w, body)).unwrap();
        let mut sized = vec![0; n];
        assert_eq!(
            write_into(&mut sized, false, |w| write_sample(w, body)),
            Some(n)
        );
        assert_eq!(sized, exact[..n], "body of {body}");
        // Every shorter scratch space: `None`, and no panic, whichever
        // write (a byte, a copy, a nested length moved up) ran out.
        for short in 0..n {
            let mut scratch = vec![0; short];
            assert_eq!(
                write_into(&mut scratch, true, |w| write_sample(w, body)),
                None,
                "{short} of {n}"
            );
        }
    }
}

#[test]
#[should_panic(expected = "size pass and the encoder disagree")]
fn an_exactly_sized_buffer_that_is_too_small_is_a_bug() {
    let mut buf = vec![0; 3];
    write_into(&mut buf, false, |w| write_sample(w, 10));
}

#[test]
fn fixed_fields_carry_keys_of_every_length() {
    for field in [1u32, 15, 16, 2047, 2048, 1 << 20] {
        let mut want = Vec::new();
        put_varint(&mut want, ((field << 3) | FIXED32) as u64);
        want.extend_from_slice(&0x0102_0304u32.to_le_bytes());
        put_varint(&mut want, ((field << 3) | FIXED64) as u64);
        want.extend_from_slice(&7u64.to_le_bytes());
        let mut buf = vec![0; want.len()];
        let mut w = Writer::new(&mut buf);
        w.fixed32_field(field, 0x0102_0304);
        w.fixed64_field(field, 7);
        assert!(w.is_full());
        assert_eq!(buf, want, "field {field}");
    }
}

#[test]
fn varint_lengths_match_the_encoding() {
    // Both sides of every byte boundary, and of every other bit width.
    let edges = (0..64).flat_map(|b| [1u64 << b, (1u64 << b) - 1, (1u64 << b) + 1]);
    for v in edges.chain([u32::MAX as u64, u64::MAX]) {
        let mut out = Vec::new();
        put_varint(&mut out, v);
        assert_eq!(out.len(), varint_len(v), "v = {v}");
        let mut buf = vec![0; out.len()];
        let mut w = Writer::new(&mut buf);
        w.varint(v);
        assert_eq!(buf, out);
    }
}

#[test]
fn an_id_field_is_the_bytes_field_of_the_id() {
    let trace: [u8; 16] = std::array::from_fn(|i| i as u8 + 1);
    let span: [u8; 8] = std::array::from_fn(|i| 0xF0 | i as u8);
    let mut ours = [0u8; 28];
    let mut theirs = [0u8; 28];
    let mut w = Writer::new(&mut ours);
    w.id_field(1, &trace);
    w.id_field(2, &span);
    let mut v = Writer::new(&mut theirs);
    v.bytes_field(1, &trace);
    v.bytes_field(2, &span);
    assert!(w.is_full() && v.is_full());
    assert_eq!(ours, theirs);
}
