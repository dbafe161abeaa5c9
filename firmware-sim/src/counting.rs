//! A global allocator that counts, per thread, the allocations it hands out, so that the
//! simulator can show that an inference allocates nothing.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

thread_local! {
    // `const` and without a destructor: reading it never allocates, so the allocator may
    // use it.
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

/// The system allocator, counting allocations and reallocations on each thread.
pub struct CountingAllocator;

fn count() {
    // A thread being torn down may no longer reach its counter; its allocations are not
    // inference's.
    let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
}

/// Allocations and reallocations made so far on the calling thread.
pub fn allocations() -> u64 {
    ALLOCATIONS.try_with(Cell::get).unwrap_or(0)
}

// SAFETY: every call is passed on unchanged to `System`, which upholds `GlobalAlloc`'s
// contract; counting touches only a thread-local integer and allocates nothing.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: the caller's guarantees for `layout` are passed on as they are.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: `ptr` came from this allocator, that is from `System`, with `layout`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this allocator, that is from `System`, with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[cfg(test)]
mod tests {
    use super::allocations;

    #[test]
    fn counts_each_allocation_on_its_own_thread() {
        let before = allocations();
        let boxed = std::hint::black_box(Box::new([1u8; 64]));
        assert_eq!(allocations(), before + 1);
        let mut grown = std::hint::black_box(Vec::<u8>::with_capacity(1));
        grown.extend_from_slice(&[0; 100]);
        assert_eq!(allocations(), before + 3, "a reallocation counts too");
        drop((boxed, grown));
        assert_eq!(allocations(), before + 3, "freeing is not allocating");

        // A thousand allocations on another thread stay off this thread's count (spawning
        // and joining it allocate a few times here).
        let before = allocations();
        let made = std::thread::spawn(|| {
            let start = allocations();
            for n in 0..1000 {
                std::hint::black_box(vec![n as u8; 16]);
            }
            allocations() - start
        })
        .join()
        .unwrap_or(0);
        assert_eq!(made, 1000);
        assert!(allocations() - before < 100);
    }
}
