//! Iterators over a table: one user's ts range forward and newest-first, and the whole table
//! for compaction. They yield every version with its seqno and kind; visibility is the
//! engine's business. An error (a damaged block) is yielded once and ends the iteration.

use std::sync::Arc;

use crate::block::DecodedBlock;
use crate::table::Table;
use crate::{Entry, Result};

/// The `Iterator` impl of each iterator here: `step` gives the next entry, and the iterator
/// stops at the end and after an error, which is reported once and never followed by
/// entries past the damage.
macro_rules! fused_iterator {
    ($($name:ident),*) => {$(
        impl Iterator for $name {
            type Item = Result<Entry>;

            fn next(&mut self) -> Option<Self::Item> {
                if self.done {
                    return None;
                }
                let item = self.step().transpose();
                self.done = !matches!(item, Some(Ok(_)));
                item
            }
        }
    )*};
}

fused_iterator!(UserIter, UserRevIter, TableIter);

/// Forward iterator over one user's entries with `lo <= ts <= hi`.
pub struct UserIter {
    table: Table,
    user: u64,
    lo: i64,
    hi: i64,
    block_index: usize,
    block: Option<Arc<DecodedBlock>>,
    pos: usize,
    /// The end of the user's entries with `ts <= hi` in the current block.
    end: usize,
    done: bool,
}

impl UserIter {
    pub(crate) fn new(table: Table, user: u64, lo: i64, hi: i64) -> Self {
        let done = lo > hi || !table.may_contain_user(user);
        let block_index = table.seek_block(user, lo);
        UserIter { table, user, lo, hi, block_index, block: None, pos: 0, end: 0, done }
    }

    fn step(&mut self) -> Result<Option<Entry>> {
        loop {
            // The block is borrowed, not cloned, per entry: an Arc clone per entry was half
            // the cost of a "latest 100" read.
            if let Some(block) = &self.block {
                if self.pos < self.end {
                    self.pos += 1;
                    return Ok(block.entry_of(self.pos - 1, self.user));
                }
                if self.end < block.len() {
                    // The next entry is another user's, or past `hi`.
                    return Ok(None);
                }
                self.block = None;
                self.block_index += 1;
            }
            if self.block_index >= self.table.block_count()
                || self.table.block_handle(self.block_index).first > (self.user, self.hi)
            {
                return Ok(None);
            }
            let block = self.table.user_block(self.block_index, self.user)?;
            let span = block.user_span(self.user, self.lo, self.hi);
            (self.pos, self.end) = (span.start, span.end);
            self.block = Some(block);
        }
    }
}

/// Reverse iterator over one user's entries with `lo <= ts <= hi`: newest timestamp first,
/// the exact reverse of table order.
pub struct UserRevIter {
    table: Table,
    user: u64,
    lo: i64,
    hi: i64,
    /// The block being read, as `block_index + 1` so that 0 means "before the first block".
    next_block: usize,
    block: Option<Arc<DecodedBlock>>,
    /// Entries before `pos` in the current block are still to be yielded.
    pos: usize,
    /// The first entry of the current block at or above `(user, lo)`: where the user's
    /// entries in range start in it.
    first: usize,
    /// `Some(k)`: the current block holds only the newest `k` of the user's entries in range
    /// that its on-disk block has ([`Table::user_block_newest`]); past them, the rest are
    /// read from the same block, not the one before.
    cut: Option<usize>,
    done: bool,
}

impl UserRevIter {
    pub(crate) fn new(table: Table, user: u64, lo: i64, hi: i64) -> Self {
        let done = lo > hi || !table.may_contain_user(user);
        // The last block whose first key is at or before (user, hi).
        let next_block = if done { 0 } else { table.blocks_starting_by(user, hi) };
        UserRevIter { table, user, lo, hi, next_block, block: None, pos: 0, first: 0, cut: None, done }
    }

    fn step(&mut self) -> Result<Option<Entry>> {
        loop {
            if let Some(block) = &self.block {
                // Entries `[first, pos)` are the user's with `lo <= ts <= hi`.
                if self.pos > self.first {
                    self.pos -= 1;
                    return Ok(block.entry_of(self.pos, self.user));
                }
                if self.first > 0 {
                    // The entry before is another user's, or before `lo`.
                    return Ok(None);
                }
                self.block = None;
            }
            self.load_previous_block(usize::MAX)?;
            if self.done {
                return Ok(None);
            }
        }
    }
}

impl UserRevIter {
    /// Appends up to `max` of the next entries to `out`, in the order `next` yields them,
    /// and returns how many (0 at the end). It is `next` called up to `max` times, but it
    /// slices each block's columns in one go ([`DecodedBlock::extend_rev`]) instead of
    /// checking and building entries one by one: the engine's "latest N" path.
    pub fn next_chunk(&mut self, max: usize, out: &mut Vec<Entry>) -> Result<usize> {
        let mut added = 0;
        while added < max && !self.done {
            let Some(block) = &self.block else {
                if let Err(err) = self.load_previous_block(max - added) {
                    self.done = true;
                    return Err(err);
                }
                continue;
            };
            // Entries `[first, pos)` are this user's with `lo <= ts <= hi`: `pos` was set
            // at the bound above `hi`, and `first` at the bound at `lo`.
            let first = self.first.min(self.pos);
            // Room for exactly what this block adds: a caller may then pass an empty `out`
            // and pay for the 1-3 entries a cold user has in a table, not for `max`.
            out.reserve((self.pos - first).min(max - added));
            let n = block.extend_rev(first..self.pos, max - added, out);
            self.pos -= n;
            added += n;
            if self.pos > first {
                break;
            }
            if first > 0 && self.cut.is_none() {
                // The user's entries at or above `lo` start inside this block.
                self.done = true;
            } else {
                self.block = None;
            }
        }
        Ok(added)
    }

    /// Moves to the previous block that may hold the user's entries, or ends the iteration;
    /// after a cut block, reads the rest of that same block instead. `keep`: how many more
    /// entries the caller wants at most (a first miss decodes no more than that).
    fn load_previous_block(&mut self, keep: usize) -> Result<()> {
        // Entries of a cut block already yielded: all it held.
        let reread = self.cut.take();
        let yielded = if let Some(held) = reread {
            held
        } else {
            if self.next_block == 0
                || self.table.block_handle(self.next_block - 1).last < (self.user, self.lo)
            {
                self.done = true;
                return Ok(());
            }
            self.next_block -= 1;
            0
        };
        // Again after a cut: whole this time (no cut can repeat), from the cache or decoded.
        let keep = if reread.is_some() { usize::MAX } else { keep };
        let (block, cut) =
            self.table.user_block_newest(self.next_block, self.user, self.lo, self.hi, keep)?;
        let span = block.user_span(self.user, self.lo, self.hi);
        // The whole block's entries in range end with the ones the cut block held.
        (self.first, self.pos) = (span.start, span.end.saturating_sub(yielded).max(span.start));
        self.cut = cut.then_some(span.len());
        self.block = Some(block);
        Ok(())
    }
}

/// Every entry of a table in table order; blocks missing from the cache are not cached.
pub struct TableIter {
    table: Table,
    block_index: usize,
    block: Option<Arc<DecodedBlock>>,
    pos: usize,
    /// The user run of `pos` in the block: a walk needs no search per entry.
    run: usize,
    done: bool,
}

impl TableIter {
    pub(crate) fn new(table: Table) -> Self {
        TableIter { table, block_index: 0, block: None, pos: 0, run: 0, done: false }
    }

    fn step(&mut self) -> Result<Option<Entry>> {
        loop {
            if let Some(block) = &self.block {
                if let Some(entry) = block.entry_from_run(self.pos, &mut self.run) {
                    self.pos += 1;
                    return Ok(Some(entry));
                }
                self.block = None;
                self.block_index += 1;
            }
            if self.block_index >= self.table.block_count() {
                return Ok(None);
            }
            self.block = Some(self.table.block_uncached(self.block_index)?);
            (self.pos, self.run) = (0, 0);
        }
    }
}
