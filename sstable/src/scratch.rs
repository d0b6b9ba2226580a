//! Per-thread scratch buffers for the bytes of one block at a time: the bytes read from the
//! file, the decompressed body, and the tiles a range of bit-transposed values goes through.
//! They are parsed into a [`crate::block::DecodedBlock`] that owns its columns, so the
//! buffers are free again once a block is decoded; reusing them spares each cold read the
//! allocations that the allocator zero-fills (8% of a "latest 100" query's time on the
//! standard data, before).
//!
//! Also two spare columns of 64-bit words ([`Words`]) that a decode fills and drops block
//! after block: taken with [`take_words`], given back with [`keep_words`]; and the chunk of
//! memory that one-user decodes cut their values from ([`values`]).
//!
//! Why it matters beyond the work saved: with glibc, each allocation and each free takes the
//! lock of a malloc arena, and memory freed by another thread than the one that allocated it
//! (a cached block evicted by another reader or by compaction's prefill, a payload dropped
//! by the application) makes threads meet on those locks. With a writer in the process, a
//! reader slept on them thousands of times a second (docs/PERFORMANCE.md).

use std::cell::RefCell;
use std::thread::LocalKey;

use bytes::{Bytes, BytesMut};

/// Which buffer: a block's bytes as read, its decompressed body, or the tiles of a range of
/// bit-transposed values (`block::bits`).
#[derive(Clone, Copy)]
pub(crate) enum Scratch {
    Read = 0,
    Body = 1,
    Tiles = 2,
}

/// A buffer larger than this is freed after use rather than kept: one huge block should not
/// pin its size in every reading thread.
const KEEP_BYTES: usize = 1 << 20;

thread_local! {
    static BUFFERS: RefCell<[Vec<u8>; 3]> = const { RefCell::new([Vec::new(), Vec::new(), Vec::new()]) };
}

/// Calls `f` with this thread's `which` buffer, `len` bytes long (their contents are
/// whatever the buffer held; `f` overwrites them). A nested call for the same buffer gets a
/// fresh one instead.
pub(crate) fn with<T>(which: Scratch, len: usize, f: impl FnOnce(&mut [u8]) -> T) -> T {
    let mut buf = take(&BUFFERS, which as usize);
    buf.resize(len, 0);
    let result = f(&mut buf);
    keep(&BUFFERS, which as usize, buf, KEEP_BYTES);
    result
}

/// Takes slot `i` of this thread's `slots` (a fresh vector if it is out, or during thread
/// teardown).
fn take<T: 'static, const N: usize>(slots: &'static LocalKey<RefCell<[Vec<T>; N]>>, i: usize) -> Vec<T> {
    let taken = slots.try_with(|cell| cell.try_borrow_mut().ok()?.get_mut(i).map(std::mem::take));
    taken.ok().flatten().unwrap_or_default()
}

/// Puts `v` back in slot `i` of this thread's `slots`, unless its capacity is over `max`
/// (or the thread is being torn down): then it is freed.
fn keep<T: 'static, const N: usize>(
    slots: &'static LocalKey<RefCell<[Vec<T>; N]>>,
    i: usize,
    v: Vec<T>,
    max: usize,
) {
    if v.capacity() <= max {
        let _ = slots.try_with(|cell| {
            if let Ok(mut spare) = cell.try_borrow_mut() {
                if let Some(slot) = spare.get_mut(i) {
                    *slot = v;
                }
            }
        });
    }
}

/// Size of the chunks [`values`] cuts from.
pub(crate) const VALUE_CHUNK_BYTES: usize = 16 << 10;

thread_local! {
    static VALUES: RefCell<BytesMut> = RefCell::new(BytesMut::new());
}

/// `len` bytes, zeroed, then filled by `fill`, as a [`Bytes`] cut from this thread's current
/// chunk of [`VALUE_CHUNK_BYTES`] (a fresh chunk when it has no room left; `len` over half a
/// chunk gets its own buffer). For the values of one-user decodes: a cold read decodes a few
/// entries from each of many blocks, and each used to be an allocation of its own, freed by
/// whichever thread dropped the last payload. Now a chunk is one allocation (and one shared
/// count) per about 250 payloads of 64 bytes. The cost: a payload the application keeps
/// keeps its whole chunk allocated, as a payload of a cached block keeps that block's values.
pub(crate) fn values<E>(len: usize, fill: impl FnOnce(&mut [u8]) -> Result<(), E>) -> Result<Bytes, E> {
    if len > VALUE_CHUNK_BYTES / 2 {
        let mut own = vec![0; len];
        fill(&mut own)?;
        return Ok(Bytes::from(own));
    }
    let mut fill = Some(fill);
    let mut cut = |chunk: &mut BytesMut| {
        if chunk.capacity() < len {
            *chunk = BytesMut::with_capacity(VALUE_CHUNK_BYTES);
        }
        chunk.resize(len, 0);
        let filled = fill.take().map_or(Ok(()), |fill| fill(chunk));
        let cut = chunk.split().freeze();
        filled.map(|()| cut)
    };
    match VALUES.try_with(|cell| cell.try_borrow_mut().ok().map(|mut chunk| cut(&mut chunk))) {
        Ok(Some(result)) => result,
        // During thread teardown: a chunk for this one call.
        _ => cut(&mut BytesMut::new()),
    }
}

/// Which spare column of 64-bit words: the seqnos of a block, kept when they turn out all
/// equal (`block::seqno_column`), or the un-transposition's plane words
/// (`bits::unbitshuffle_into`).
#[derive(Clone, Copy)]
pub(crate) enum Words {
    Seqnos = 0,
    Planes = 1,
}

/// A spare column larger than this, in words (128 KiB), is freed rather than kept: a 32 KiB
/// block of 64-byte values needs 4,096 plane words, an 8 KiB block about 90 seqnos.
const KEEP_WORDS: usize = 1 << 14;

thread_local! {
    static WORDS: RefCell<[Vec<u64>; 2]> = const { RefCell::new([Vec::new(), Vec::new()]) };
}

/// This thread's `which` spare column, emptied (a fresh one if it is out). Give it back
/// with [`keep_words`] once its contents are no longer needed.
pub(crate) fn take_words(which: Words) -> Vec<u64> {
    let mut words = take(&WORDS, which as usize);
    words.clear();
    words
}

/// Keeps `words` as this thread's `which` spare column, unless it grew past [`KEEP_WORDS`].
pub(crate) fn keep_words(which: Words, words: Vec<u64>) {
    keep(&WORDS, which as usize, words, KEEP_WORDS);
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

    fn fill(bytes: &mut [u8], value: u8) -> Result<(), ()> {
        bytes.fill(value);
        Ok(())
    }

    #[test]
    fn values_are_cut_from_one_chunk_until_it_is_full() {
        let first = values(64, |b| {
            assert_eq!(b, &[0; 64][..], "handed out zeroed");
            b.fill(1);
            Ok::<(), ()>(())
        })
        .unwrap();
        let second = values(64, |b| {
            b.fill(2);
            Ok::<(), ()>(())
        })
        .unwrap();
        assert_eq!((&first[..], &second[..]), (&[1; 64][..], &[2; 64][..]));
        assert_eq!(
            first.as_ptr() as usize + 64,
            second.as_ptr() as usize,
            "cut from one chunk, back to back"
        );
        let failed = values(8, |_| Err("bad"));
        assert_eq!(failed, Err("bad"));
        // Fill the chunk; the next cut comes from a fresh one, and the first two stay intact.
        let mut cuts = Vec::new();
        while cuts.len() < 2 * VALUE_CHUNK_BYTES / 64 {
            cuts.push(values(64, |b| fill(b, 3)).unwrap());
        }
        assert_eq!((&first[..], &second[..]), (&[1; 64][..], &[2; 64][..]));
        assert!(cuts.iter().all(|cut| cut[..] == [3; 64]));
        let big = values(VALUE_CHUNK_BYTES, |b| fill(b, 4)).unwrap();
        assert_eq!(big.len(), VALUE_CHUNK_BYTES);
        assert!(big.iter().all(|&b| b == 4));
        // Dropping every cut frees the chunks (run under Miri or a leak checker to see it);
        // dropping in any order is sound.
        drop(cuts);
        drop(first);
        assert_eq!(&second[..], &[2; 64][..]);
    }

    #[test]
    fn spare_words_come_back_empty_and_huge_ones_are_not_kept() {
        let mut words = take_words(Words::Planes);
        words.extend([1, 2, 3]);
        let at = words.as_ptr() as usize;
        keep_words(Words::Planes, words);
        let again = take_words(Words::Planes);
        assert!(again.is_empty(), "a spare column is handed out emptied");
        assert_eq!(again.as_ptr() as usize, at, "the same buffer, kept");
        assert!(take_words(Words::Seqnos).capacity() == 0, "each column has its own slot");
        keep_words(Words::Seqnos, Vec::with_capacity(KEEP_WORDS + 1));
        assert_eq!(take_words(Words::Seqnos).capacity(), 0, "a huge column was not kept");
    }
}
