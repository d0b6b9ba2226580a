//! [`Version`]: the immutable set of live tables, and [`SuperVersion`]: everything a read
//! needs (memtables plus a version), pinned by `Arc`.
//!
//! Invariants:
//! - A version never changes; an edit makes a new one. A reader that cloned the
//!   `Arc<SuperVersion>` keeps every table of it readable for as long as it holds it.
//! - A table removed by an edit is marked obsolete, and its file is deleted when the last
//!   version holding it is dropped ([`TableFile`]'s `Drop`; by the reaper thread when that
//!   last holder is an application thread, see `reaper.rs`), so no reader ever loses a file
//!   under its feet. A crash before that leaves an orphan, which the next open removes
//!   because the manifest no longer references it.
//! - `by_max_ts` lists every table by descending newest timestamp: a newest-first read opens
//!   tables in that order and stops as soon as the next one cannot hold a newer event.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use strata_sstable::format::FOOTER_LEN;
use strata_sstable::{BlockCache, Table, TableStats};
use strata_vfs::FileSystem;

use crate::manifest::{Edit, ManifestState, TableRecord};
use crate::memtable::Memtable;
use crate::options::partition_bounds;
use crate::reaper::Reaper;
use crate::{Error, Result};

/// The file name of table `number`.
pub(crate) fn table_name(number: u64) -> String {
    format!("{number:06}.sst")
}

/// The table number in a file name such as `000042.sst`.
pub(crate) fn parse_table_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".sst")?;
    if digits.len() < 6 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// What the manifest records of table `number`, built with `stats`.
pub(crate) fn table_record(number: u64, partition: i64, sequence: bool, stats: &TableStats) -> TableRecord {
    TableRecord {
        number,
        partition,
        sequence,
        file_bytes: stats.file_bytes,
        entries: stats.entries,
        min_ts: stats.min_ts,
        max_ts: stats.max_ts,
        min_seqno: stats.min_seqno,
        max_seqno: stats.max_seqno,
        footer_checksum: stats.footer_checksum,
    }
}

/// Why the table's footer is not the one `record` names, or `None` if it is. The footer
/// checksum alone decides (it covers every other field and, through the metadata and block
/// checksums, every byte); the other fields are compared so that the error says which
/// disagree. The one difference allowed: a table moved from unsequence to sequence by a
/// manifest edit alone keeps a footer that says unsequence.
fn record_mismatch(record: &TableRecord, stats: &TableStats) -> Option<String> {
    // Every field as an i128 (u64 and i64 both fit), so the common case, all equal,
    // allocates nothing at each table open.
    let fields: [(&str, i128, i128); 7] = [
        ("file_bytes", record.file_bytes.into(), stats.file_bytes.into()),
        ("entries", record.entries.into(), stats.entries.into()),
        ("partition", record.partition.into(), stats.partition.into()),
        ("min_ts", record.min_ts.into(), stats.min_ts.into()),
        ("max_ts", record.max_ts.into(), stats.max_ts.into()),
        ("min_seqno", record.min_seqno.into(), stats.min_seqno.into()),
        ("max_seqno", record.max_seqno.into(), stats.max_seqno.into()),
    ];
    let mut differ: Vec<String> = fields
        .into_iter()
        .filter(|(_, recorded, found)| recorded != found)
        .map(|(name, recorded, found)| format!("{name} (manifest {recorded}, table {found})"))
        .collect();
    if !record.sequence && stats.sequence {
        differ.push("sequence flag (manifest unsequence, table sequence)".to_string());
    }
    let (recorded, found) = (record.footer_checksum, stats.footer_checksum);
    let mut reason = if recorded != found {
        format!(
            "the manifest records footer checksum {recorded:#018x}, the table's footer has {found:#018x}: \
             the table's metadata is not the one the manifest names (a stale or misdirected write)"
        )
    } else if differ.is_empty() {
        return None;
    } else {
        "the manifest's record of the table disagrees with the table's footer".to_string()
    };
    if !differ.is_empty() {
        reason.push_str("; fields that disagree: ");
        reason.push_str(&differ.join(", "));
    }
    Some(reason)
}

/// An open table of the database.
pub(crate) struct TableFile {
    pub record: TableRecord,
    pub table: Table,
    path: PathBuf,
    fs: Arc<dyn FileSystem>,
    obsolete: AtomicBool,
    /// Where the file goes to be deleted when an application thread lets go of it last.
    reaper: Reaper,
}

impl TableFile {
    /// Opens table `record` in `dir` and checks it against what the manifest says of it: a
    /// table that opens cleanly but is not the one recorded (another table's metadata
    /// written over it, a stale copy) is `Corruption` at its footer, never served.
    pub fn open(
        fs: &Arc<dyn FileSystem>,
        dir: &Path,
        record: TableRecord,
        cache: &Arc<BlockCache>,
        reaper: &Reaper,
    ) -> Result<Arc<TableFile>> {
        let path = dir.join(table_name(record.number));
        let table = Table::open(fs.as_ref(), &path, Arc::clone(cache))?;
        let stats = table.stats();
        if let Some(reason) = record_mismatch(&record, &stats) {
            let footer = stats.file_bytes.saturating_sub(FOOTER_LEN as u64);
            return Err(Error::corruption(&path, footer, reason));
        }
        Ok(Arc::new(TableFile {
            record,
            table,
            path,
            fs: Arc::clone(fs),
            obsolete: AtomicBool::new(false),
            reaper: reaper.clone(),
        }))
    }

    /// Whether the table was built with a compressing codec (its footer says).
    pub fn compressed(&self) -> bool {
        self.table.stats().compressed
    }

    /// Range deletes the table holds (from its footer).
    pub fn range_deletes(&self) -> u64 {
        self.table.stats().range_deletes
    }
}

impl TableFile {
    /// Marks this table's file for removal once its last holder lets go: for a table that
    /// never made it into a version.
    pub fn retire_now(&self) {
        self.obsolete.store(true, Ordering::Release);
    }
}

impl Drop for TableFile {
    fn drop(&mut self) {
        if self.obsolete.load(Ordering::Acquire) {
            // An application thread hands the file to the reaper with a handle of the
            // table, so that the costly part of the delete (freeing the file's blocks, its
            // cached blocks) happens there; engine threads delete inline (`reaper.rs`).
            self.reaper.retire(self.fs.as_ref(), &self.path, &self.table);
        }
    }
}

/// The live tables.
#[derive(Clone, Default)]
pub(crate) struct Version {
    /// What the manifest says.
    pub state: ManifestState,
    /// The open tables, by number.
    pub tables: BTreeMap<u64, Arc<TableFile>>,
    /// The same tables by descending `max_ts` (ties: higher number first).
    pub by_max_ts: Vec<Arc<TableFile>>,
}

impl Version {
    /// A version of `state` with its tables already opened.
    pub fn new(state: ManifestState, tables: BTreeMap<u64, Arc<TableFile>>) -> Version {
        let mut by_max_ts: Vec<Arc<TableFile>> = tables.values().cloned().collect();
        by_max_ts.sort_by_key(|t| std::cmp::Reverse((t.record.max_ts, t.record.number)));
        Version { state, tables, by_max_ts }
    }

    /// The version after `edit`, whose added tables are `added` (opened by the caller).
    /// Nothing is marked obsolete yet: see [`Version::retire`].
    pub fn apply(&self, edit: &Edit, added: Vec<Arc<TableFile>>) -> Result<Version> {
        let mut state = self.state.clone();
        state.apply(edit).map_err(|reason| Error::Internal(format!("edit refused: {reason}")))?;
        let mut tables = self.tables.clone();
        for number in &edit.removed {
            tables.remove(number);
        }
        for file in added {
            tables.insert(file.record.number, file);
        }
        Ok(Version::new(state, tables))
    }

    /// Marks the tables `removed` obsolete, once the edit that removes them is durable:
    /// their files go when the last reader lets go of them.
    pub fn retire(&self, removed: &[u64]) {
        for number in removed {
            if let Some(file) = self.tables.get(number) {
                file.obsolete.store(true, Ordering::Release);
            }
        }
    }

    /// The partitions that hold at least one table, as grouped: a group counts once, by
    /// its first partition.
    pub fn partitions(&self) -> std::collections::BTreeSet<i64> {
        self.tables.values().map(|t| self.partition_of(&t.record)).collect()
    }

    /// The partition table `record` counts in: the group of the partition it was written
    /// to, or that partition.
    pub fn partition_of(&self, record: &TableRecord) -> i64 {
        self.state.grouped(record.partition)
    }

    /// First and last timestamp of partition `p` (a group's first partition: the group's).
    pub fn bounds(&self, p: i64, width: i64) -> (i64, i64) {
        let last = strata_compaction::plan::last_partition(&self.state.groups, p);
        (partition_bounds(p, width).0, partition_bounds(last, width).1)
    }
}

/// What a read sees: the mutable memtable, the immutable ones waiting for flush (newest
/// first) and the tables.
pub(crate) struct SuperVersion {
    pub mem: Arc<Memtable>,
    pub imms: Vec<Arc<Memtable>>,
    pub version: Arc<Version>,
}

impl SuperVersion {
    /// Every memtable, newest first.
    pub fn memtables(&self) -> impl Iterator<Item = &Arc<Memtable>> {
        std::iter::once(&self.mem).chain(self.imms.iter())
    }
}

#[cfg(test)]
mod tests {
    use strata_sstable::format::Footer;
    use strata_vfs::SimFs;

    use super::*;
    use crate::{Db, ErrorKind, Options};

    /// A closed database on `sim` holding two tables of the same size: user 5's event,
    /// then user 3's. Their paths, in that order.
    fn two_tables_of_one_size(sim: &SimFs, options: &Options) -> (PathBuf, PathBuf) {
        let db = Db::open_with_fs(Arc::new(sim.clone()), "/db", options.clone()).unwrap();
        for user in [5, 3] {
            db.put(user, 10, b"payload").unwrap();
            db.flush().unwrap();
        }
        db.close().unwrap();
        let mut tables: Vec<PathBuf> =
            sim.paths().into_iter().filter(|p| p.extension().is_some_and(|e| e == "sst")).collect();
        tables.sort();
        assert_eq!(tables.len(), 2, "{tables:?}");
        (tables[0].clone(), tables[1].clone())
    }

    /// Regression (issue #7 item 4, found by `tests/tests/lost_writes.rs`, seed 92): a stale
    /// write put another table's metadata and footer, of the same sizes, over a table's. The
    /// table still opened (its checksums agree with each other) and the manifest's record
    /// agreed on size and entries, so the other table's filter hid the first one's events.
    /// The manifest now records each table's footer checksum, and the open refuses it.
    #[test]
    fn a_table_holding_another_tables_metadata_is_refused() {
        let sim = SimFs::new();
        let options = Options { partition_width: 1_000, compaction_threads: 0, ..Options::default() };
        let (victim, source) = two_tables_of_one_size(&sim, &options);
        let (mine, theirs) = (sim.contents(&victim).unwrap(), sim.contents(&source).unwrap());
        assert_eq!(mine.len(), theirs.len(), "the two tables must be of one size");
        let meta = Footer::decode(&theirs).unwrap().index_offset;
        assert_eq!(meta, Footer::decode(&mine).unwrap().index_offset);
        sim.overwrite(&victim, meta, &theirs[usize::try_from(meta).unwrap()..]).unwrap();
        let err = match Db::open_with_fs(Arc::new(sim.clone()), "/db", options) {
            Err(err) => err,
            Ok(db) => panic!("opened, user 5 holds {} events", db.range(5, ..).unwrap().count()),
        };
        assert_eq!(err.kind(), ErrorKind::Corruption, "{err}");
        let Error::Corruption { file, offset, reason } = err else { unreachable!() };
        assert_eq!((file, offset), (victim, (mine.len() - FOOTER_LEN) as u64), "{reason}");
        assert!(reason.contains("not the one the manifest names"), "{reason}");
    }

    /// The record and the footer of one table agree; each other field is named when it
    /// differs; a moved table (sequence record, unsequence footer) is not a mismatch.
    #[test]
    fn a_record_mismatch_names_the_fields_that_disagree() {
        let stats = TableStats {
            entries: 3,
            min_ts: 10,
            max_ts: 20,
            min_seqno: 1,
            max_seqno: 3,
            partition: 0,
            file_bytes: 400,
            footer_checksum: 77,
            ..TableStats::default()
        };
        let record = table_record(9, 0, false, &stats);
        assert_eq!(record_mismatch(&record, &stats), None);
        assert_eq!(record_mismatch(&TableRecord { sequence: true, ..record.clone() }, &stats), None);
        let sequence = TableStats { sequence: true, ..stats };
        let reason = record_mismatch(&record, &sequence).unwrap();
        assert!(reason.contains("disagrees") && reason.contains("sequence flag"), "{reason}");
        let other = TableStats { partition: 4, max_ts: 25, footer_checksum: 78, ..stats };
        let reason = record_mismatch(&record, &other).unwrap();
        assert!(reason.contains("footer checksum 0x000000000000004d"), "{reason}");
        assert!(
            reason.contains("partition (manifest 0, table 4), max_ts (manifest 20, table 25)"),
            "{reason}"
        );
    }

    #[test]
    fn table_names_round_trip() {
        assert_eq!(table_name(42), "000042.sst");
        assert_eq!(parse_table_name("000042.sst"), Some(42));
        assert_eq!(parse_table_name(&table_name(u64::MAX)), Some(u64::MAX));
        assert_eq!(parse_table_name("42.sst"), None);
        assert_eq!(parse_table_name("000042.sst.tmp"), None);
        assert_eq!(parse_table_name("00004x.sst"), None);
    }
}
