//! Handles: what C holds for a config, a pipeline or an instrument is an
//! opaque id, never an address. An id names a slot of a global table, the
//! handle's type, and the slot's generation when the handle was made; a
//! lookup checks all three. So a handle of the wrong type, a handle already
//! freed (even after its slot was reused by a newer handle), or a number
//! that was never a handle, is refused with `OTLPFLOW_RESULT_INVALID_HANDLE`
//! instead of touching freed or foreign memory.
//!
//! Id layout (64 bits; C sees it as a pointer it never dereferences):
//! bit 0 is always 1 (no real, aligned pointer looks like an id), bits 1-7
//! the type, bits 8-31 the slot, bits 32-63 the generation.
//!
//! Lookups are lock-free (two Acquire loads): recording through a pipeline
//! handle stays cheap. Making and freeing a handle take one mutex. A
//! handle used by one thread while another frees it is a caller bug this
//! cannot catch (as with any C library); everything else it can.

use std::sync::atomic::{AtomicPtr, AtomicU64, Ordering};
use std::sync::Mutex;

use crate::otlpflow_result;

#[cfg(not(target_pointer_width = "64"))]
compile_error!("otlpflow's C handles are 64-bit ids: a 64-bit target is required");

/// A type C holds by handle.
pub(crate) trait Handle: Sized + Send + Sync + 'static {
    /// The type's number in an id, 1..=127, distinct per type.
    const KIND: u64;
}

/// Slots per chunk; chunks are allocated as needed and never freed.
const CHUNK: usize = 1024;
/// Chunks: at most `CHUNK * CHUNKS` (1,048,576) handles live at once.
const CHUNKS: usize = 1024;

/// One handle's place.
struct Slot {
    /// `generation << 8 | kind` while a handle lives here, 0 while free.
    /// Written under `ALLOC`; read by lookups (Acquire, pairing with the
    /// Release store that publishes `ptr`).
    tag: AtomicU64,
    /// The boxed value, from `Box::into_raw`; written under `ALLOC`.
    ptr: AtomicPtr<()>,
}

/// The chunk pointers (each a leaked `Box<[Slot; CHUNK]>`), published with
/// Release under `ALLOC`, read with Acquire by lookups.
static TABLE: [AtomicPtr<Slot>; CHUNKS] = [const { AtomicPtr::new(std::ptr::null_mut()) }; CHUNKS];

/// Slot allocation: free slots, the next never-used slot, and each used
/// slot's generation (bumped when its handle is freed).
struct Alloc {
    free: Vec<u32>,
    next: u32,
    generation: Vec<u32>,
}

static ALLOC: Mutex<Alloc> = Mutex::new(Alloc {
    free: Vec::new(),
    next: 0,
    generation: Vec::new(),
});

fn alloc() -> std::sync::MutexGuard<'static, Alloc> {
    // A panic while holding it leaves the table consistent (every write is
    // a single store): carry on.
    ALLOC.lock().unwrap_or_else(|e| e.into_inner())
}

/// A decoded id.
#[derive(Clone, Copy)]
struct Id {
    index: usize,
    generation: u32,
    kind: u64,
}

impl Id {
    fn encode(self) -> u64 {
        (self.generation as u64) << 32 | (self.index as u64) << 8 | self.kind << 1 | 1
    }

    fn decode(raw: u64) -> Option<Id> {
        if raw & 1 == 0 {
            return None;
        }
        Some(Id {
            index: ((raw >> 8) & 0xFF_FFFF) as usize,
            generation: (raw >> 32) as u32,
            kind: (raw >> 1) & 0x7F,
        })
    }

    fn tag(self) -> u64 {
        (self.generation as u64) << 8 | self.kind
    }
}

fn slot(index: usize) -> Option<&'static Slot> {
    let chunk = TABLE.get(index / CHUNK)?.load(Ordering::Acquire);
    if chunk.is_null() {
        return None;
    }
    // SAFETY: a non-NULL chunk pointer is a leaked `Box<[Slot; CHUNK]>`,
    // never freed, and `index % CHUNK` is in bounds.
    Some(unsafe { &*chunk.add(index % CHUNK) })
}

/// Boxes `value` into a new handle.
pub(crate) fn into_handle<T: Handle>(value: T) -> Result<*mut T, otlpflow_result> {
    let mut a = alloc();
    let index = match a.free.pop() {
        Some(i) => i as usize,
        None if (a.next as usize) < CHUNK * CHUNKS => {
            let i = a.next as usize;
            if i.is_multiple_of(CHUNK) {
                let chunk: Box<[Slot; CHUNK]> = Box::new(std::array::from_fn(|_| Slot {
                    tag: AtomicU64::new(0),
                    ptr: AtomicPtr::new(std::ptr::null_mut()),
                }));
                TABLE[i / CHUNK].store(Box::into_raw(chunk).cast::<Slot>(), Ordering::Release);
            }
            a.next += 1;
            a.generation.push(1);
            i
        }
        None => return Err(otlpflow_result::Internal),
    };
    let id = Id {
        index,
        generation: a.generation[index],
        kind: T::KIND,
    };
    let s = slot(index).ok_or(otlpflow_result::Internal)?;
    s.ptr.store(
        Box::into_raw(Box::new(value)).cast::<()>(),
        Ordering::Relaxed,
    );
    // Release: a lookup that sees the tag sees `ptr` and the value.
    s.tag.store(id.tag(), Ordering::Release);
    Ok(std::ptr::without_provenance_mut(id.encode() as usize))
}

/// The live value of handle `h`, if `h` is one of type `T`.
fn lookup<T: Handle>(h: *const T) -> Result<*mut T, otlpflow_result> {
    if h.is_null() {
        return Err(otlpflow_result::NullArgument);
    }
    let id = Id::decode(h.addr() as u64).ok_or(otlpflow_result::InvalidHandle)?;
    if id.kind != T::KIND {
        return Err(otlpflow_result::InvalidHandle);
    }
    let s = slot(id.index).ok_or(otlpflow_result::InvalidHandle)?;
    // Acquire pairs with the Release store in `into_handle`.
    if s.tag.load(Ordering::Acquire) != id.tag() {
        return Err(otlpflow_result::InvalidHandle);
    }
    Ok(s.ptr.load(Ordering::Relaxed).cast::<T>())
}

/// Borrows the value behind handle `h`.
///
/// # Safety
/// No thread may free `h` while the borrow lives (the functions taking a
/// handle say so in their docs).
pub(crate) unsafe fn handle_ref<'a, T: Handle>(h: *const T) -> Result<&'a T, otlpflow_result> {
    let p = lookup(h)?;
    // SAFETY: the tag matched, so `p` is the live `Box<T>` of this handle;
    // it stays alive until `free_handle`, which the caller does not race.
    Ok(unsafe { &*p })
}

/// Borrows the value behind handle `h` mutably.
///
/// # Safety
/// As [`handle_ref`], and no other borrow of the same handle may be live
/// (a handle type used so is documented as not thread-safe).
pub(crate) unsafe fn handle_mut<'a, T: Handle>(h: *mut T) -> Result<&'a mut T, otlpflow_result> {
    let p = lookup(h.cast_const())?;
    // SAFETY: as in `handle_ref`; exclusivity is the caller's contract.
    Ok(unsafe { &mut *p })
}

/// Frees handle `h`. NULL is fine; a handle of another type, one already
/// freed or a number that was never a handle returns `InvalidHandle` and
/// frees nothing.
pub(crate) fn free_handle<T: Handle>(h: *mut T) -> Result<(), otlpflow_result> {
    if h.is_null() {
        return Ok(());
    }
    let id = Id::decode(h.addr() as u64).ok_or(otlpflow_result::InvalidHandle)?;
    if id.kind != T::KIND {
        return Err(otlpflow_result::InvalidHandle);
    }
    let p = {
        let mut a = alloc();
        let s = slot(id.index).ok_or(otlpflow_result::InvalidHandle)?;
        if s.tag.load(Ordering::Acquire) != id.tag() {
            return Err(otlpflow_result::InvalidHandle);
        }
        s.tag.store(0, Ordering::Release);
        let p = s.ptr.swap(std::ptr::null_mut(), Ordering::Relaxed);
        // A new generation: every id made before this call is stale now.
        let g = &mut a.generation[id.index];
        *g = g.wrapping_add(1).max(1);
        a.free.push(id.index as u32);
        p
    };
    // SAFETY: `p` came from `Box::into_raw(Box<T>)` in `into_handle` (the
    // kind matched) and the tag, cleared under the lock, made this the one
    // call that frees it. Dropped outside the lock: a pipeline's drop shuts
    // it down, which may take seconds.
    drop(unsafe { Box::from_raw(p.cast::<T>()) });
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    struct A(u32);
    impl Handle for A {
        const KIND: u64 = 100;
    }
    struct B;
    impl Handle for B {
        const KIND: u64 = 101;
    }

    #[test]
    fn stale_and_foreign_handles_are_refused() {
        let a = into_handle(A(1)).unwrap();
        // SAFETY: `a` is live and not freed concurrently.
        assert_eq!(unsafe { handle_ref(a) }.unwrap().0, 1);
        free_handle(a).unwrap();
        // The slot is reused by the next handle, with a new generation.
        let a2 = into_handle(A(2)).unwrap();
        assert_eq!(free_handle(a), Err(otlpflow_result::InvalidHandle));
        // SAFETY: as above.
        assert!(unsafe { handle_ref(a) }.is_err());
        // SAFETY: as above.
        assert_eq!(unsafe { handle_ref(a2) }.unwrap().0, 2);
        // A of the wrong type, and numbers that were never handles.
        assert_eq!(
            free_handle(a2.cast::<B>()),
            Err(otlpflow_result::InvalidHandle)
        );
        let fake = std::ptr::without_provenance_mut::<A>(0x1000);
        assert_eq!(free_handle(fake), Err(otlpflow_result::InvalidHandle));
        assert_eq!(free_handle(std::ptr::null_mut::<A>()), Ok(()));
        free_handle(a2).unwrap();
        let b = into_handle(B).unwrap();
        free_handle(b).unwrap();
    }
}
