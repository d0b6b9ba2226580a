//! Flush: turns an immutable memtable into tables, one or two per time partition.
//!
//! A memtable's events are split by partition (`floor(ts / partition_width)`, or the group
//! that partition belongs to: see `strata_compaction::plan`). Within a
//! partition, an event newer than the partition's watermark (the newest ts any of its
//! sequence tables holds) goes to the partition's new **sequence** table; the rest, late
//! events and overwrites of old keys, go to an **unsequence** table. Hence a partition's
//! sequence tables never overlap in time: each starts after the previous one ends. (One
//! exception, harmless: a flush that began before compaction grouped its partition routes
//! by the partition's own watermark, not the group's. Reads rely only on each table's time
//! span, and the planner's bottommost test on seqnos, so an overlap costs nothing but the
//! planner's view of what is compacted.)
//!
//! Range deletes go to unsequence tables, clipped to each partition they cover that holds
//! data, either already in tables or in this memtable. No other partition can hold an
//! event older than the delete: an older event was written before it, so it is in this
//! memtable or already flushed (memtables are flushed in order).
//!
//! The caller installs the returned edit in the manifest; until then the tables are
//! unreferenced files that a crash leaves as orphans.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use strata_sstable::{table_order, BlockCache, Entry, EntryRef, Kind, TableBuilder, TableMeta, TableOptions};
use strata_vfs::FileSystem;

use crate::manifest::Edit;
use crate::memtable::{FlushPoint, FlushReader, Memtable};
use crate::options::partition_of;
use crate::reaper::Reaper;
use crate::version::{table_name, table_record, TableFile, Version};
use crate::Result;

/// What a flush made.
pub(crate) struct Flushed {
    /// Tables to add and watermarks to raise; the caller sets the persisted seqno.
    pub edit: Edit,
    /// The new tables, opened.
    pub tables: Vec<Arc<TableFile>>,
    /// Events written (puts and deletes).
    pub events: u64,
    /// Of those, events that went to unsequence tables.
    pub late_events: u64,
    /// Bytes of table files written.
    pub bytes: u64,
}

/// Everything a flush needs besides the memtable.
pub(crate) struct FlushContext<'a> {
    pub fs: &'a Arc<dyn FileSystem>,
    pub dir: &'a Path,
    pub width: i64,
    pub table_options: &'a TableOptions,
    pub cache: &'a Arc<BlockCache>,
    pub reaper: &'a Reaper,
}

/// The open builders of one flush, keyed by (partition, sequence).
struct Builders<'a> {
    ctx: &'a FlushContext<'a>,
    /// The database's file-number allocator (shared with compaction).
    next_file: &'a AtomicU64,
    open: BTreeMap<(i64, bool), (u64, TableBuilder)>,
}

impl Builders<'_> {
    fn add(&mut self, partition: i64, sequence: bool, entry: EntryRef<'_>) -> Result<()> {
        let key = (partition, sequence);
        if let Some((_, builder)) = self.open.get_mut(&key) {
            return Ok(builder.add_ref(entry)?);
        }
        let number = self.next_file.fetch_add(1, Ordering::Relaxed);
        let meta = TableMeta { partition, partition_width: self.ctx.width.unsigned_abs(), sequence };
        let path = self.ctx.dir.join(table_name(number));
        let mut builder =
            TableBuilder::create(Arc::clone(self.ctx.fs), &path, self.ctx.table_options.clone(), meta)?;
        // Inserted before the add, so that a failed add leaves it to be abandoned.
        let result = builder.add_ref(entry);
        self.open.insert(key, (number, builder));
        Ok(result?)
    }

    /// Abandons every open builder (best effort: the next open removes leftovers).
    fn abandon(self) {
        for (_, (_, builder)) in self.open {
            let _ = builder.abandon();
        }
    }
}

/// Writes `mem` into tables; see the module doc. Table numbers come from `next_file`; the
/// caller sets the edit's next file number when it installs it.
pub(crate) fn flush(
    ctx: &FlushContext<'_>,
    mem: &Memtable,
    version: &Version,
    next_file: &AtomicU64,
) -> Result<Flushed> {
    let mut builders = Builders { ctx, next_file, open: BTreeMap::new() };
    match write_entries(&mut builders, mem, version) {
        Ok((events, late_events, newest_put)) => {
            let mut flushed = finish(builders, events, late_events)?;
            flushed.edit.newest_event_ts = newest_put;
            Ok(flushed)
        }
        Err(err) => {
            builders.abandon();
            Err(err)
        }
    }
}

/// The partitions a range delete may need to reach: those with tables or memtable data.
fn live_partitions(reader: &FlushReader<'_>, version: &Version, width: i64) -> BTreeSet<i64> {
    let mut partitions = version.partitions();
    reader.for_each_ts(|ts| {
        partitions.insert(version.state.grouped(partition_of(ts, width)));
    });
    partitions
}

/// Entries routed per step: enough to look ahead across many small users.
const WINDOW: usize = 4096;
/// Payloads touched at once, and how far ahead of the entry being added; see
/// [`touch_payloads`].
const TOUCH_GROUP: usize = 8;
const LOOKAHEAD: usize = 2 * TOUCH_GROUP;

/// Reads the first and last byte of a group of upcoming payloads, so that their cache misses
/// are in flight together and over by the time the entries are copied. The memtable keeps
/// payloads in arrival order and a flush walks them by user, so every payload is a miss.
/// The loads are independent and issued back to back: the core keeps a group's misses in
/// flight at once and waits about one memory latency per group. Touching one payload per
/// entry waited about one latency per entry instead, because the load's use stalls
/// retirement long before a miss 16 entries ahead returns: 27% of the flush thread sat on
/// that load. (Loads rather than prefetch instructions, which would need `unsafe`.)
fn touch_payloads(reader: &FlushReader<'_>, points: &[FlushPoint]) {
    let mut sum = 0u8;
    for point in points {
        let value = reader.entry_ref(point).value;
        if let (Some(first), Some(last)) = (value.first(), value.last()) {
            sum ^= first ^ last;
        }
    }
    std::hint::black_box(sum);
}

/// Routes entries to the builders of their partition and counts what it wrote.
struct Router<'a> {
    width: i64,
    /// The partitions, their groups and watermarks.
    version: &'a Version,
    /// The last partition looked up and its group: entries come by user, ts ascending, so
    /// consecutive ones mostly share a partition, and the group map is not searched per
    /// event.
    last_group: std::cell::Cell<(i64, i64)>,
    events: u64,
    late: u64,
    newest_put: Option<i64>,
}

impl Router<'_> {
    /// The partition (or group) of `ts`.
    fn partition(&self, ts: i64) -> i64 {
        let fine = partition_of(ts, self.width);
        let (last, group) = self.last_group.get();
        if fine == last {
            return group;
        }
        let group = self.version.state.grouped(fine);
        self.last_group.set((fine, group));
        group
    }

    /// Whether an event at `ts` of `partition` belongs to a sequence table.
    fn sequence(&self, partition: i64, ts: i64) -> bool {
        self.version.state.watermarks.get(&partition).is_none_or(|&mark| ts > mark)
    }

    fn add(
        &mut self,
        builders: &mut Builders<'_>,
        partition: i64,
        sequence: bool,
        entry: EntryRef<'_>,
    ) -> Result<()> {
        builders.add(partition, sequence, entry)?;
        match entry.kind {
            Kind::RangeDelete => return Ok(()),
            Kind::Put => self.newest_put = Some(self.newest_put.map_or(entry.ts, |n| n.max(entry.ts))),
            Kind::Delete => {}
        }
        self.events += 1;
        self.late += u64::from(!sequence);
        Ok(())
    }

    /// Writes the point entries of whole users, in table order.
    fn write(
        &mut self,
        builders: &mut Builders<'_>,
        reader: &FlushReader<'_>,
        points: &[FlushPoint],
    ) -> Result<()> {
        for (i, point) in points.iter().enumerate() {
            if i % TOUCH_GROUP == 0 {
                let ahead = (i + LOOKAHEAD).min(points.len());
                touch_payloads(reader, &points[ahead..(ahead + TOUCH_GROUP).min(points.len())]);
            }
            let entry = reader.entry_ref(point);
            let partition = self.partition(entry.ts);
            let sequence = self.sequence(partition, entry.ts);
            self.add(builders, partition, sequence, entry)?;
        }
        Ok(())
    }

    /// Writes one user's entries merged with its range deletes, each clipped to the
    /// partitions it covers that hold data (`partitions`), in the unsequence tables.
    fn write_with_range_deletes(
        &mut self,
        builders: &mut Builders<'_>,
        entries: Vec<Entry>,
        deletes: &[Entry],
        partitions: &BTreeSet<i64>,
    ) -> Result<()> {
        let mut routed: Vec<(i64, bool, Entry)> = entries
            .into_iter()
            .map(|entry| {
                let partition = self.partition(entry.ts);
                (partition, self.sequence(partition, entry.ts), entry)
            })
            .collect();
        for delete in deletes {
            let last = delete.range_last().unwrap_or(delete.ts);
            let span = self.partition(delete.ts)..=self.partition(last);
            for &partition in partitions.range(span) {
                let (first_ts, last_ts) = self.version.bounds(partition, self.width);
                let clipped = Entry::range_delete(
                    delete.user,
                    delete.ts.max(first_ts),
                    last.min(last_ts),
                    delete.seqno,
                );
                routed.push((partition, false, clipped));
            }
        }
        routed.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)).then_with(|| table_order(&a.2, &b.2)));
        for (partition, sequence, entry) in &routed {
            self.add(builders, *partition, *sequence, entry.as_ref())?;
        }
        Ok(())
    }
}

/// Writes every entry; returns the events written, the late ones among them, and the newest
/// ts of a put (retention's clock). Users are taken in ascending order and their entries
/// gathered a window at a time, so that payload reads can run ahead across users.
fn write_entries(
    builders: &mut Builders<'_>,
    mem: &Memtable,
    version: &Version,
) -> Result<(u64, u64, Option<i64>)> {
    let width = builders.ctx.width;
    let first = partition_of(i64::MIN, width);
    let last_group = std::cell::Cell::new((first, version.state.grouped(first)));
    let mut router = Router { width, version, last_group, events: 0, late: 0, newest_put: None };
    let mut partitions: Option<BTreeSet<i64>> = None;
    let reader = mem.flush_reader();
    let mut window: Vec<FlushPoint> = Vec::with_capacity(WINDOW);
    for user in reader.users() {
        let start = window.len();
        user.points(&mut window);
        let deletes = user.range_deletes();
        if !deletes.is_empty() {
            // Rare: range deletes must be merged into the unsequence streams in order.
            let mine = window.split_off(start).iter().map(|p| reader.entry(p)).collect();
            router.write(builders, &reader, &window)?;
            window.clear();
            if partitions.is_none() {
                partitions = Some(live_partitions(&reader, version, width));
            }
            let partitions = partitions.as_ref().map_or(&EMPTY, |p| p);
            router.write_with_range_deletes(builders, mine, deletes, partitions)?;
        } else if window.len() >= WINDOW {
            router.write(builders, &reader, &window)?;
            window.clear();
        }
    }
    router.write(builders, &reader, &window)?;
    Ok((router.events, router.late, router.newest_put))
}

static EMPTY: BTreeSet<i64> = BTreeSet::new();

fn finish(builders: Builders<'_>, events: u64, late_events: u64) -> Result<Flushed> {
    let ctx = builders.ctx;
    let mut edit = Edit::default();
    let mut tables = Vec::new();
    let mut bytes = 0;
    let mut open = builders.open.into_iter();
    while let Some(((partition, sequence), (number, builder))) = open.next() {
        let stats = match builder.finish() {
            Ok(stats) => stats,
            Err(err) => {
                for (_, (_, rest)) in open {
                    let _ = rest.abandon();
                }
                return Err(err.into());
            }
        };
        bytes += stats.file_bytes;
        let record = table_record(number, partition, sequence, &stats);
        if sequence {
            edit.watermarks.push((partition, stats.max_ts));
        }
        edit.added.push(record.clone());
        tables.push(TableFile::open(ctx.fs, ctx.dir, record, ctx.cache, ctx.reaper)?);
    }
    Ok(Flushed { edit, tables, events, late_events, bytes })
}
