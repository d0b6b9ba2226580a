//! The executor: a k-way merge of a plan's input tables, then the rules that decide what a
//! rewrite keeps, then the table builder(s).
//!
//! [`compact`] owns one rewrite of tables of one partition. It reads them through the k-way
//! `Merge` in table order (user asc, ts asc, seqno desc), one key `(user, ts)` at a time,
//! gives every entry exactly one fate (written, or counted under one reason in
//! [`Compacted`]), and writes what it keeps, still in table order, into tables it asks
//! [`Hooks::new_table`] for.
//!
//! # Views
//! A reader at seqno `b` resolves a key from its *candidates*: the key's point versions
//! (puts and deletes) and the range deletes of its user whose span holds its ts. The
//! candidate with the highest seqno `<= b` is *visible*; the reader sees an event iff that is
//! a put (and its ts is not expired). A rewrite keeps the views `B` = the live snapshots plus
//! the present, `+∞`: a snapshot taken later reads like the present, since every later write
//! carries a higher seqno than every input entry. `b0` is the lowest bound of `B`.
//!
//! # The rules, and why each only drops what no reader sees
//! 1. **Versions.** A point version is kept iff it is visible at some bound of `B`. One
//!    visible at none is, at each bound, either newer than it or hidden by a newer candidate
//!    of the inputs that stays (a visible point version is kept; a range delete stays
//!    whenever it hides something, rule 2). Tables outside the inputs only hold older
//!    versions (lower seqnos), which never hide an input version.
//! 2. **Tombstones.** Only a bottommost rewrite drops them: otherwise an older version of the
//!    key may lie in a table outside the inputs, and the tombstone is what hides it. When
//!    bottommost, a kept point delete with no older kept version of its key hides nothing
//!    (below it a view finds another tombstone or nothing), and a range delete stays only
//!    while some kept put of its span has a lower seqno: such a put is the only thing a
//!    view could wrongly see without it.
//! 3. **Retention.** Point entries with `ts < cutoff`, and range deletes ending before it,
//!    are dropped whatever the snapshots: reads already hide every ts below the cutoff.
//! 4. **The per-user cap** applies only to a bottommost rewrite with no live snapshot. On a
//!    user's first entry, [`Hooks::cap_floor`] gives its *floor*: the ts of the user's
//!    `cap`-th newest event visible now, as the engine's read path sees it (every memtable
//!    and table, so a newer delete of an input key outside the inputs counts too). Every
//!    entry of the user below the floor is dropped, puts and point deletes alike, and so is
//!    a range delete whose span ends below it; one reaching the floor or above is decided
//!    by rule 2, and entries at or above the floor by the other rules. When the floor was
//!    computed, every event below it was past the cap, so reads already hid it; bottommost,
//!    no older version lies outside the inputs for a dropped tombstone to have hidden; and
//!    with no snapshot the present is the only view to keep. With a snapshot live (or not
//!    bottommost, or no floor), the cap drops nothing: a live snapshot holds the cap's purge
//!    back, as it does an erasure's, and reads apply the cap anyway. Caveat: the cap is
//!    final. Once it has dropped a user's older events, a later delete among the newest
//!    `cap` does not bring them back; the user just has fewer than `cap` events.
//! 5. **Seqno zeroing.** Bottommost with no snapshot, kept puts are written with seqno 0,
//!    which costs nothing in a table. Then the only view is the present, so rule 1 keeps
//!    one version per key and rule 2 drops every tombstone (a kept put is its key's newest
//!    candidate, above any range delete covering it): no two entries share a key. Nothing
//!    older lies outside the inputs, and every later write, put or delete, has a higher
//!    seqno than 0 and still wins over the zeroed put.
//!
//! # Memory
//! The rewrite streams: it holds one key's entries and the range deletes of the current
//! user whose span has not ended. One rule needs more. Bottommost, a range delete is written
//! before the keys of its span, yet decided by them: the output from an undecided range
//! delete on is held back until a kept put under it keeps it or its span ends (at worst one
//! user's kept entries). The cap buffers nothing: its floor is known from the user's first
//! entry on.
//!
//! # Output and errors
//! Outputs are cut at user boundaries: once the current table's written bytes reach the
//! target, the next user starts a new table, so a user's entries (its range deletes
//! included) lie in one output. The written bytes count finished data blocks only, so a
//! table passes its target by up to a block and one user. [`Hooks::written`] hears about
//! the bytes every [`REPORT_EVERY_ENTRIES`] entries and at each finish.
//!
//! A read error, a damaged input, or a builder error aborts the rewrite: the open builder
//! is abandoned (its temporary file removed, best effort; a builder whose `finish` failed
//! leaves its `.sst.tmp` for the engine's next open to remove), and the error returned.
//! Tables already finished stay as files: the caller named them in `new_table`, so it
//! removes them by name, and keeps the inputs. Nothing here panics on data: a broken input
//! invariant (two entries with one key) reaches the builder, which refuses it as an error.

use std::collections::VecDeque;

use strata_sstable::{Entry, Kind, Table, TableBuilder, TableStats};

use crate::merge::Merge;
use crate::Result;

/// Entries written between two calls of [`Hooks::written`], so that a rate limiter sleeps
/// in small steps.
const REPORT_EVERY_ENTRIES: u32 = 256;

/// What a rewrite may drop. Every rule only drops what no reader can see.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rules {
    /// Seqnos of live snapshots, ascending: each keeps seeing what it saw.
    pub snapshots: Vec<u64>,
    /// Entries with a ts below this are expired (retention) and dropped.
    pub retention_cutoff: Option<i64>,
    /// Nothing older than the inputs lies outside them (see `Merge::bottommost`).
    pub bottommost: bool,
    /// Per-user cap: keep at most this many of each user's newest events.
    pub max_events_per_user: Option<u64>,
}

/// Callbacks of one execution, supplied by the engine.
pub struct Hooks<'a> {
    /// Starts the next output table (the engine names it and records its number).
    pub new_table: &'a mut dyn FnMut() -> Result<TableBuilder>,
    /// Called with the bytes written since the last call (the I/O rate limit sleeps here).
    pub written: &'a mut dyn FnMut(u64),
    /// For the per-user cap: the ts of the user's k-th newest event visible now (through
    /// the engine's read path, which sees every memtable and table), or `None` if the user
    /// has fewer than k visible events. Every event of the user older than it is past the
    /// cap. Asked once per user, on its first entry, and only when the cap applies
    /// (bottommost, no live snapshot).
    pub cap_floor: &'a mut dyn FnMut(u64) -> Option<i64>,
}

/// What an execution did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Compacted {
    /// The output tables, in the order `new_table` made them.
    pub outputs: Vec<TableStats>,
    /// Bytes of the input files.
    pub bytes_read: u64,
    /// Bytes of the output files.
    pub bytes_written: u64,
    /// Entries read.
    pub entries_read: u64,
    /// Entries written.
    pub entries_written: u64,
    /// Versions dropped because a newer one hides them from every reader.
    pub dropped_versions: u64,
    /// Point and range deletes dropped because nothing lies under them any more.
    pub dropped_tombstones: u64,
    /// Entries dropped by retention.
    pub expired: u64,
    /// Events dropped by the per-user cap.
    pub capped: u64,
}

impl Compacted {
    /// Entries read that were not written, whatever the reason.
    fn dropped(&self) -> u64 {
        self.dropped_versions + self.dropped_tombstones + self.expired + self.capped
    }
}

/// Merges `inputs` (tables of one partition), applies `rules`, and writes the result into
/// tables cut at user boundaries once they reach `target_table_bytes`; see the module doc.
///
/// Makes no table when nothing is kept. On error, the table being built is abandoned and
/// the tables already finished are left for the caller to remove (it named them).
pub fn compact(
    inputs: &[Table],
    rules: &Rules,
    target_table_bytes: u64,
    hooks: &mut Hooks<'_>,
) -> Result<Compacted> {
    let mut rewrite = Rewrite::new(rules, target_table_bytes);
    rewrite.done.bytes_read = inputs.iter().map(|table| table.stats().file_bytes).sum();
    let result = rewrite.run(inputs, hooks);
    let result = result.and_then(|()| rewrite.output.finish(hooks, &mut rewrite.done));
    if let Err(err) = result {
        rewrite.output.abandon();
        return Err(err);
    }
    let done = rewrite.done;
    debug_assert_eq!(done.entries_read, done.entries_written + done.dropped(), "every entry has one fate");
    debug_assert_eq!(done.bytes_written, done.outputs.iter().map(|t| t.file_bytes).sum::<u64>());
    Ok(done)
}

/// The fate of one entry of a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fate {
    /// Dropped (and counted).
    Drop,
    /// Written.
    Keep,
    /// A range delete, written if its decision (by id) says so.
    Range(usize),
}

/// A range delete of the current user whose span has not ended: a candidate of every key
/// the rewrite reaches until its `last`.
#[derive(Clone, Copy, Debug)]
struct Range {
    last: i64,
    seqno: u64,
    /// Its index in `UserState::range_kept`.
    id: usize,
}

/// An entry waiting for its turn in the output.
#[derive(Debug)]
struct Queued {
    entry: Entry,
    /// For a range delete, its id: it waits until decided, and so does everything after it.
    range: Option<usize>,
}

/// What the rewrite holds of the user it is in.
#[derive(Debug)]
struct UserState {
    id: u64,
    /// The range deletes whose span reaches the current key: each covers it.
    ranges: Vec<Range>,
    /// Whether each range delete of the user is kept, by id; `None` until decided.
    range_kept: Vec<Option<bool>>,
    /// Kept entries not yet written, in table order.
    queue: VecDeque<Queued>,
    /// The cap's floor for this user: its entries below it are capped (`None`: nothing).
    floor: Option<i64>,
}

impl UserState {
    /// Whether the cap drops an entry of this user whose ts (or span's last ts) is `ts`.
    fn capped(&self, ts: i64) -> bool {
        self.floor.is_some_and(|floor| ts < floor)
    }
}

/// One execution: the rules in force, the current user, the output, the counters.
struct Rewrite<'r> {
    rules: &'r Rules,
    /// The bounds of the views to keep, ascending and distinct; the last is `u64::MAX`.
    bounds: Vec<u64>,
    /// The per-user cap applies (bottommost, no snapshot): [`Hooks::cap_floor`] is asked.
    capping: bool,
    /// Kept puts are written with seqno 0 (bottommost, no snapshot).
    zero_seqnos: bool,
    user: UserState,
    output: Output,
    done: Compacted,
}

impl<'r> Rewrite<'r> {
    fn new(rules: &'r Rules, target_table_bytes: u64) -> Self {
        let mut bounds = rules.snapshots.clone();
        bounds.push(u64::MAX);
        bounds.sort_unstable();
        bounds.dedup();
        let user = UserState {
            id: 0,
            ranges: Vec::new(),
            range_kept: Vec::new(),
            queue: VecDeque::new(),
            floor: None,
        };
        Rewrite {
            rules,
            bounds,
            capping: rules.max_events_per_user.is_some() && rules.bottommost && rules.snapshots.is_empty(),
            zero_seqnos: rules.bottommost && rules.snapshots.is_empty(),
            user,
            output: Output::new(target_table_bytes),
            done: Compacted::default(),
        }
    }

    /// Reads every key of the inputs and gives each entry its fate.
    fn run(&mut self, inputs: &[Table], hooks: &mut Hooks<'_>) -> Result<()> {
        let mut keys = Keys { merge: Merge::new(inputs)?, peeked: None };
        let mut key = Vec::new();
        let mut in_user = false;
        while keys.next_key(&mut key)? {
            self.done.entries_read += key.len() as u64;
            let user = key[0].user;
            if !in_user || user != self.user.id {
                if in_user {
                    self.end_user(hooks)?;
                }
                self.user.id = user;
                self.user.floor = if self.capping { (hooks.cap_floor)(user) } else { None };
                in_user = true;
            }
            self.key(&key, hooks)?;
        }
        if in_user {
            self.end_user(hooks)?;
        }
        Ok(())
    }

    /// Finishes the current user: drops the range deletes still undecided and writes what
    /// is left of it.
    fn end_user(&mut self, hooks: &mut Hooks<'_>) -> Result<()> {
        self.retire_ranges(None);
        self.flush(hooks)?;
        debug_assert!(self.user.queue.is_empty(), "every range delete is decided at its user's end");
        self.user.range_kept.clear();
        self.user.floor = None;
        Ok(())
    }

    /// Decides every entry of one key (all of one `(user, ts)`, in table order) and queues
    /// the kept ones.
    fn key(&mut self, key: &[Entry], hooks: &mut Hooks<'_>) -> Result<()> {
        if let [entry] = key {
            if entry.kind != Kind::RangeDelete && self.user.ranges.is_empty() && self.user.queue.is_empty() {
                return self.lone_point(entry, hooks);
            }
        }
        let ts = key[0].ts;
        self.retire_ranges(Some(ts));
        // The key's own range deletes first: they start here, so they are candidates too.
        let mut fates: Vec<Fate> = key
            .iter()
            .map(|entry| if entry.kind == Kind::RangeDelete { self.range_delete(entry) } else { Fate::Drop })
            .collect();
        self.point_versions(key, &mut fates);
        for (entry, fate) in key.iter().zip(fates) {
            let queued = match fate {
                Fate::Drop => continue,
                Fate::Keep if self.zero_seqnos && entry.kind == Kind::Put => {
                    Queued { entry: Entry { seqno: 0, ..entry.clone() }, range: None }
                }
                Fate::Keep => Queued { entry: entry.clone(), range: None },
                Fate::Range(id) => Queued { entry: entry.clone(), range: Some(id) },
            };
            self.user.queue.push_back(queued);
        }
        self.flush(hooks)
    }

    /// [`key`](Self::key) for the common case, without its per-key vectors: a key of one
    /// put or point delete, no range delete covering it, nothing queued before it. The rules
    /// reduce to: retention and the cap drop it; a lone version is visible to every view
    /// (it is the newest of its stripe); a tombstone with nothing under it goes when
    /// bottommost; anything else is written at once.
    fn lone_point(&mut self, entry: &Entry, hooks: &mut Hooks<'_>) -> Result<()> {
        if self.rules.retention_cutoff.is_some_and(|cutoff| entry.ts < cutoff) {
            self.done.expired += 1;
            return Ok(());
        }
        if self.user.capped(entry.ts) {
            self.done.capped += 1;
            return Ok(());
        }
        if self.rules.bottommost && entry.kind == Kind::Delete {
            self.done.dropped_tombstones += 1;
            return Ok(());
        }
        if self.zero_seqnos && entry.kind == Kind::Put && entry.seqno != 0 {
            let settled = Entry { seqno: 0, ..entry.clone() };
            return self.output.write(&settled, hooks, &mut self.done);
        }
        self.output.write(entry, hooks, &mut self.done)
    }

    /// Registers a range delete as a candidate of the keys of its span, unless retention
    /// or the cap drop it (rules 3 and 4). Not bottommost, it is kept at once (rule 2).
    fn range_delete(&mut self, entry: &Entry) -> Fate {
        // A range delete without a valid end is refused by the builder if it is kept.
        let last = entry.range_last().unwrap_or(entry.ts);
        if self.rules.retention_cutoff.is_some_and(|cutoff| last < cutoff) {
            self.done.expired += 1;
            return Fate::Drop;
        }
        if self.user.capped(last) {
            self.done.capped += 1;
            return Fate::Drop;
        }
        let id = self.user.range_kept.len();
        self.user.range_kept.push(if self.rules.bottommost { None } else { Some(true) });
        self.user.ranges.push(Range { last, seqno: entry.seqno, id });
        Fate::Range(id)
    }

    /// Decides the point versions of a key (rules 1 to 4) into `fates`, and keeps the range
    /// deletes that hide a kept put.
    fn point_versions(&mut self, key: &[Entry], fates: &mut [Fate]) {
        let points: Vec<usize> = (0..key.len()).filter(|&i| key[i].kind != Kind::RangeDelete).collect();
        let ts = key[0].ts;
        if self.rules.retention_cutoff.is_some_and(|cutoff| ts < cutoff) {
            self.done.expired += points.len() as u64;
            return;
        }
        if self.user.capped(ts) {
            self.done.capped += points.len() as u64;
            return;
        }
        let seqnos: Vec<u64> = points.iter().map(|&i| key[i].seqno).collect();
        let visible = visible_versions(&self.bounds, &seqnos, self.user.ranges.iter().map(|r| r.seqno));
        // Oldest first, so that a delete knows whether a kept version lies below it.
        let mut older_kept = false;
        for (&i, visible) in points.iter().zip(visible).rev() {
            let entry = &key[i];
            if !visible {
                self.done.dropped_versions += 1;
            } else if self.rules.bottommost && entry.kind == Kind::Delete && !older_kept {
                self.done.dropped_tombstones += 1;
            } else {
                fates[i] = Fate::Keep;
                older_kept = true;
                if entry.kind == Kind::Put {
                    self.keep_ranges_over(entry.seqno);
                }
            }
        }
    }

    /// A put with `seqno` is kept at the current key: every range delete covering it with a
    /// higher seqno hides it from some view, and stays.
    fn keep_ranges_over(&mut self, seqno: u64) {
        for range in self.user.ranges.iter().filter(|r| r.seqno > seqno) {
            self.user.range_kept[range.id].get_or_insert(true);
        }
    }

    /// Forgets the range deletes whose span ends before `ts` (all, for `None`); one still
    /// undecided hid no kept put and is dropped.
    fn retire_ranges(&mut self, ts: Option<i64>) {
        let range_kept = &mut self.user.range_kept;
        let done = &mut self.done;
        self.user.ranges.retain(|range| {
            let ended = ts.is_none_or(|ts| range.last < ts);
            if ended && range_kept[range.id].is_none() {
                range_kept[range.id] = Some(false);
                done.dropped_tombstones += 1;
            }
            !ended
        });
    }

    /// Writes the queued entries up to the first undecided range delete.
    fn flush(&mut self, hooks: &mut Hooks<'_>) -> Result<()> {
        while let Some(front) = self.user.queue.front() {
            let keep = match front.range {
                None => true,
                Some(id) => match self.user.range_kept[id] {
                    None => break,
                    Some(keep) => keep,
                },
            };
            let Some(queued) = self.user.queue.pop_front() else { break };
            if keep {
                self.output.write(&queued.entry, hooks, &mut self.done)?;
            }
        }
        Ok(())
    }
}

/// Rule 1: which of a key's point versions (`seqnos`, any order) some view sees, given the
/// seqnos of the range deletes covering the key and the view `bounds` (ascending, the last
/// `u64::MAX`).
///
/// The views that can see a candidate with seqno `s` are the bounds `>= s`; the lowest of
/// them sees it unless a newer candidate is also at or below it, and the higher ones see
/// nothing older than what the lowest sees. So a candidate is visible iff it is the newest
/// of its *stripe*, the candidates whose lowest bound `>= seqno` is the same.
fn visible_versions(bounds: &[u64], seqnos: &[u64], ranges: impl Iterator<Item = u64>) -> Vec<bool> {
    let points = seqnos.iter().enumerate().map(|(i, &seqno)| (seqno, Some(i)));
    let mut candidates: Vec<(u64, Option<usize>)> = points.chain(ranges.map(|seqno| (seqno, None))).collect();
    candidates.sort_unstable_by_key(|&(seqno, _)| std::cmp::Reverse(seqno));
    let mut visible = vec![false; seqnos.len()];
    let mut newer_stripe = None;
    for (seqno, point) in candidates {
        let stripe = bounds.partition_point(|&bound| bound < seqno);
        if newer_stripe != Some(stripe) {
            if let Some(i) = point {
                visible[i] = true;
            }
        }
        newer_stripe = Some(stripe);
    }
    visible
}

/// The merged inputs, one key at a time.
struct Keys {
    merge: Merge,
    /// The first entry of the next key, read while looking for the end of the last one.
    peeked: Option<Entry>,
}

impl Keys {
    /// Reads the next key's entries (all of one `(user, ts)`, in table order) into `key`;
    /// `false` at the end of the inputs.
    fn next_key(&mut self, key: &mut Vec<Entry>) -> Result<bool> {
        key.clear();
        let first = match self.peeked.take() {
            Some(entry) => entry,
            None => match self.merge.next()? {
                Some(entry) => entry,
                None => return Ok(false),
            },
        };
        let (user, ts) = (first.user, first.ts);
        key.push(first);
        while let Some(entry) = self.merge.next()? {
            if (entry.user, entry.ts) != (user, ts) {
                self.peeked = Some(entry);
                break;
            }
            key.push(entry);
        }
        Ok(true)
    }
}

/// The output tables: made lazily, cut at user boundaries, reported to the rate limit.
struct Output {
    target_bytes: u64,
    builder: Option<TableBuilder>,
    last_user: Option<u64>,
    /// Bytes of the current table already passed to `Hooks::written`.
    reported_bytes: u64,
    /// Entries written since the last report.
    unreported_entries: u32,
}

impl Output {
    fn new(target_bytes: u64) -> Self {
        Output { target_bytes, builder: None, last_user: None, reported_bytes: 0, unreported_entries: 0 }
    }

    /// Writes one kept entry; a new user starts a new table once the current one is full.
    fn write(&mut self, entry: &Entry, hooks: &mut Hooks<'_>, done: &mut Compacted) -> Result<()> {
        if self.last_user != Some(entry.user) {
            let full = self.builder.as_ref().is_some_and(|b| b.written_bytes() >= self.target_bytes);
            if full {
                self.finish(hooks, done)?;
            }
            self.last_user = Some(entry.user);
        }
        let builder = match self.builder.take() {
            Some(builder) => builder,
            None => (hooks.new_table)()?,
        };
        let builder = self.builder.insert(builder);
        builder.add(entry)?;
        done.entries_written += 1;
        self.unreported_entries += 1;
        if self.unreported_entries >= REPORT_EVERY_ENTRIES {
            let written = builder.written_bytes();
            if written > self.reported_bytes {
                (hooks.written)(written - self.reported_bytes);
                self.reported_bytes = written;
            }
            self.unreported_entries = 0;
        }
        Ok(())
    }

    /// Finishes the current table, if any, and reports the rest of its bytes.
    fn finish(&mut self, hooks: &mut Hooks<'_>, done: &mut Compacted) -> Result<()> {
        let Some(builder) = self.builder.take() else { return Ok(()) };
        let stats = builder.finish()?;
        (hooks.written)(stats.file_bytes.saturating_sub(self.reported_bytes));
        self.reported_bytes = 0;
        self.unreported_entries = 0;
        done.bytes_written += stats.file_bytes;
        done.outputs.push(stats);
        Ok(())
    }

    /// Gives up on the current table, best effort: the rewrite is failing with another
    /// error, and a temporary file left behind is removed when the engine next opens.
    fn abandon(&mut self) {
        if let Some(builder) = self.builder.take() {
            let _ = builder.abandon();
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::cast_possible_truncation)]
mod tests {
    use std::path::{Path, PathBuf};
    use std::sync::Arc;

    use strata_sstable::{table_order, BlockCache, SstError, TableMeta, TableOptions};
    use strata_vfs::{FaultAction, FaultFs, FaultRule, FileSystem, FsErrorKind, OpKind, SimFs, When};

    use super::*;

    fn put(user: u64, ts: i64, seqno: u64) -> Entry {
        Entry::put(user, ts, seqno, format!("{user}/{ts}/{seqno}"))
    }

    fn delete(user: u64, ts: i64, seqno: u64) -> Entry {
        Entry::delete(user, ts, seqno)
    }

    fn range(user: u64, first: i64, last: i64, seqno: u64) -> Entry {
        Entry::range_delete(user, first, last, seqno)
    }

    fn zeroed(entry: Entry) -> Entry {
        Entry { seqno: 0, ..entry }
    }

    /// Tables with tiny blocks, so that `written_bytes` moves within a few entries.
    fn options() -> TableOptions {
        TableOptions { block_bytes: 64, ..TableOptions::default() }
    }

    fn path(name: &str) -> PathBuf {
        Path::new("/t").join(name)
    }

    fn open(fs: &Arc<dyn FileSystem>, name: &str) -> Table {
        Table::open(fs.as_ref(), &path(name), Arc::new(BlockCache::new(1 << 20))).unwrap()
    }

    fn table(fs: &Arc<dyn FileSystem>, name: &str, mut entries: Vec<Entry>) -> Table {
        entries.sort_by(table_order);
        fs.create_dir(Path::new("/t")).unwrap();
        let mut builder =
            TableBuilder::create(Arc::clone(fs), &path(name), options(), TableMeta::default()).unwrap();
        for entry in &entries {
            builder.add(entry).unwrap();
        }
        builder.finish().unwrap();
        open(fs, name)
    }

    /// What a run did, seen from the hooks and from the output files.
    struct Run {
        done: Compacted,
        /// The entries of each output, in order.
        outputs: Vec<Vec<Entry>>,
        /// The sum of what `written` was told, and how many calls.
        written: (u64, u64),
        /// The users `cap_floor` was asked about.
        asked: Vec<u64>,
    }

    impl Run {
        fn entries(&self) -> Vec<Entry> {
            self.outputs.concat()
        }
    }

    /// Compacts `inputs` into `/t/out<n>.sst`; `cap_floor` answers with `floor(user)`.
    fn run_on(
        fs: &Arc<dyn FileSystem>,
        inputs: &[Table],
        rules: &Rules,
        target: u64,
        floor: &dyn Fn(u64) -> Option<i64>,
    ) -> Result<Run> {
        let mut made = 0;
        let mut new_table = || {
            made += 1;
            TableBuilder::create(
                Arc::clone(fs),
                &path(&format!("out{}.sst", made - 1)),
                options(),
                TableMeta::default(),
            )
        };
        let mut written = (0, 0);
        let mut on_written = |bytes: u64| written = (written.0 + bytes, written.1 + 1);
        let mut asked = Vec::new();
        let mut cap_floor = |user: u64| {
            asked.push(user);
            floor(user)
        };
        let mut hooks =
            Hooks { new_table: &mut new_table, written: &mut on_written, cap_floor: &mut cap_floor };
        let done = compact(inputs, rules, target, &mut hooks)?;
        let outputs = (0..done.outputs.len())
            .map(|i| open(fs, &format!("out{i}.sst")).iter().map(|e| e.unwrap()).collect())
            .collect();
        Ok(Run { done, outputs, written, asked })
    }

    /// Compacts `entries`, split over two input tables, into one output.
    fn rewrite(entries: &[Entry], rules: Rules) -> Run {
        rewrite_with_floor(entries, rules, &|_| None)
    }

    fn rewrite_with_floor(entries: &[Entry], rules: Rules, floor: &dyn Fn(u64) -> Option<i64>) -> Run {
        let fs: Arc<dyn FileSystem> = Arc::new(SimFs::new());
        let (odd, even): (Vec<Entry>, Vec<Entry>) = entries.iter().cloned().partition(|e| e.seqno % 2 == 1);
        let inputs = [table(&fs, "a.sst", odd), table(&fs, "b.sst", even)];
        let run = run_on(&fs, &inputs, &rules, u64::MAX, floor).unwrap();
        let done = &run.done;
        assert_eq!(done.entries_read, entries.len() as u64);
        assert_eq!(done.entries_read, done.entries_written + done.dropped(), "every entry has one fate");
        assert_eq!(done.bytes_read, inputs.iter().map(|t| t.stats().file_bytes).sum::<u64>());
        assert!(run.outputs.len() <= 1);
        run
    }

    fn bottommost() -> Rules {
        Rules { bottommost: true, ..Rules::default() }
    }

    fn snapshots(snapshots: &[u64]) -> Rules {
        Rules { snapshots: snapshots.to_vec(), ..Rules::default() }
    }

    #[test]
    fn visibility_is_the_newest_candidate_of_each_stripe() {
        let bounds = [4, 10, u64::MAX];
        let none = std::iter::empty;
        // 12 is the present's, 9 the snapshot 10's (over 7), 3 the snapshot 4's (over 2).
        assert_eq!(visible_versions(&bounds, &[12, 9, 7, 3, 2], none()), [true, true, false, true, false]);
        // A range delete at 8 is what snapshot 10 sees: 7 is hidden from every view.
        assert_eq!(visible_versions(&bounds, &[12, 7, 3], [8].into_iter()), [true, false, true]);
        // A range delete newer than every snapshot hides nothing from them.
        assert_eq!(visible_versions(&bounds, &[7], [20].into_iter()), [true]);
        assert_eq!(visible_versions(&[u64::MAX], &[3, 5], [4].into_iter()), [false, true]);
    }

    #[test]
    fn a_version_stays_while_some_view_sees_it() {
        let entries = [put(1, 10, 1), put(1, 10, 3), put(1, 10, 5), put(1, 10, 7), put(2, 0, 2)];
        let run = rewrite(&entries, snapshots(&[4]));
        assert_eq!(run.entries(), [put(1, 10, 7), put(1, 10, 3), put(2, 0, 2)]);
        assert_eq!(run.done.dropped_versions, 2);
        // A snapshot between two versions of a key keeps both; below them, neither.
        let run = rewrite(&entries, snapshots(&[0, 6]));
        assert_eq!(run.entries(), [put(1, 10, 7), put(1, 10, 5), put(2, 0, 2)]);
    }

    #[test]
    fn a_delete_stays_unless_the_rewrite_is_bottommost() {
        let entries = [put(1, 10, 1), delete(1, 10, 2)];
        let kept = rewrite(&entries, Rules::default());
        assert_eq!(kept.entries(), [delete(1, 10, 2)]);
        assert_eq!((kept.done.dropped_versions, kept.done.dropped_tombstones), (1, 0));

        let dropped = rewrite(&entries, bottommost());
        assert!(dropped.outputs.is_empty() && dropped.done.outputs.is_empty(), "nothing kept, no table");
        assert_eq!((dropped.done.dropped_versions, dropped.done.dropped_tombstones), (1, 1));
        assert_eq!(dropped.written, (0, 0));
    }

    #[test]
    fn a_bottommost_delete_stays_over_a_version_a_snapshot_sees() {
        let entries = [put(1, 10, 1), delete(1, 10, 3)];
        let run = rewrite(&entries, Rules { snapshots: vec![2], ..bottommost() });
        assert_eq!(run.entries(), [delete(1, 10, 3), put(1, 10, 1)]);
        // The oldest kept version of a key is never a delete.
        let entries = [delete(1, 10, 1), put(1, 10, 3), delete(1, 10, 5)];
        let run = rewrite(&entries, Rules { snapshots: vec![2, 4], ..bottommost() });
        assert_eq!(run.entries(), [delete(1, 10, 5), put(1, 10, 3)]);
        assert_eq!(run.done.dropped_tombstones, 1);
    }

    #[test]
    fn a_range_delete_stays_while_it_hides_a_put_a_snapshot_sees() {
        let entries = [put(1, 5, 1), put(1, 6, 2), range(1, 0, 10, 4), put(1, 7, 6), put(2, 0, 3)];
        let mut all = entries.to_vec();
        all.sort_by(table_order);
        let seen = rewrite(&entries, Rules { snapshots: vec![3], ..bottommost() });
        assert_eq!(seen.entries(), all, "snapshot 3 sees both puts under the range delete");

        let settled = rewrite(&entries, bottommost());
        assert_eq!(settled.entries(), [zeroed(put(1, 7, 6)), zeroed(put(2, 0, 3))]);
        assert_eq!((settled.done.dropped_versions, settled.done.dropped_tombstones), (2, 1));

        let above = rewrite(&entries, Rules::default());
        assert_eq!(above.entries(), [range(1, 0, 10, 4), put(1, 7, 6), put(2, 0, 3)]);
        assert_eq!((above.done.dropped_versions, above.done.dropped_tombstones), (2, 0));
    }

    #[test]
    fn an_undecided_range_delete_holds_back_the_output_until_its_span_decides() {
        // The put at 8 (seen by snapshot 3) decides, after the newer put at 1 was queued.
        let entries = [range(1, 0, 10, 5), put(1, 1, 9), put(1, 8, 2), put(2, 0, 4)];
        let run = rewrite(&entries, Rules { snapshots: vec![3], ..bottommost() });
        assert_eq!(run.entries(), entries);
        // Its span ends (at the next key, or the next user) with nothing kept under it.
        for tail in [put(1, 11, 2), put(2, 0, 2)] {
            let entries = [range(1, 0, 10, 5), put(1, 1, 9), tail.clone()];
            let run = rewrite(&entries, Rules { snapshots: vec![3], ..bottommost() });
            assert_eq!(run.entries(), [put(1, 1, 9), tail]);
            assert_eq!(run.done.dropped_tombstones, 1);
        }
    }

    #[test]
    fn retention_drops_what_lies_before_the_cutoff_whatever_the_snapshots() {
        let entries = [
            put(1, 5, 1),
            delete(1, 3, 2),
            range(1, 0, 5, 3),
            range(1, 0, 12, 4),
            put(1, 15, 5),
            put(2, 9, 6),
        ];
        let rules = Rules { snapshots: vec![1, 2, 3, 4], retention_cutoff: Some(10), ..Rules::default() };
        let run = rewrite(&entries, rules);
        assert_eq!(run.entries(), [range(1, 0, 12, 4), put(1, 15, 5)]);
        assert_eq!(run.done.expired, 4);
    }

    /// User 1 has events at ts 1..=5 (seqnos 1..=5), user 2 at ts 1 and 2 (seqnos 11, 12).
    fn two_users() -> Vec<Entry> {
        let user1 = (1..=5).map(|ts| put(1, ts, ts as u64));
        user1.chain([put(2, 1, 11), put(2, 2, 12)]).collect()
    }

    fn capped(max_events_per_user: u64) -> Rules {
        Rules { max_events_per_user: Some(max_events_per_user), ..bottommost() }
    }

    /// The `(user, ts)` of the entries a run wrote.
    fn keys(run: &Run) -> Vec<(u64, i64)> {
        run.entries().iter().map(|e| (e.user, e.ts)).collect()
    }

    #[test]
    fn the_cap_drops_each_users_events_below_its_floor() {
        let run_with = |floor: &dyn Fn(u64) -> Option<i64>| {
            let run = rewrite_with_floor(&two_users(), capped(2), floor);
            assert_eq!(run.asked, [1, 2], "asked once per user");
            (keys(&run), run.done.capped)
        };
        // The floors of the inputs alone: each user's second newest.
        let inside = |user| Some(if user == 1 { 4 } else { 1 });
        assert_eq!(run_with(&inside), (vec![(1, 4), (1, 5), (2, 1), (2, 2)], 3));
        // Each user has one newer event outside the inputs: the floor rises.
        let outside = |user| Some(if user == 1 { 5 } else { 2 });
        assert_eq!(run_with(&outside), (vec![(1, 5), (2, 2)], 5));
        // Newer events outside the inputs alone reach the cap.
        assert_eq!(run_with(&|_| Some(100)), (vec![], 7));
    }

    #[test]
    fn no_floor_keeps_everything() {
        let run = rewrite(&two_users(), capped(2));
        assert_eq!(run.asked, [1, 2]);
        assert_eq!(run.entries(), two_users().into_iter().map(zeroed).collect::<Vec<_>>());
        assert_eq!(run.done.capped, 0);
    }

    #[test]
    fn the_cap_is_off_unless_bottommost() {
        let rules = Rules { max_events_per_user: Some(1), ..Rules::default() };
        let run = rewrite_with_floor(&two_users(), rules, &|_| Some(100));
        assert_eq!(run.entries(), two_users());
        assert!(run.asked.is_empty(), "cap_floor is not asked when the cap is off");
        assert_eq!(run.done.capped, 0);
        let run = rewrite_with_floor(&two_users(), bottommost(), &|_| Some(100));
        assert!(run.asked.is_empty(), "nor without a cap");
        assert_eq!(run.done.capped, 0);
    }

    #[test]
    fn a_snapshot_turns_the_cap_off() {
        let rules = Rules { snapshots: vec![3], ..capped(1) };
        let run = rewrite_with_floor(&two_users(), rules, &|_| Some(100));
        assert_eq!(run.entries(), two_users(), "a live snapshot holds the cap's purge back");
        assert!(run.asked.is_empty());
        assert_eq!(run.done.capped, 0);
    }

    #[test]
    fn the_floor_looks_past_deleted_events() {
        // The engine sees ts 1, 2 and 3 (4 is deleted): with a cap of 2 the floor is at 2.
        let entries = [put(1, 1, 1), put(1, 2, 2), put(1, 3, 3), put(1, 4, 4), delete(1, 4, 5)];
        let run = rewrite_with_floor(&entries, capped(2), &|_| Some(2));
        assert_eq!(run.entries(), [zeroed(put(1, 2, 2)), zeroed(put(1, 3, 3))]);
        let d = &run.done;
        assert_eq!((d.capped, d.dropped_versions, d.dropped_tombstones), (1, 1, 1));
    }

    #[test]
    fn a_point_delete_below_the_floor_is_capped() {
        let entries =
            [put(1, 1, 1), put(1, 2, 2), delete(1, 2, 5), delete(1, 3, 6), put(1, 4, 3), put(1, 5, 4)];
        let run = rewrite_with_floor(&entries, capped(2), &|_| Some(4));
        assert_eq!(run.entries(), [zeroed(put(1, 4, 3)), zeroed(put(1, 5, 4))]);
        let d = &run.done;
        assert_eq!((d.capped, d.dropped_versions, d.dropped_tombstones), (4, 0, 0));
    }

    #[test]
    fn a_range_delete_across_the_floor_is_left_to_the_tombstone_rule() {
        // The floor is at 10. The range delete 0..=2 lies wholly below it and is capped;
        // 1..=10 reaches it, and hides the put at 10 (seqno 3, under seqno 7).
        let entries = [
            range(1, 0, 2, 6),
            put(1, 1, 1),
            range(1, 1, 10, 7),
            put(1, 5, 2),
            put(1, 10, 3),
            put(1, 10, 9),
            put(1, 20, 8),
        ];
        let run = rewrite_with_floor(&entries, capped(2), &|_| Some(10));
        assert_eq!(run.entries(), [zeroed(put(1, 10, 9)), zeroed(put(1, 20, 8))]);
        let d = &run.done;
        assert_eq!((d.capped, d.dropped_versions, d.dropped_tombstones), (3, 1, 1));

        // Decided by its span, it would stay while it hid a kept put: without the cap's
        // floor (here: a snapshot at 5 sees the put at 10, seqno 3), it does.
        let rules = Rules { snapshots: vec![5], ..capped(2) };
        let run = rewrite_with_floor(&entries, rules, &|_| Some(10));
        assert!(run.entries().contains(&range(1, 1, 10, 7)));
        assert!(run.entries().contains(&put(1, 10, 3)));
    }

    #[test]
    fn seqnos_are_zeroed_only_when_bottommost_without_snapshots() {
        let entries = [put(1, 1, 5), put(1, 2, 6), put(1, 2, 3)];
        assert_eq!(rewrite(&entries, bottommost()).entries(), [zeroed(put(1, 1, 5)), zeroed(put(1, 2, 6))]);
        let kept = [put(1, 1, 5), put(1, 2, 6)];
        assert_eq!(rewrite(&entries, Rules { snapshots: vec![100], ..bottommost() }).entries(), kept);
        assert_eq!(rewrite(&entries, Rules::default()).entries(), kept);
    }

    #[test]
    fn outputs_are_cut_at_user_boundaries_and_add_up() {
        let fs: Arc<dyn FileSystem> = Arc::new(SimFs::new());
        let mut all = Vec::new();
        let mut seqno = 0;
        for user in 0..60u64 {
            for ts in 0..20i64 {
                seqno += 1;
                all.push(if ts == 7 { range(user, ts, ts + 2, seqno) } else { put(user, ts, seqno) });
            }
        }
        let inputs = [table(&fs, "a.sst", all[..600].to_vec()), table(&fs, "b.sst", all[600..].to_vec())];
        let run = run_on(&fs, &inputs, &Rules::default(), 300, &|_| None).unwrap();
        let done = &run.done;
        assert!(run.outputs.len() >= 4, "{} outputs", run.outputs.len());
        all.sort_by(table_order);
        assert_eq!(run.entries(), all);
        for pair in run.outputs.windows(2) {
            assert!(pair[0].last().unwrap().user < pair[1][0].user, "a user is split across tables");
        }
        let entries: Vec<u64> = run.outputs.iter().map(|o| o.len() as u64).collect();
        assert_eq!(entries, done.outputs.iter().map(|s| s.entries).collect::<Vec<_>>());
        assert_eq!(done.entries_written, all.len() as u64);
        let files: u64 = (0..run.outputs.len())
            .map(|i| fs.open(&path(&format!("out{i}.sst"))).unwrap().len().unwrap())
            .sum();
        assert_eq!(done.bytes_written, files);
        assert_eq!(run.written.0, files, "the rate limit hears of every byte");
        assert!(!fs.list(Path::new("/t")).unwrap().iter().any(|name| name.ends_with(".tmp")));

        // One large output hears in steps of REPORT_EVERY_ENTRIES entries, then at its finish.
        let fs: Arc<dyn FileSystem> = Arc::new(SimFs::new());
        let inputs = [table(&fs, "a.sst", all.clone())];
        let run = run_on(&fs, &inputs, &Rules::default(), u64::MAX, &|_| None).unwrap();
        assert_eq!(run.outputs.len(), 1);
        assert_eq!(run.written, (run.done.bytes_written, all.len() as u64 / 256 + 1));
    }

    #[test]
    fn a_failing_new_table_fails_the_rewrite() {
        let fs: Arc<dyn FileSystem> = Arc::new(SimFs::new());
        let inputs = [table(&fs, "a.sst", vec![put(1, 1, 1)])];
        let mut new_table =
            || Err(SstError::InvalidOption { name: "test", reason: "no table for you".into() });
        let mut hooks = Hooks { new_table: &mut new_table, written: &mut |_| {}, cap_floor: &mut |_| None };
        let err = compact(&inputs, &Rules::default(), 1 << 20, &mut hooks).unwrap_err();
        assert!(matches!(err, SstError::InvalidOption { name: "test", .. }), "{err}");
    }

    /// Many users, several outputs, an error partway: finished tables stay, the open one goes.
    fn fail_partway(fs: &Arc<dyn FileSystem>, sim: &SimFs, damage_input: bool) {
        let entries: Vec<Entry> = (0..400).map(|i| put(i / 10, (i % 10) as i64, i + 1)).collect();
        let input = table(fs, "a.sst", entries);
        if damage_input {
            let late = input.block_handle(input.block_count() - 2);
            sim.flip_bit(&path("a.sst"), late.offset + 3, 0).unwrap();
        }
        let err = match run_on(fs, &[input], &Rules::default(), 200, &|_| None) {
            Ok(_) => panic!("the rewrite succeeded"),
            Err(err) => err,
        };
        if damage_input {
            assert!(matches!(err, SstError::Corruption { .. }), "{err}");
        } else {
            assert!(matches!(err, SstError::Fs(_)), "{err}");
        }
        let names = fs.list(Path::new("/t")).unwrap();
        assert!(names.contains(&"out0.sst".to_string()), "finished outputs stay: {names:?}");
        assert!(!names.iter().any(|name| name.ends_with(".tmp")), "the open output is abandoned: {names:?}");
    }

    #[test]
    fn a_damaged_input_fails_the_rewrite_and_abandons_the_open_table() {
        let sim = Arc::new(SimFs::new());
        let fs: Arc<dyn FileSystem> = sim.clone();
        fail_partway(&fs, &sim, true);
    }

    #[test]
    fn a_failing_builder_fails_the_rewrite_and_abandons_its_table() {
        let sim = Arc::new(SimFs::new());
        let fault = FaultFs::new(sim.clone(), 7);
        fault.add_rule(
            FaultRule::new(When::Always, FaultAction::Fail(FsErrorKind::Io))
                .on_op(OpKind::Append)
                .on_path("out2.sst"),
        );
        let fs: Arc<dyn FileSystem> = Arc::new(fault);
        fail_partway(&fs, &sim, false);
    }
}
