//! The Python fast path's entry point fed arbitrary bytes as if they were
//! `marshal.dumps(spans, 4)`: truncated objects, lengths past the end,
//! back-references forward or to containers being read, deep nesting,
//! integers of any width, strings that are not UTF-8, tuples of the wrong
//! shape. The seeds are real batches written by CPython. Properties: no
//! panic across the boundary, no crash, no unbounded allocation, and the
//! accepted and refused counts add up to at most the bytes given (every
//! span takes at least one byte).
#![no_main]

use libfuzzer_sys::fuzz_target;
use otlpflow_ffi::*;

#[path = "shared/pipeline.rs"]
mod shared;
use shared::pipeline;

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
