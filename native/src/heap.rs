//! The bytes the compiled core holds on the heap, counted as it allocates: its entities, the
//! partials kept between asks, whatever a call is working on. A worker's resident memory is
//! mostly this (docs/operations.md, "Memory"); /metrics exports it as
//! `engagement_core_heap_bytes`, so an operator can tell the core's share from the rest
//! (RocksDB, Python, Kafka clients) without a heap profiler.
//!
//! The system allocator does the work; the count is one relaxed atomic add per allocation and
//! per free (a few nanoseconds against a record's microseconds).

use pyo3::prelude::*;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering::Relaxed};

struct Counting;

static IN_USE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call goes to the system allocator with the caller's arguments; only a counter
// is added beside it.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            IN_USE.fetch_add(layout.size() as isize, Relaxed);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            IN_USE.fetch_add(layout.size() as isize, Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        IN_USE.fetch_sub(layout.size() as isize, Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            IN_USE.fetch_add(new_size as isize - layout.size() as isize, Relaxed);
        }
        p
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// The bytes the core has allocated and not freed (requested sizes: the allocator's own
/// overhead, ~8-16 bytes a block, is not in it).
#[pyfunction]
pub fn heap_bytes() -> isize {
    IN_USE.load(Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_what_is_held() {
        // 64 MiB against whatever the other tests, on their threads, hold meanwhile (far less)
        let before = heap_bytes();
        let v: Vec<u64> = Vec::with_capacity(8 << 20);
        assert!(heap_bytes() - before >= 48 << 20);
        drop(v);
        assert!(heap_bytes() - before < 16 << 20);
    }
}
