//! Flush: turns an immutable memtable into tables, one or two per time partition.
//!
//! A memtable's events are split by partition (`floor(ts / partition_width)`). Within a
//! partition, an event newer than the partition's watermark (the newest ts any of its
//! sequence tables holds) goes to the partition's new **sequence** table; the rest, late
//! events and overwrites of old keys, go to an **unsequence** table. Hence a partition's
//! sequence tables never overlap in time: each starts after the previous one ends.
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
use std::sync::Arc;

use strata_sstable::{table_order, BlockCache, Entry, Kind, TableBuilder, TableMeta, TableOptions};
use strata_vfs::FileSystem;

use crate::manifest::{Edit, TableRecord};
use crate::memtable::Memtable;
use crate::options::{partition_bounds, partition_of};
use crate::version::{table_name, TableFile, Version};
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
}

/// The open builders of one flush, keyed by (partition, sequence).
struct Builders<'a> {
    ctx: &'a FlushContext<'a>,
    next_file: u64,
    open: BTreeMap<(i64, bool), (u64, TableBuilder)>,
}

impl Builders<'_> {
    fn add(&mut self, partition: i64, sequence: bool, entry: &Entry) -> Result<()> {
        let key = (partition, sequence);
        if !self.open.contains_key(&key) {
            let number = self.next_file;
            self.next_file += 1;
            let meta = TableMeta { partition, partition_width: self.ctx.width.unsigned_abs(), sequence };
            let path = self.ctx.dir.join(table_name(number));
            let builder =
                TableBuilder::create(Arc::clone(self.ctx.fs), &path, self.ctx.table_options.clone(), meta)?;
            self.open.insert(key, (number, builder));
        }
        match self.open.get_mut(&key) {
            Some((_, builder)) => Ok(builder.add(entry)?),
            None => Ok(()),
        }
    }

    /// Abandons every open builder (best effort: the next open removes leftovers).
    fn abandon(self) {
        for (_, (_, builder)) in self.open {
            let _ = builder.abandon();
        }
    }
}

/// Writes `mem` into tables; see the module doc. `next_file` is the first file number
/// the flush may use; the edit carries the next free one.
pub(crate) fn flush(
    ctx: &FlushContext<'_>,
    mem: &Memtable,
    version: &Version,
    next_file: u64,
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
fn live_partitions(mem: &Memtable, version: &Version, width: i64) -> Result<BTreeSet<i64>> {
    let mut partitions = version.partitions();
    for user in mem.users() {
        mem.with_user(user, |entries, _| {
            for entry in entries {
                partitions.insert(partition_of(entry.ts, width));
            }
        });
    }
    Ok(partitions)
}

/// Writes every entry; returns the events written, the late ones among them, and the newest
/// ts of a put (retention's clock).
fn write_entries(
    builders: &mut Builders<'_>,
    mem: &Memtable,
    version: &Version,
) -> Result<(u64, u64, Option<i64>)> {
    let width = builders.ctx.width;
    let watermarks = &version.state.watermarks;
    let sequence_of = |partition: i64, ts: i64| watermarks.get(&partition).is_none_or(|&mark| ts > mark);
    let mut partitions: Option<BTreeSet<i64>> = None;
    let (mut events, mut late) = (0u64, 0u64);
    let mut newest_put: Option<i64> = None;
    let mut saw_put = |entry: &Entry| {
        if entry.kind == Kind::Put {
            newest_put = Some(newest_put.map_or(entry.ts, |n| n.max(entry.ts)));
        }
    };
    for user in mem.users() {
        let mut range_deletes = Vec::new();
        let result = mem.with_user(user, |entries, deletes| -> Result<()> {
            range_deletes.extend_from_slice(deletes);
            if !deletes.is_empty() {
                return Ok(());
            }
            for entry in entries {
                let partition = partition_of(entry.ts, width);
                let sequence = sequence_of(partition, entry.ts);
                builders.add(partition, sequence, entry)?;
                saw_put(entry);
                events += 1;
                late += u64::from(!sequence);
            }
            Ok(())
        });
        result.transpose()?;
        if range_deletes.is_empty() {
            continue;
        }
        // Rare path: the user has range deletes, which must be merged into the
        // unsequence streams in table order.
        if partitions.is_none() {
            partitions = Some(live_partitions(mem, version, width)?);
        }
        let partitions = partitions.as_ref().map_or(&EMPTY, |p| p);
        let mut routed: Vec<(i64, bool, Entry)> = Vec::new();
        mem.with_user(user, |entries, _| {
            for entry in entries {
                let partition = partition_of(entry.ts, width);
                routed.push((partition, sequence_of(partition, entry.ts), entry.clone()));
            }
        });
        for delete in &range_deletes {
            let last = delete.range_last().unwrap_or(delete.ts);
            let span = partition_of(delete.ts, width)..=partition_of(last, width);
            for &partition in partitions.range(span) {
                let (first_ts, last_ts) = partition_bounds(partition, width);
                let clipped =
                    Entry::range_delete(user, delete.ts.max(first_ts), last.min(last_ts), delete.seqno);
                routed.push((partition, false, clipped));
            }
        }
        routed.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)).then_with(|| table_order(&a.2, &b.2)));
        for (partition, sequence, entry) in &routed {
            builders.add(*partition, *sequence, entry)?;
            saw_put(entry);
            if entry.kind != Kind::RangeDelete {
                events += 1;
                late += u64::from(!*sequence);
            }
        }
    }
    Ok((events, late, newest_put))
}

static EMPTY: BTreeSet<i64> = BTreeSet::new();

fn finish(builders: Builders<'_>, events: u64, late_events: u64) -> Result<Flushed> {
    let ctx = builders.ctx;
    let mut edit = Edit { next_file_number: Some(builders.next_file), ..Edit::default() };
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
        let record = TableRecord {
            number,
            partition,
            sequence,
            file_bytes: stats.file_bytes,
            entries: stats.entries,
            min_ts: stats.min_ts,
            max_ts: stats.max_ts,
            min_seqno: stats.min_seqno,
            max_seqno: stats.max_seqno,
        };
        if sequence {
            edit.watermarks.push((partition, stats.max_ts));
        }
        edit.added.push(record.clone());
        tables.push(TableFile::open(ctx.fs, ctx.dir, record, ctx.cache)?);
    }
    Ok(Flushed { edit, tables, events, late_events, bytes })
}
