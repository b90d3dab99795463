//! The one pipeline a C ABI fuzz target records into for its whole run,
//! exporting nowhere: records fill its small ring and are refused (counted)
//! once it is full. Included by the targets with `#[path]`.

use std::sync::OnceLock;

use otlpflow_ffi::*;

pub struct Handle(pub *mut otlpflow_pipeline, pub otlpflow_scope);
// SAFETY: the pipeline handle may be used from any thread.
unsafe impl Send for Handle {}
// SAFETY: as above.
unsafe impl Sync for Handle {}

pub fn pipeline() -> &'static Handle {
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
