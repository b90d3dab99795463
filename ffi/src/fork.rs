//! Fork hooks for C hosts that fork (prefork servers). otlpflow registers
//! them with `pthread_atfork` itself; these let a host call them by hand.

use crate::ffi_boundary;

/// Call just before `fork()`. otlpflow registers these three hooks with
/// `pthread_atfork` itself when the first pipeline starts, so most programs
/// never call them; calling them as well is harmless.
#[no_mangle]
pub extern "C" fn otlpflow_fork_prepare() {
    ffi_boundary!((), { otlpflow::fork::prepare() })
}

/// Call in the parent just after `fork()`.
#[no_mangle]
pub extern "C" fn otlpflow_fork_parent() {
    ffi_boundary!((), { otlpflow::fork::parent() })
}

/// Call in the child just after `fork()`: the child drops what the parent
/// had buffered (counted as `failed_fork`) and restarts its workers on its
/// next call. Async-signal-safe.
#[no_mangle]
pub extern "C" fn otlpflow_fork_child() {
    ffi_boundary!((), { otlpflow::fork::child() })
}
