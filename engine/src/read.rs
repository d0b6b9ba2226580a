//! The read path: a [`ReadView`] (a pinned [`SuperVersion`] and a seqno) and the merge
//! that resolves one user's events from every source that may hold them.
//!
//! Sources are the memtables and the tables. Each is known by the time span it may hold
//! for the user (a memtable knows it exactly; a table by its footer's `min_ts..=max_ts`).
//! A read walks timestamps in one direction (newest first for `latest`, ascending for
//! `range` and `get`) and opens a source only once the walk reaches its span: a table is
//! opened (its user filter probed, its range deletes loaded, its iterator started) when
//! no event still pending can be newer than the table's newest. So `latest` reads the
//! memtables, then the newest partition's sequence tables newest-first together with the
//! unsequence tables that overlap them, then older partitions, and stops as soon as it has
//! its `n` events: the tables it never reached are never touched.
//!
//! Resolution, at the view's seqno `S`, for each timestamp met:
//! - of all versions stored at `(user, ts)` with seqno `<= S`, the newest wins;
//! - a winning delete, or a range delete with seqno `<= S` newer than the winner that
//!   covers `ts`, hides the event (`delete_user` is a range delete over all time);
//! - events older than the retention cutoff are never read (the span starts there).
//!
//! Invariant behind the lazy opening: every range delete that covers `ts` lies in a source
//! whose span contains `ts` (a table's span includes its range deletes), so it has been
//! loaded before any event at `ts` is resolved.

use std::cell::RefCell;
use std::collections::{BinaryHeap, VecDeque};
use std::ops::RangeBounds;
use std::sync::Arc;

use strata_sstable::{Entry, Kind, UserIter, UserRevIter};

use crate::batch::inclusive_bounds;
use crate::memtable::Memtable;
use crate::version::SuperVersion;
use crate::{Error, Event, Result};

/// Memtable entries fetched per step of a cursor: a step holds a shard lock briefly.
const MEM_CHUNK_REV: usize = 64;
const MEM_CHUNK_FWD: usize = 256;

/// A consistent view: the pinned memtables and tables, read at one seqno.
#[derive(Clone)]
pub(crate) struct ReadView {
    pub sv: Arc<SuperVersion>,
    pub seqno: u64,
    /// Oldest visible timestamp (retention); `i64::MIN` without retention.
    pub cutoff: i64,
    /// `Options::max_events_per_user`: only a user's newest this many events are visible.
    pub cap: Option<u64>,
}

impl ReadView {
    /// The event at `(user, ts)`, if one is visible.
    pub fn get(&self, user: u64, ts: i64) -> Result<Option<Event>> {
        if ts < self.cap_floor(user)? {
            return Ok(None);
        }
        Merge::new(self.clone(), user, ts, ts, Direction::Forward).step()
    }

    /// The newest `n` visible events of `user`, newest first.
    pub fn latest(&self, user: u64, n: usize) -> Result<Vec<Event>> {
        let mut out = Vec::with_capacity(self.capped(n).min(4096));
        self.latest_into(user, n, &mut out)?;
        Ok(out)
    }

    /// [`latest`](Self::latest), appended to `out`; on an error `out` is left as it was.
    pub fn latest_into(&self, user: u64, n: usize, out: &mut Vec<Event>) -> Result<()> {
        let n = self.capped(n);
        if n == 0 {
            return Ok(());
        }
        let start = out.len();
        let mut merge = Merge::new(self.clone(), user, i64::MIN, i64::MAX, Direction::Backward);
        let filled = merge.fill(start.saturating_add(n), out);
        if filled.is_err() {
            out.truncate(start);
        }
        filled
    }

    /// `n`, or fewer under the per-user cap.
    fn capped(&self, n: usize) -> usize {
        self.cap.map_or(n, |cap| n.min(usize::try_from(cap).unwrap_or(usize::MAX)))
    }

    /// The visible events of `user` in `range`, ascending, streamed.
    pub fn range(&self, user: u64, range: impl RangeBounds<i64>) -> Result<RangeIter> {
        let bounds = inclusive_bounds(&range)?;
        let merge = match bounds {
            Some((lo, hi)) => {
                let lo = lo.max(self.cap_floor(user)?);
                (lo <= hi).then(|| Merge::new(self.clone(), user, lo, hi, Direction::Forward))
            }
            None => None,
        };
        Ok(RangeIter { merge, ready: VecDeque::new(), failed: None })
    }

    /// Under the per-user cap, the ts of the user's oldest visible event (its newest
    /// `cap`-th): nothing older is visible. `i64::MIN` without a cap or with fewer events.
    /// A capped `get` or `range` pays for this `latest` read first.
    fn cap_floor(&self, user: u64) -> Result<i64> {
        let Some(cap) = self.cap else { return Ok(i64::MIN) };
        let cap = usize::try_from(cap).unwrap_or(usize::MAX);
        let newest = self.latest(user, cap)?;
        Ok(match newest.last() {
            Some(oldest) if newest.len() >= cap => oldest.ts,
            _ => i64::MIN,
        })
    }
}

/// The events of one user in a time range, ascending. Returned by `Db::range` and
/// `Snapshot::range`; it pins the tables it reads until dropped. After an error it ends.
///
/// It resolves `RANGE_CHUNK` (128) events at a time, so that while one source alone is in
/// reach its entries go straight from its cursor, without the merge heap (the fast lane
/// "latest" takes): a hot user's hour is thousands of events of one table. Memory stays
/// bounded by the chunk: the range is still streamed.
pub struct RangeIter {
    merge: Option<Merge>,
    /// Events resolved and not yet returned, ascending.
    ready: VecDeque<Event>,
    /// The error that ended the merge, returned after the events resolved before it.
    failed: Option<Error>,
}

/// Events a [`RangeIter`] resolves at a time.
const RANGE_CHUNK: usize = 128;

impl Iterator for RangeIter {
    type Item = Result<Event>;

    fn next(&mut self) -> Option<Result<Event>> {
        if self.ready.is_empty() {
            self.refill();
        }
        match self.ready.pop_front() {
            Some(event) => Some(Ok(event)),
            None => self.failed.take().map(Err),
        }
    }
}

impl RangeIter {
    /// Resolves the next chunk into `ready`; ends the merge once it runs dry or fails.
    fn refill(&mut self) {
        let Some(merge) = self.merge.as_mut() else { return };
        let mut out = Vec::from(std::mem::take(&mut self.ready));
        out.clear();
        match merge.fill(RANGE_CHUNK, &mut out) {
            // Fewer than asked: every source is exhausted.
            Ok(()) if out.len() == RANGE_CHUNK => {}
            Ok(()) => self.merge = None,
            Err(err) => {
                self.merge = None;
                self.failed = Some(err);
            }
        }
        self.ready = VecDeque::from(out);
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Direction {
    Forward,
    Backward,
}

enum Source {
    /// Index into the view's memtables, newest first.
    Mem(usize),
    /// Index into the view's tables by newest ts (`Version::by_max_ts`): no reference
    /// count is touched for the many tables a read never reaches.
    Table(usize),
}

/// A source not opened yet, with the span of timestamps it may hold for the user.
struct Candidate {
    source: Source,
    min_ts: i64,
    max_ts: i64,
}

/// An opened source, yielding the user's point entries (puts and deletes) in the merge's
/// direction; range deletes are read separately when the source is opened.
enum Cursor {
    Mem(MemCursor),
    Forward(UserIter),
    Backward(RevChunks),
}

/// A table's newest-first iterator read a chunk at a time ([`UserRevIter::next_chunk`]):
/// "latest N" pays per chunk, not per entry, for the block walk. The first chunk holds 128
/// entries, so "latest 100" of a frequent user takes one chunk: starting at 16 and doubling
/// took three, and on the standard data the larger first chunk gave 1.14x the queries/s and
/// 0.83x the p99 (`strata-bench engine --query-only`, medians of three alternating runs),
/// although a cold user has only a few events per table. Later chunks double. The first
/// chunk is smaller when the read wants fewer: the events it still lacks plus one, so
/// "latest 100" fetches 101 entries of a frequent user's table, not 128 (every entry
/// fetched clones a payload's `Bytes`, an atomic increment and, unused, a decrement): on
/// the settled standard data 1.10x the queries/s and 0.90x the p99, medians of three
/// alternating pairs of `strata-bench engine --query-only`.
struct RevChunks {
    iter: UserRevIter,
    /// The fetched entries not yet returned, in reverse: the next one is last.
    buf: Vec<Entry>,
    chunk: usize,
}

thread_local! {
    /// Chunk buffers of finished cursors, kept for this thread's next reads. A hot user's
    /// first chunk is 101 entries (6.5 KB): above malloc's per-thread cache, so each was a
    /// trip into the arena, and in a process whose arenas were fragmented by ingest and
    /// compaction (the benchmark's query threads inherit one) `_int_malloc` took 11% of a
    /// reader's time in the standard run, against 3% in a fresh process.
    static SPARE_CHUNKS: RefCell<Vec<Vec<Entry>>> = const { RefCell::new(Vec::new()) };
}

/// Buffers kept per thread: a read opens a cursor per table it reaches (a cold user's reads
/// two or three at once).
const SPARE_CHUNKS_MAX: usize = 4;

impl RevChunks {
    const FIRST_CHUNK: usize = 128;
    const MAX_CHUNK: usize = 512;

    fn new(iter: UserRevIter, wanted: usize) -> RevChunks {
        let chunk = wanted.clamp(1, Self::FIRST_CHUNK);
        // `try_with`: a cursor may live in a thread-local being torn down.
        let buf = SPARE_CHUNKS.try_with(|spare| spare.borrow_mut().pop()).ok().flatten().unwrap_or_default();
        RevChunks { iter, buf, chunk }
    }

    fn next(&mut self, failure: &mut Option<Error>) -> Option<Entry> {
        if let Some(entry) = self.buf.pop() {
            return Some(entry);
        }
        // `next_chunk` reserves room for what each block adds: a cold user's table gives
        // 1-3 entries, and a fresh buffer of `chunk` (128 entries, 8 KB) per table opened
        // was a large malloc each.
        if let Err(err) = self.iter.next_chunk(self.chunk, &mut self.buf) {
            // Entries of the blocks before the failing one may be in `buf`: the read ends
            // with the error, and none of them is ever returned.
            self.buf.clear();
            *failure = Some(err.into());
            return None;
        }
        self.chunk = (self.chunk * 2).min(Self::MAX_CHUNK);
        self.buf.reverse();
        self.buf.pop()
    }
}

impl Drop for RevChunks {
    fn drop(&mut self) {
        let mut buf = std::mem::take(&mut self.buf);
        // Unreturned entries hold payloads (`Bytes` of cached blocks): dropped here, not kept.
        buf.clear();
        if buf.capacity() > 0 && buf.capacity() <= Self::MAX_CHUNK {
            // During thread teardown there is nowhere to keep it: it is freed.
            let _ = SPARE_CHUNKS.try_with(|spare| {
                let mut spare = spare.borrow_mut();
                if spare.len() < SPARE_CHUNKS_MAX {
                    spare.push(buf);
                }
            });
        }
    }
}

/// A memtable's entries of one user, fetched a chunk at a time under the shard lock.
struct MemCursor {
    mem: Arc<Memtable>,
    user: u64,
    lo: i64,
    hi: i64,
    forward: bool,
    buf: std::vec::IntoIter<Entry>,
    /// Key of the last entry fetched: where the next chunk starts.
    last: Option<(i64, u64)>,
    done: bool,
}

impl MemCursor {
    fn next(&mut self) -> Option<Entry> {
        if let Some(entry) = self.buf.next() {
            return Some(entry);
        }
        if self.done {
            return None;
        }
        let mut chunk = Vec::new();
        let (limit, fetched) = if self.forward {
            let n = self.mem.scan(self.user, self.last, self.lo, self.hi, MEM_CHUNK_FWD, &mut chunk);
            (MEM_CHUNK_FWD, n)
        } else {
            let n = self.mem.scan_rev(self.user, self.last, self.lo, self.hi, MEM_CHUNK_REV, &mut chunk);
            (MEM_CHUNK_REV, n)
        };
        self.done = fetched < limit;
        self.last = chunk.last().map(|e| (e.ts, e.seqno));
        self.buf = chunk.into_iter();
        self.buf.next()
    }
}

impl Cursor {
    /// The next point entry (range deletes are skipped: they are read when the source is
    /// opened). An error ends the walk and is left in `failure`: entries move through the
    /// merge as plain `Option`s, which keeps a large error type off the per-entry path.
    fn next(&mut self, failure: &mut Option<Error>) -> Option<Entry> {
        loop {
            let entry = match self {
                Cursor::Mem(mem) => mem.next(),
                Cursor::Backward(chunks) => chunks.next(failure),
                Cursor::Forward(iter) => match iter.next()? {
                    Ok(entry) => Some(entry),
                    Err(err) => {
                        *failure = Some(err.into());
                        None
                    }
                },
            };
            match entry {
                Some(e) if e.kind == Kind::RangeDelete => continue,
                other => return other,
            }
        }
    }
}

/// A cursor in the merge heap: `(key, cursor)`, where `key` is its head entry's timestamp
/// turned so that the next one to resolve is the largest. The entry itself stays in
/// `Merge::heads`: the heap moves 16 bytes per step, not a whole entry.
type Head = (i64, usize);

/// The lazy k-way merge of one user's sources; see the module doc.
struct Merge {
    view: ReadView,
    user: u64,
    lo: i64,
    hi: i64,
    direction: Direction,
    /// Unopened sources; `pop` gives the next one the walk reaches.
    pending: Vec<Candidate>,
    cursors: Vec<Cursor>,
    /// The next entry of each cursor, if it has one; `heap` orders them.
    heads: Vec<Option<Entry>>,
    heap: BinaryHeap<Head>,
    /// Range deletes of the user visible at the view's seqno, from the opened sources.
    range_deletes: Vec<Entry>,
    /// Entries a newly opened newest-first table cursor fetches first: one more than the
    /// events `fill` still wants (the one more tells where the wanted ones end).
    wanted: usize,
}

/// The buffers of a finished [`Merge`], kept for this thread's next read. "Latest" of a user
/// with few events walks every table of the view: grown afresh, `pending` took about seven
/// reallocations per read at a hundred tables, and `cursors`, `heads` and the heap as many
/// again for the forty tables that hold the user. Each is a trip into the allocator, whose
/// arena lock the compaction thread also takes when it frees blocks this thread decoded.
#[derive(Default)]
struct MergeBuffers {
    pending: Vec<Candidate>,
    cursors: Vec<Cursor>,
    heads: Vec<Option<Entry>>,
    heap: Vec<Head>,
    range_deletes: Vec<Entry>,
}

thread_local! {
    static SPARE_MERGE: RefCell<Option<MergeBuffers>> = const { RefCell::new(None) };
}

/// Buffers of more entries than this are freed rather than kept: one read of a huge view
/// should not pin its size in every reading thread. A thread keeps at most about 1 MiB
/// (4,096 sources of 32 + 120 + 64 + 16 bytes: candidate, cursor, head, heap slot), in
/// practice 32 bytes per table of the view and a few cursors; a view of more tables (256 GiB
/// of 64 MiB tables) allocates per read, as before.
const SPARE_MERGE_MAX: usize = 1 << 12;

impl Drop for Merge {
    fn drop(&mut self) {
        // Emptied first: the cursors hand their chunk buffers back to `SPARE_CHUNKS`, and the
        // entries drop their payloads, before this thread's spare slot is borrowed.
        let mut spare = MergeBuffers {
            pending: std::mem::take(&mut self.pending),
            cursors: std::mem::take(&mut self.cursors),
            heads: std::mem::take(&mut self.heads),
            heap: std::mem::take(&mut self.heap).into_vec(),
            range_deletes: std::mem::take(&mut self.range_deletes),
        };
        spare.pending.clear();
        spare.cursors.clear();
        spare.heads.clear();
        spare.heap.clear();
        spare.range_deletes.clear();
        let largest = [
            spare.pending.capacity(),
            spare.cursors.capacity(),
            spare.heads.capacity(),
            spare.heap.capacity(),
            spare.range_deletes.capacity(),
        ];
        if largest.iter().all(|&capacity| capacity <= SPARE_MERGE_MAX) {
            // During thread teardown, or while a merge of this thread is being built, there is
            // nowhere to keep them: they are freed.
            let _ = SPARE_MERGE.try_with(|slot| {
                if let Ok(mut slot) = slot.try_borrow_mut() {
                    *slot = Some(spare);
                }
            });
        }
    }
}

impl Merge {
    fn new(view: ReadView, user: u64, lo: i64, hi: i64, direction: Direction) -> Merge {
        let lo = lo.max(view.cutoff);
        let spare = SPARE_MERGE.try_with(|slot| slot.try_borrow_mut().ok().and_then(|mut s| s.take()));
        let MergeBuffers { mut pending, cursors, heads, heap, range_deletes } =
            spare.ok().flatten().unwrap_or_default();
        // Emptied when kept; `pending` again here, as the one a stale entry would not break
        // loudly (the merge folds a source read twice into one).
        pending.clear();
        pending.reserve(view.sv.version.by_max_ts.len() + view.sv.memtables().count());
        if lo <= hi {
            // Tables oldest-newest first, so that a newest-first walk needs no sort.
            for (i, table) in view.sv.version.by_max_ts.iter().enumerate().rev() {
                let r = &table.record;
                if r.min_ts <= hi && lo <= r.max_ts {
                    pending.push(Candidate { source: Source::Table(i), min_ts: r.min_ts, max_ts: r.max_ts });
                }
            }
            for (i, mem) in view.sv.memtables().enumerate() {
                if let Some((min_ts, max_ts)) = mem.user_bounds(user) {
                    if min_ts <= hi && lo <= max_ts {
                        let at = pending.partition_point(|c| c.max_ts <= max_ts);
                        pending.insert(at, Candidate { source: Source::Mem(i), min_ts, max_ts });
                    }
                }
            }
        }
        // `pop` takes from the end: the source the walk reaches first goes last.
        if direction == Direction::Forward {
            pending.sort_by_key(|c| std::cmp::Reverse(c.min_ts));
        }
        Merge {
            view,
            user,
            lo,
            hi,
            direction,
            pending,
            cursors,
            heads,
            heap: BinaryHeap::from(heap),
            range_deletes,
            wanted: RevChunks::FIRST_CHUNK,
        }
    }

    fn key(&self, ts: i64) -> i64 {
        match self.direction {
            Direction::Backward => ts,
            // Bitwise not reverses the order of i64 without overflow.
            Direction::Forward => !ts,
        }
    }

    /// The timestamp of the entry at the heap's top.
    fn top_ts(&self) -> Option<i64> {
        let &(_, cursor) = self.heap.peek()?;
        self.heads[cursor].as_ref().map(|e| e.ts)
    }

    /// Whether the next unopened source may hold an event at or beyond the heap's top.
    fn must_open_next(&self) -> bool {
        let Some(next) = self.pending.last() else { return false };
        match self.top_ts() {
            None => true,
            Some(ts) => match self.direction {
                Direction::Backward => next.max_ts >= ts,
                Direction::Forward => next.min_ts <= ts,
            },
        }
    }

    fn open(&mut self, candidate: Candidate) -> Result<()> {
        let (user, lo, hi, seqno) = (self.user, self.lo, self.hi, self.view.seqno);
        let forward = self.direction == Direction::Forward;
        let mut deletes = Vec::new();
        let cursor = match candidate.source {
            Source::Mem(i) => {
                let Some(mem) = self.view.sv.memtables().nth(i).map(Arc::clone) else { return Ok(()) };
                mem.range_deletes(user, &mut deletes);
                Cursor::Mem(MemCursor {
                    mem,
                    user,
                    lo,
                    hi,
                    forward,
                    buf: Vec::new().into_iter(),
                    last: None,
                    done: false,
                })
            }
            Source::Table(i) => {
                let Some(table) = self.view.sv.version.by_max_ts.get(i) else { return Ok(()) };
                if !table.table.may_contain_user(user) {
                    return Ok(());
                }
                deletes = table.table.range_deletes(user)?;
                if forward {
                    Cursor::Forward(table.table.user_range(user, lo, hi))
                } else {
                    Cursor::Backward(RevChunks::new(table.table.user_range_rev(user, lo, hi), self.wanted))
                }
            }
        };
        self.range_deletes.extend(
            deletes
                .into_iter()
                .filter(|d| d.seqno <= seqno && d.ts <= hi && d.range_last().is_some_and(|last| lo <= last)),
        );
        self.cursors.push(cursor);
        self.heads.push(None);
        self.advance(self.cursors.len() - 1)
    }

    /// Loads the next entry of cursor `i` and puts it on the heap.
    fn advance(&mut self, i: usize) -> Result<()> {
        let mut failure = None;
        let next = self.cursors[i].next(&mut failure);
        if let Some(err) = failure {
            return Err(err);
        }
        if let Some(entry) = &next {
            self.heap.push((self.key(entry.ts), i));
        }
        self.heads[i] = next;
        Ok(())
    }

    /// Takes the head entry of the cursor at the heap's top and advances that cursor.
    fn pop(&mut self) -> Result<Option<Entry>> {
        let Some((_, cursor)) = self.heap.pop() else { return Ok(None) };
        let entry = self.heads[cursor].take();
        self.advance(cursor)?;
        Ok(entry)
    }

    /// Opens every unopened source that may hold an entry at or beyond the heap's top.
    fn open_reachable(&mut self) -> Result<()> {
        while self.must_open_next() {
            if let Some(candidate) = self.pending.pop() {
                self.open(candidate)?;
            }
        }
        Ok(())
    }

    fn step(&mut self) -> Result<Option<Event>> {
        loop {
            self.open_reachable()?;
            let Some(first) = self.pop()? else { return Ok(None) };
            let ts = first.ts;
            // Every version at `ts` is at the top now: gather them and keep the newest
            // visible one.
            let mut best: Option<Entry> = None;
            let mut next = Some(first);
            while let Some(entry) = next {
                if entry.seqno <= self.view.seqno && best.as_ref().is_none_or(|b| entry.seqno > b.seqno) {
                    best = Some(entry);
                }
                next = if self.top_ts() == Some(ts) { self.pop()? } else { None };
            }
            let Some(best) = best else { continue };
            if best.kind != Kind::Put || self.range_deleted(&best) {
                continue;
            }
            return Ok(Some(Event { user: self.user, ts, payload: best.value }));
        }
    }

    /// Appends events to `out` until it holds `n` or the sources run dry.
    ///
    /// The fast lane of "latest N" and of a range's chunks: while one source alone is open,
    /// no range delete is in play and no unopened source can hold its next entry, that
    /// source's entries are resolved straight from its cursor, without the heap. Once an
    /// unopened source comes within reach, [`Merge::step`] takes over and opens it.
    fn fill(&mut self, n: usize, out: &mut Vec<Event>) -> Result<()> {
        while out.len() < n {
            self.wanted = (n - out.len()).saturating_add(1);
            self.open_reachable()?;
            if self.heap.len() == 1 && self.range_deletes.is_empty() {
                let bound = self.pending.last().map(|c| match self.direction {
                    Direction::Backward => c.max_ts,
                    Direction::Forward => c.min_ts,
                });
                self.drain_single(bound, n, out)?;
                continue;
            }
            match self.step()? {
                Some(event) => out.push(event),
                None => break,
            }
        }
        Ok(())
    }

    /// Resolves the one open cursor's entries short of `bound` (the ts at which the next
    /// unopened source begins, in the walk's direction) into `out`, up to `n`; see
    /// [`Merge::fill`].
    fn drain_single(&mut self, bound: Option<i64>, n: usize, out: &mut Vec<Event>) -> Result<()> {
        let Some((_, c)) = self.heap.pop() else { return Ok(()) };
        let mut head = self.heads[c].take();
        let mut failure = None;
        let direction = self.direction;
        let reached = |ts: i64| {
            bound.is_some_and(|b| match direction {
                Direction::Backward => ts <= b,
                Direction::Forward => ts >= b,
            })
        };
        while let Some(entry) = head {
            if out.len() >= n || reached(entry.ts) {
                self.heap.push((self.key(entry.ts), c));
                self.heads[c] = Some(entry);
                return Ok(());
            }
            // In either order a key's versions are adjacent.
            let ts = entry.ts;
            let mut next = self.cursors[c].next(&mut failure);
            if next.as_ref().is_none_or(|e| e.ts != ts) {
                // The common case, one version: decided without moving the entry again. Each
                // move of an `Option<Entry>` copied its padding with overlapping loads that
                // stalled on store forwarding, and the general loop below made three: 70% of
                // this function's time in the query-only profile.
                if failure.is_none() && entry.seqno <= self.view.seqno && entry.kind == Kind::Put {
                    out.push(Event { user: self.user, ts, payload: entry.value });
                }
            } else {
                let mut best = (entry.seqno <= self.view.seqno).then_some(entry);
                while let Some(version) = next.take_if(|e| e.ts == ts) {
                    if version.seqno <= self.view.seqno
                        && best.as_ref().is_none_or(|b| version.seqno > b.seqno)
                    {
                        best = Some(version);
                    }
                    next = self.cursors[c].next(&mut failure);
                }
                if let Some(best) = best.filter(|b| b.kind == Kind::Put && failure.is_none()) {
                    out.push(Event { user: self.user, ts, payload: best.value });
                }
            }
            if let Some(err) = failure {
                return Err(err);
            }
            head = next;
        }
        Ok(())
    }

    fn range_deleted(&self, entry: &Entry) -> bool {
        self.range_deletes.iter().any(|d| {
            d.seqno > entry.seqno && d.ts <= entry.ts && d.range_last().is_some_and(|last| entry.ts <= last)
        })
    }
}
