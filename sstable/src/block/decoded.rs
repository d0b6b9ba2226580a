//! [`DecodedBlock`]: a block's entries in memory, column by column, as the block cache holds
//! them and the iterators read them.
//!
//! Columns that are the same for every entry are held once, not per entry:
//! - users as runs (a user and where its entries end), not one `u64` per entry;
//! - seqnos and kinds as one value when all are equal (a settled table's seqnos are all 0
//!   and its kinds all puts);
//! - value offsets as one width when every value has it (the payloads of a behaviour log).
//!
//! Why: a decoded block of the standard workload held 29 bytes of keys per entry besides
//! its 64-byte payload, and decoding one made about a dozen allocations, each a trip into
//! malloc on the query's own thread (a cache admission, or a first miss's one-user decode).
//! Now it holds 8 (the timestamps) plus a few bytes per user run, and most of those
//! allocations are gone.
//!
//! Invariants (the decoders establish them, every accessor relies on them):
//! - `ts.len()` is the entry count n; a column held per entry has n elements;
//! - the runs' ends ascend strictly, the last is n (no runs when n = 0), and their users
//!   ascend strictly;
//! - the offsets, when held, are n + 1, ascending from 0, the last within `values`; a
//!   width w > 0 means n * w bytes of values.

use std::ops::Range;

use bytes::Bytes;

use super::{lower_bound_u64, MAX_BLOCK_UNCOMPRESSED};
use crate::{Entry, Kind};

/// A decoded block: columns in memory, values un-transposed into one buffer that the entries
/// share.
#[derive(Clone, Debug)]
pub struct DecodedBlock {
    pub(super) users: Users,
    pub(super) ts: Vec<i64>,
    pub(super) seqnos: Column<u64>,
    pub(super) kinds: Column<Kind>,
    pub(super) widths: Widths,
    pub(super) values: Bytes,
}

/// The users column, by runs.
#[derive(Clone, Debug)]
pub(super) enum Users {
    /// Every entry is this user's (a one-user decode).
    One(u64),
    /// Run k holds the entries `ends[k - 1]..ends[k]` (from 0 for the first) of `users[k]`.
    Runs { users: Vec<u64>, ends: Vec<u32> },
}

/// A column that is either one value for every entry or one per entry.
#[derive(Clone, Debug)]
pub(super) enum Column<T> {
    Same(T),
    Each(Vec<T>),
}

impl<T: Copy> Column<T> {
    /// Entry `i`'s value; the caller checked `i` against the entry count.
    pub(super) fn get(&self, i: usize) -> Option<T> {
        match self {
            Column::Same(value) => Some(*value),
            Column::Each(values) => values.get(i).copied(),
        }
    }

    fn heap_bytes(&self) -> usize {
        match self {
            Column::Same(_) => 0,
            Column::Each(values) => values.capacity() * std::mem::size_of::<T>(),
        }
    }
}

impl<T: Copy + PartialEq> Column<T> {
    /// Appends `count` entries of `value` to a column holding `seen` entries so far, of
    /// `capacity` in the end: it stays one value, with no allocation, until a second one
    /// shows up.
    pub(super) fn push_run(&mut self, seen: usize, value: T, count: usize, capacity: usize) {
        match self {
            Column::Same(first) if seen == 0 || *first == value => *first = value,
            Column::Same(first) => {
                let mut each = Vec::with_capacity(capacity);
                each.extend(std::iter::repeat_n(*first, seen));
                each.extend(std::iter::repeat_n(value, count));
                *self = Column::Each(each);
            }
            Column::Each(each) => each.extend(std::iter::repeat_n(value, count)),
        }
    }
}

/// Where each value lies in `values`.
#[derive(Clone, Debug)]
pub(super) enum Widths {
    /// Value i is bytes `i * w..(i + 1) * w`.
    Fixed(usize),
    /// Value i is bytes `offsets[i]..offsets[i + 1]` (n + 1 offsets).
    Offsets(Vec<u32>),
}

/// Builds [`Widths`] from the runs of a value lengths column: one width, with no
/// allocation, until a second length shows up; then the offsets.
pub(super) struct WidthsBuilder {
    width: usize,
    /// Values pushed so far, and their bytes.
    seen: usize,
    total: usize,
    offsets: Option<Vec<u32>>,
    /// Values there will be in all (the offsets' capacity, less one).
    entries: usize,
    overflow: bool,
}

impl WidthsBuilder {
    pub(super) fn new(entries: usize) -> WidthsBuilder {
        WidthsBuilder { width: 0, seen: 0, total: 0, offsets: None, entries, overflow: false }
    }

    /// Adds `count` values of `value_len` bytes each.
    pub(super) fn push(&mut self, value_len: usize, count: usize) {
        let end = value_len.checked_mul(count).and_then(|bytes| self.total.checked_add(bytes));
        let Some(end) = end.filter(|&end| !self.overflow && end <= MAX_BLOCK_UNCOMPRESSED) else {
            self.overflow = true;
            return;
        };
        if self.offsets.is_none() && self.seen > 0 && value_len != self.width {
            let mut offsets = Vec::with_capacity(self.entries + 1);
            offsets.extend((0..=self.seen).map(|i| offset(i * self.width)));
            self.offsets = Some(offsets);
        }
        let total = self.total;
        match &mut self.offsets {
            None => self.width = value_len,
            Some(offsets) => offsets.extend((1..=count).map(|k| offset(total + k * value_len))),
        }
        (self.total, self.seen) = (end, self.seen + count);
    }

    /// The widths and the values' total size; `None` if the values overflow a block.
    pub(super) fn finish(self) -> Option<(Widths, usize)> {
        let widths = match self.offsets {
            _ if self.overflow => return None,
            Some(offsets) => Widths::Offsets(offsets),
            None => Widths::Fixed(self.width),
        };
        Some((widths, self.total))
    }
}

/// A value offset: at most the values' total, which [`WidthsBuilder::push`] keeps within
/// `MAX_BLOCK_UNCOMPRESSED`, so it never saturates.
fn offset(bytes: usize) -> u32 {
    u32::try_from(bytes).unwrap_or(u32::MAX)
}

impl DecodedBlock {
    /// Number of entries.
    pub fn len(&self) -> usize {
        self.ts.len()
    }

    /// Whether the block holds no entry.
    pub fn is_empty(&self) -> bool {
        self.ts.is_empty()
    }

    /// Entry `i`; its value shares the block's buffer.
    pub fn entry(&self, i: usize) -> Option<Entry> {
        self.entry_of(i, self.user(i)?)
    }

    /// Entry `i`, whose user the caller knows (an iterator within one user's range).
    pub(crate) fn entry_of(&self, i: usize, user: u64) -> Option<Entry> {
        Some(Entry {
            user,
            ts: *self.ts.get(i)?,
            seqno: self.seqnos.get(i)?,
            kind: self.kinds.get(i)?,
            value: self.values.slice(self.value_range(i)?),
        })
    }

    /// [`entry`](Self::entry) for a caller walking the block forward: `run` is the run of
    /// the entry before (0 to start), advanced here, so that a walk costs no search per
    /// entry.
    pub(crate) fn entry_from_run(&self, i: usize, run: &mut usize) -> Option<Entry> {
        let user = match &self.users {
            Users::One(user) => *user,
            Users::Runs { users, ends } => {
                while (*ends.get(*run)? as usize) <= i {
                    *run += 1;
                }
                *users.get(*run)?
            }
        };
        self.entry_of(i, user)
    }

    /// Bytes of value `i` within `values`.
    fn value_range(&self, i: usize) -> Option<Range<usize>> {
        let range = match &self.widths {
            Widths::Fixed(width) => i * width..(i + 1) * width,
            Widths::Offsets(offsets) => *offsets.get(i)? as usize..*offsets.get(i + 1)? as usize,
        };
        (range.end <= self.values.len()).then_some(range)
    }

    /// Appends up to `n` entries of `range`, last first (newest timestamp first within one
    /// user), to `out`; returns how many. The "latest N" path: it walks the columns as equal
    /// slices, so the per-entry work is a few loads and one `Bytes` slice.
    pub fn extend_rev(&self, range: Range<usize>, n: usize, out: &mut Vec<Entry>) -> usize {
        let end = range.end.min(self.len());
        let start = range.start.max(end.saturating_sub(n)).min(end);
        if start == end {
            return 0;
        }
        // The run of the last entry, then back run by run as the walk crosses a run's start.
        let (mut run, mut run_start) = match self.run_of(end - 1) {
            Some(found) => found,
            None => return 0,
        };
        let Some(ts) = self.ts.get(start..end) else { return 0 };
        for i in (start..end).rev() {
            while i < run_start && run > 0 {
                run -= 1;
                run_start = self.run_start(run);
            }
            let (Some(user), Some(seqno), Some(kind), Some(value)) =
                (self.run_user(run), self.seqnos.get(i), self.kinds.get(i), self.value_range(i))
            else {
                return end - 1 - i;
            };
            out.push(Entry { user, ts: ts[i - start], seqno, kind, value: self.values.slice(value) });
        }
        end - start
    }

    /// The run holding entry `i` (`i < len`), and where that run starts.
    fn run_of(&self, i: usize) -> Option<(usize, usize)> {
        match &self.users {
            Users::One(_) => Some((0, 0)),
            Users::Runs { ends, .. } => {
                let run = ends.partition_point(|&end| end as usize <= i);
                (run < ends.len()).then(|| (run, self.run_start(run)))
            }
        }
    }

    /// The first entry of run `run`.
    fn run_start(&self, run: usize) -> usize {
        match &self.users {
            Users::One(_) => 0,
            Users::Runs { ends, .. } => {
                run.checked_sub(1).and_then(|k| ends.get(k)).map_or(0, |&e| e as usize)
            }
        }
    }

    /// The user of run `run`.
    fn run_user(&self, run: usize) -> Option<u64> {
        match &self.users {
            Users::One(user) => Some(*user),
            Users::Runs { users, .. } => users.get(run).copied(),
        }
    }

    /// User of entry `i`. A search over the runs: a walk over the block uses
    /// `entry_from_run` (within the crate) or a user's range instead.
    pub fn user(&self, i: usize) -> Option<u64> {
        if i >= self.len() {
            return None;
        }
        self.run_of(i).and_then(|(run, _)| self.run_user(run))
    }

    /// Timestamp of entry `i`.
    pub fn ts(&self, i: usize) -> Option<i64> {
        self.ts.get(i).copied()
    }

    /// The entries of `user`; empty (at the position it would take) if the block has none.
    pub fn user_range(&self, user: u64) -> Range<usize> {
        let n = self.len();
        match &self.users {
            Users::One(only) if user < *only => 0..0,
            Users::One(only) if user == *only => 0..n,
            Users::One(_) => n..n,
            Users::Runs { users, ends } => {
                let run = lower_bound_u64(users, user);
                let start = self.run_start(run);
                match (users.get(run), ends.get(run)) {
                    (Some(&found), Some(&end)) if found == user => start..end as usize,
                    _ => start.min(n)..start.min(n),
                }
            }
        }
    }

    /// The entries of `user` with `lo <= ts <= hi`: one search for the user's run, then
    /// two within it (a reverse iterator's whole window in a block, found once).
    pub fn user_span(&self, user: u64, lo: i64, hi: i64) -> Range<usize> {
        let run = self.user_range(user);
        let Some(ts) = self.ts.get(run.clone()) else { return run.start..run.start };
        // "Latest N" reads whole runs (no time bounds): no search at all then.
        let first = if lo == i64::MIN { run.start } else { run.start + ts.partition_point(|&t| t < lo) };
        let end = if hi == i64::MAX { run.end } else { run.start + ts.partition_point(|&t| t <= hi) };
        first..end.max(first)
    }

    /// The first entry whose `(user, ts)` is at or after `(user, ts)`, whatever its seqno.
    pub fn lower_bound(&self, user: u64, ts: i64) -> usize {
        let range = self.user_range(user);
        let in_user = self.ts.get(range.clone()).map_or(0, |run| run.partition_point(|&t| t < ts));
        range.start + in_user
    }

    /// Bytes held, for a cache's budget.
    pub fn mem_size(&self) -> usize {
        let users = match &self.users {
            Users::One(_) => 0,
            Users::Runs { users, ends } => users.capacity() * 8 + ends.capacity() * 4,
        };
        let widths = match &self.widths {
            Widths::Fixed(_) => 0,
            Widths::Offsets(offsets) => offsets.capacity() * 4,
        };
        std::mem::size_of::<Self>()
            + users
            + self.ts.capacity() * 8
            + self.seqnos.heap_bytes()
            + self.kinds.heap_bytes()
            + widths
            + self.values.len()
    }

    /// Table order over the keys: (user, ts) ascending, seqno descending. Users ascend
    /// across runs by construction (the decoders refuse a gap of 0), so only the entries
    /// within each run are compared.
    pub(super) fn check_order(&self) -> Result<(), String> {
        let n = self.len();
        let ends: &[u32] = match &self.users {
            Users::One(_) => &[],
            Users::Runs { ends, .. } => ends,
        };
        let mut start = 0;
        for end in ends.iter().map(|&e| e as usize).chain((ends.is_empty()).then_some(n)) {
            let ts = self.ts.get(start..end).unwrap_or_default();
            check_run_order(ts, |i| self.seqnos.get(start + i))
                .map_err(|(a, b)| format!("entries {} and {} out of table order", start + a, start + b))?;
            start = end;
        }
        Ok(())
    }
}

/// Table order within one user's run: timestamps ascending, seqnos (`seqno(i)` of entry i)
/// descending at equal timestamps. The error names the first two entries out of order.
pub(super) fn check_run_order(
    ts: &[i64],
    seqno: impl Fn(usize) -> Option<u64>,
) -> Result<(), (usize, usize)> {
    for i in 1..ts.len() {
        let in_order = match ts[i - 1].cmp(&ts[i]) {
            std::cmp::Ordering::Less => true,
            std::cmp::Ordering::Equal => seqno(i - 1) > seqno(i),
            std::cmp::Ordering::Greater => false,
        };
        if !in_order {
            return Err((i - 1, i));
        }
    }
    Ok(())
}
