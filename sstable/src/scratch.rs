//! Per-thread scratch buffers for the bytes of one block at a time: the bytes read from the
//! file and the decompressed body. Both are parsed into a [`crate::block::DecodedBlock`]
//! that owns its columns, so the buffers are free again once a block is decoded; reusing
//! them spares each cold read two allocations that the allocator zero-fills (8% of a
//! "latest 100" query's time on the standard data, before).

use std::cell::RefCell;

/// Which buffer: a block's bytes as read, or its decompressed body.
#[derive(Clone, Copy)]
pub(crate) enum Scratch {
    Read = 0,
    Body = 1,
}

/// A buffer larger than this is freed after use rather than kept: one huge block should not
/// pin its size in every reading thread.
const KEEP_BYTES: usize = 1 << 20;

thread_local! {
    static BUFFERS: RefCell<[Vec<u8>; 2]> = const { RefCell::new([Vec::new(), Vec::new()]) };
}

/// Calls `f` with this thread's `which` buffer, `len` bytes long (their contents are
/// whatever the buffer held; `f` overwrites them). A nested call for the same buffer gets a
/// fresh one instead.
pub(crate) fn with<T>(which: Scratch, len: usize, f: impl FnOnce(&mut [u8]) -> T) -> T {
    let taken =
        BUFFERS.with(|cell| cell.try_borrow_mut().ok().map(|mut b| std::mem::take(&mut b[which as usize])));
    let mut buf = taken.unwrap_or_default();
    buf.resize(len, 0);
    let result = f(&mut buf);
    if buf.capacity() <= KEEP_BYTES {
        BUFFERS.with(|cell| {
            if let Ok(mut buffers) = cell.try_borrow_mut() {
                buffers[which as usize] = buf;
            }
        });
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_buffer_is_reused_and_nested_calls_get_their_own() {
        let first = with(Scratch::Read, 16, |b| {
            b.fill(7);
            b.as_ptr() as usize
        });
        let again = with(Scratch::Read, 8, |b| {
            assert_eq!(b, &[7; 8], "the same buffer, not zero-filled again");
            with(Scratch::Read, 4, |inner| {
                inner.fill(1);
                assert_ne!(inner.as_ptr() as usize, b.as_ptr() as usize);
            });
            b.as_ptr() as usize
        });
        assert_eq!(first, again);
        with(Scratch::Body, KEEP_BYTES + 1, |b| b.fill(1));
        with(Scratch::Body, 4, |b| assert_eq!(b, &[0; 4], "a huge buffer was not kept"));
    }
}
