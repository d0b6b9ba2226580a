//! Handing memory the engine has freed back to the operating system.
//!
//! The engine frees memory in bulk at two known points: a flush drops a whole memtable (64 MiB
//! by default: the batch buffers, the per-user slot vectors, the shard maps), and a compaction
//! merge has decoded every block of its inputs and, through the cache prefill, evicted blocks
//! that other threads allocated. glibc's malloc keeps freed memory in the arena it came from,
//! and it hands pages back to the kernel only from the top of a heap. The writer, flush,
//! compaction and reader threads each allocate from their own arena, so memory a flush frees in
//! the writer's arena stays resident while the reader's arena grows for the block cache, and
//! the process's resident size becomes the sum of every arena's peak rather than the peak of
//! what is live. Measured on the quick preset's mixed phase (`strata-bench run --preset quick
//! --engines strata`): peak RSS 808 and 831 MiB without, 632 and 635 MiB with a trim after each
//! flush (docs/PERFORMANCE.md, "Returning freed memory to the kernel").
//!
//! [`release_free_memory`] asks glibc to return every whole free page of every arena
//! (`malloc_trim(0)`, which `madvise`s them away). It walks the arenas under their locks, so it
//! runs on the flush thread after a flush and on the compaction thread after a merge, never on
//! a reader's or writer's path; it took 5 to 100 ms per call in that measurement (a writer or
//! reader that allocates from an arena while the trim holds its lock waits that long at most).
//! Each page range it hands back is one `madvise`, and each of those interrupts every other
//! CPU running the process to flush its TLB: the standard run's settle ended each of its two
//! merges with about 7,500 such interrupts in 50 ms on the reader's CPU. Dropping the trim
//! after merges measured no better read latency during the settle and 50 to 80 MiB more
//! resident memory (docs/PERFORMANCE.md, "The trim after each merge"), so it stays. The walk
//! is also the longest thing a reader waits for beside a writer: in the mixed phase the
//! reader's sleeps of 30 to 110 ms were on arena locks a trim held, on these niced threads or
//! (tried, not kept) on a thread of normal priority (docs/PERFORMANCE.md, "What the reader
//! sleeps on beside a writer").
//! `Options::release_memory_after_flush` turns it off. With another allocator or C library
//! there is nothing to ask, and the call does nothing.

/// Asks the allocator to return the free pages it holds to the operating system. Returns
/// whether it released any (always `false` where there is no such call).
pub(crate) fn release_free_memory() -> bool {
    trim()
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn trim() -> bool {
    // SAFETY: `malloc_trim` takes no pointer and has no precondition: it may be called from
    // any thread at any time, and glibc serializes it with every allocation and free through
    // each arena's own lock. It only releases pages that hold no live allocation.
    unsafe { libc::malloc_trim(0) == 1 }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() -> bool {
    false
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    /// Memory freed in another thread's arena, below a live allocation that pins the top of
    /// its heap, is exactly what a trim gives back and what a heap-top trim cannot.
    #[test]
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn memory_freed_in_another_arena_is_released() {
        let released = std::thread::spawn(|| {
            let mut blocks: Vec<Vec<u8>> =
                (0..4096).map(|i| vec![u8::try_from(i % 251).unwrap(); 16 << 10]).collect();
            let pin = blocks.pop().expect("4096 blocks");
            drop(blocks);
            let released = release_free_memory();
            assert_eq!(pin[0], u8::try_from(4095 % 251).unwrap());
            released
        })
        .join()
        .unwrap();
        assert!(released, "64 MiB freed below a live block, and malloc_trim released nothing");
    }

    #[test]
    fn release_is_harmless_with_nothing_to_release() {
        // Twice in a row: the second finds nothing new, and neither call disturbs live data.
        let live = vec![7u8; 1 << 20];
        release_free_memory();
        release_free_memory();
        assert!(live.iter().all(|&b| b == 7));
    }
}
