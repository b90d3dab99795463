//! The C ABI of otlpflow: glue only, no engine logic (that lives in the
//! `otlpflow` crate). Conventions, after rustls-ffi:
//!
//! - every symbol is `otlpflow_<type>_<verb>` and takes its type first;
//! - handles are opaque, checked ids (`ptr/handle.rs`), made by
//!   `_new`/`_start`, released by one NULL-tolerant `_free`; a stale handle
//!   or one of another type is refused with `OTLPFLOW_RESULT_INVALID_HANDLE`;
//! - fallible functions return an `otlpflow_result` and write outputs only
//!   on success; strings are pointer + length, checked as UTF-8; enums are
//!   `uint32_t` values decoded in `enums.rs`;
//! - every export runs inside [`ffi_boundary!`], so a panic becomes
//!   `OTLPFLOW_RESULT_PANIC` and never unwinds into C;
//! - all raw-pointer conversions and copies live in `ptr.rs`.
//!
//! Files: `config` (the config handle and setters), `pipeline` (start,
//! record spans, flush, shutdown), `signals` (logs, metric points,
//! instruments), `span` (the span struct's conversion), `stats` (the
//! versioned counters struct), `fork`, `enums`, `ptr`.

#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![deny(clippy::undocumented_unsafe_blocks, clippy::missing_safety_doc)]
// C names: `otlpflow_<type>`, as the header spells them.
#![allow(non_camel_case_types)]
// These functions are called from C, where every pointer argument is a raw
// pointer; marking them `unsafe` would change nothing for C callers. Each
// states its pointer contract in its doc, and `ptr.rs` checks what can be
// checked (NULL, alignment, lengths, UTF-8). rustls-ffi does the same.
#![allow(clippy::not_unsafe_ptr_arg_deref)]

use std::os::raw::c_char;

mod config;
mod endpoints;
mod enums;
mod fork;
mod marshal;
mod pipeline;
mod ptr;
mod pyobjects;
mod pyspans;
mod receipt;
mod resource;
mod signals;
mod span;
mod stats;
mod template;

pub use config::*;
pub use endpoints::*;
pub use enums::*;
pub use fork::*;
pub use pipeline::*;
pub use ptr::otlpflow_str;
pub use pyobjects::{
    otlpflow_pipeline_record_staged_spans, otlpflow_python_api, otlpflow_python_stage_spans,
};
pub use pyspans::otlpflow_pipeline_record_marshalled_spans;
pub use resource::*;
pub use signals::*;
pub use span::*;
pub use stats::*;
pub use template::*;

/// Short name for the result codes inside this crate.
pub(crate) use otlpflow_result as R;

/// `OK`, or the error code.
pub(crate) fn result_of(r: Result<(), otlpflow_result>) -> otlpflow_result {
    match r {
        Ok(()) => otlpflow_result::Ok,
        Err(e) => e,
    }
}

/// Result codes of fallible functions. Numbers are stable and never reused.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum otlpflow_result {
    /// Success.
    Ok = 0,
    /// A required pointer argument was NULL.
    NullArgument = 1,
    /// A string argument was not valid UTF-8.
    InvalidUtf8 = 2,
    /// An output buffer was too small; nothing was written.
    BufferTooSmall = 3,
    /// A configuration value was invalid.
    InvalidConfig = 4,
    /// The ring was full and the record was dropped (and counted).
    Full = 5,
    /// The record is larger than a ring record may be.
    TooLarge = 6,
    /// The pipeline has been shut down.
    Shutdown = 7,
    /// A deadline passed first.
    Timeout = 8,
    /// An argument was out of range (an unknown enum value, say).
    InvalidArgument = 9,
    /// More attributes, events, links or array elements than allowed.
    TooManyAttributes = 10,
    /// The scope does not belong to this pipeline.
    InvalidScope = 11,
    /// Over the ingest rate limit: the record was dropped (and counted).
    RateLimited = 12,
    /// Over the memory budget, or the system's memory use over
    /// `system_memory_limit`: the record was dropped (and counted by which).
    Memory = 13,
    /// Not a live handle of the expected type: already freed, a handle of
    /// another type, or a number that was never a handle. Nothing was done.
    InvalidHandle = 14,
    /// otlpflow failed inside (a thread or runtime could not be started,
    /// say); the message says what. Distinct from a panic.
    Internal = 15,
    /// otlpflow panicked; the call had no effect.
    Panic = 100,
}

impl otlpflow_result {
    fn message(self) -> &'static str {
        match self {
            otlpflow_result::Ok => "success\0",
            otlpflow_result::NullArgument => "a required pointer argument was NULL\0",
            otlpflow_result::InvalidUtf8 => "a string argument was not valid UTF-8\0",
            otlpflow_result::BufferTooSmall => "the output buffer is too small\0",
            otlpflow_result::InvalidConfig => "a configuration value is invalid\0",
            otlpflow_result::Full => "the ring was full: record dropped\0",
            otlpflow_result::TooLarge => "the record is larger than the ring's maximum\0",
            otlpflow_result::Shutdown => "the pipeline has been shut down\0",
            otlpflow_result::Timeout => "the deadline passed first\0",
            otlpflow_result::InvalidArgument => "an argument is out of range\0",
            otlpflow_result::TooManyAttributes => {
                "too many attributes, events, links or array elements\0"
            }
            otlpflow_result::InvalidScope => "the scope does not belong to this pipeline\0",
            otlpflow_result::RateLimited => "over the ingest rate limit: record dropped\0",
            otlpflow_result::Memory => {
                "over the memory budget or the system memory limit: record dropped\0"
            }
            otlpflow_result::InvalidHandle => {
                "not a live handle of this type (freed, another type, or never a handle)\0"
            }
            otlpflow_result::Internal => "otlpflow failed internally; see the error message\0",
            otlpflow_result::Panic => "otlpflow panicked; the call had no effect\0",
        }
    }

    fn from_u32(code: u32) -> Option<otlpflow_result> {
        use otlpflow_result::*;
        [
            Ok,
            NullArgument,
            InvalidUtf8,
            BufferTooSmall,
            InvalidConfig,
            Full,
            TooLarge,
            Shutdown,
            Timeout,
            InvalidArgument,
            TooManyAttributes,
            InvalidScope,
            RateLimited,
            Memory,
            InvalidHandle,
            Internal,
            Panic,
        ]
        .into_iter()
        .find(|r| *r as u32 == code)
    }
}

/// Runs an export's body, turning a panic into `$on_panic` so that no
/// unwinding ever crosses into C.
#[macro_export]
#[doc(hidden)]
macro_rules! ffi_boundary {
    ($on_panic:expr, $body:block) => {
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| $body)) {
            Ok(v) => v,
            Err(_) => $on_panic,
        }
    };
}

/// The library version as a NUL-terminated string with static lifetime
/// ("0.1.0"). Never NULL; the caller must not free it.
#[no_mangle]
pub extern "C" fn otlpflow_version() -> *const c_char {
    ffi_boundary!(c"?".as_ptr(), {
        static VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), "\0");
        VERSION.as_ptr().cast()
    })
}

/// A static, NUL-terminated English description of a result code (any
/// number: unknown codes get "unknown result code"). Never NULL; the caller
/// must not free it.
#[no_mangle]
pub extern "C" fn otlpflow_result_message(result: u32) -> *const c_char {
    ffi_boundary!(c"?".as_ptr(), {
        match otlpflow_result::from_u32(result) {
            Some(r) => r.message().as_ptr().cast(),
            None => c"unknown result code".as_ptr(),
        }
    })
}

#[cfg(test)]
#[allow(clippy::panic)]
mod tests {
    use super::*;
    use std::ffi::CStr;

    #[test]
    fn messages_are_static_c_strings() {
        for code in 0..=200u32 {
            // SAFETY: the function returns a static NUL-terminated string.
            let s = unsafe { CStr::from_ptr(otlpflow_result_message(code)) };
            let s = s.to_str().unwrap_or("");
            assert!(!s.is_empty());
            if otlpflow_result::from_u32(code).is_none() {
                assert_eq!(s, "unknown result code");
            }
        }
        // SAFETY: as above.
        let v = unsafe { CStr::from_ptr(otlpflow_version()) };
        assert_eq!(v.to_str().ok(), Some(otlpflow::VERSION));
    }

    #[test]
    fn header_matches_the_code() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let config = cbindgen::Config::from_file(root.join("cbindgen.toml")).unwrap_or_default();
        let mut generated = Vec::new();
        cbindgen::Builder::new()
            .with_crate(root)
            .with_config(config)
            .generate()
            .map(|b| b.write(&mut generated))
            .unwrap_or_else(|e| panic!("cbindgen: {e}"));
        let checked_in = std::fs::read(root.join("../include/otlpflow.h")).unwrap_or_default();
        if generated != checked_in {
            if std::env::var_os("OTLPFLOW_BLESS").is_some() {
                let _ = std::fs::write(root.join("../include/otlpflow.h"), &generated);
            }
            panic!(
                "include/otlpflow.h is out of date: run `OTLPFLOW_BLESS=1 cargo test -p otlpflow-ffi` \
                 or cbindgen (see ffi/cbindgen.toml)"
            );
        }
    }

    #[test]
    fn version_macros_match_cargo() {
        let header = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../include/otlpflow.h"),
        )
        .unwrap_or_default();
        let want = format!("#define OTLPFLOW_VERSION \"{}\"", env!("CARGO_PKG_VERSION"));
        assert!(header.contains(&want), "header lacks {want}");
        for (name, part) in ["MAJOR", "MINOR", "PATCH"]
            .iter()
            .zip(env!("CARGO_PKG_VERSION").split('.'))
        {
            assert!(header.contains(&format!("#define OTLPFLOW_VERSION_{name} {part}")));
        }
    }
}
