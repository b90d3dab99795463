//! The Python fast path's entry point fed arbitrary bytes as if they were
//! `marshal.dumps(spans, 4)`: truncated objects, lengths past the end,
//! back-references forward or to containers being read, deep nesting,
//! integers of any width, strings that are not UTF-8, tuples of the wrong
//! shape. The seeds are real batches written by CPython. Properties: no
//! panic across the boundary, no crash, no unbounded allocation, and the
//! accepted and refused counts add up to at most the bytes given (every
//! span takes at least one byte).
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use otlpflow_ffi::*;

struct Handle(*mut otlpflow_pipeline, otlpflow_scope);
// SAFETY: the pipeline handle may be used from any thread.
unsafe impl Send for Handle {}
// SAFETY: as above.
unsafe impl Sync for Handle {}

/// One pipeline for the whole run, exporting nowhere: spans fill its small
/// ring and are refused (counted) once it is full.
fn pipeline() -> &'static Handle {
    static P: OnceLock<Handle> = OnceLock::new();
    P.get_or_init(|| {
        let s = |t: &'static str| otlpflow_str {
            ptr: t.as_ptr().cast(),
            len: t.len(),
        };
        let mut cfg = std::ptr::null_mut();
        assert_eq!(otlpflow_config_new(&mut cfg), otlpflow_result::Ok);
        for (k, v) in [
            ("endpoint", "http://127.0.0.1:9"),
            ("ring_bytes", "64K"),
            ("shards", "1"),
            ("workers", "1"),
        ] {
            assert_eq!(otlpflow_config_set(cfg, s(k), s(v)), otlpflow_result::Ok);
        }
        let mut p = std::ptr::null_mut();
        assert_eq!(otlpflow_pipeline_start(cfg, &mut p), otlpflow_result::Ok);
        let _ = otlpflow_config_free(cfg);
        let mut scope = otlpflow_scope { id: 0, pipeline: 0 };
        assert_eq!(
            otlpflow_pipeline_scope(p, s("fuzz"), s("1"), &mut scope),
            otlpflow_result::Ok
        );
        Handle(p, scope)
    })
}

fuzz_target!(|data: &[u8]| {
    let h = pipeline();
    let (mut accepted, mut refused) = (usize::MAX, usize::MAX);
    let r = otlpflow_pipeline_record_marshalled_spans(
        h.0,
        &h.1,
        data.as_ptr(),
        data.len(),
        &mut accepted,
        &mut refused,
    );
    match r {
        otlpflow_result::Ok => assert!(accepted + refused <= data.len()),
        otlpflow_result::InvalidArgument | otlpflow_result::NullArgument => {}
        other => panic!("unexpected result {other:?}"),
    }
});
