//! The SSTable measurement shared by the criterion bench and `strata-bench sstable`:
//! standard-workload events turned into table entries in table order, a timed table build on
//! the real file system, the byte split of a built table, and the query users (Zipf-drawn
//! users present in the table, random users absent from it).
//!
//! Entries are generated and sorted before any clock starts: sorting is the memtable's and
//! the compaction merge's work, not the builder's, so the build figure is the builder alone.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use strata_sstable::format::{Footer, FOOTER_LEN};
use strata_sstable::{table_order, Entry, TableBuilder, TableMeta, TableOptions, TableStats};
use strata_vfs::FileSystem;

use crate::workload::{mix64, user_of_rank, Rng, Workload, WorkloadConfig, Zipf};
use crate::{Error, Result};

/// Partition width written into the benchmark tables' footers (one day). The footer field is
/// informational for the reader; the benchmark puts the whole run into one table whatever
/// days it spans, because the figures are per table, not per partition.
pub const PARTITION_WIDTH_US: u64 = 86_400_000_000;

/// Salt that turns the workload seed into the query seed, so the query users are an
/// independent draw from the same Zipf (workload.md: "independent seed").
pub const QUERY_SEED_SALT: u64 = 0x5155_4552_5953_4545;
/// Salt of the absent-user draw.
const ABSENT_SEED_SALT: u64 = 0x4142_5345_4e54_5553;

/// Generates `events` events of `config`, gives them seqnos `1..=events` in arrival order
/// and sorts them into table order (user asc, ts asc, seqno desc). A `(user, ts)` that
/// occurs twice keeps both versions, the later arrival first.
pub fn table_entries(config: WorkloadConfig, events: u64) -> Vec<Entry> {
    let mut workload = Workload::new(config);
    let mut entries = Vec::with_capacity(usize::try_from(events).unwrap_or(0));
    for seqno in 1..=events {
        let event = workload.next_event();
        entries.push(Entry::put(event.user, event.ts, seqno, event.payload));
    }
    // Seqnos are unique, so no two entries compare equal and an unstable sort is exact.
    entries.sort_unstable_by(table_order);
    entries
}

/// Sets every seqno to 0, as a compaction does for a settled partition that no snapshot
/// reads below, and drops the older versions of each `(user, ts)` (table order puts the
/// newest first, so the first of a run is kept). Returns how many entries were dropped.
pub fn settle_seqnos(entries: &mut Vec<Entry>) -> usize {
    let before = entries.len();
    entries.dedup_by(|later, kept| later.user == kept.user && later.ts == kept.ts);
    for entry in entries.iter_mut() {
        entry.seqno = 0;
    }
    before - entries.len()
}

/// The footer metadata of a benchmark table holding `entries`.
pub fn table_meta(entries: &[Entry]) -> TableMeta {
    let min_ts = entries.iter().map(|e| e.ts).min().unwrap_or(0);
    let width = i64::try_from(PARTITION_WIDTH_US).unwrap_or(i64::MAX);
    TableMeta { partition: min_ts.div_euclid(width), partition_width: PARTITION_WIDTH_US, sequence: true }
}

/// What one timed build measured.
#[derive(Clone, Copy, Debug)]
pub struct BuildTiming {
    /// `TableBuilder::create` plus every `add` (block encoding and compression, appends).
    pub add: Duration,
    /// `finish`: the last block, index, filter, footer, fdatasync, rename, directory sync.
    pub finish: Duration,
    /// What `finish` returned.
    pub stats: TableStats,
}

impl BuildTiming {
    /// The whole build.
    pub fn total(&self) -> Duration {
        self.add + self.finish
    }
}

/// Builds `entries` (already in table order) into a table at `path`, timing `create` +
/// `add` and `finish` separately.
pub fn build_timed(
    fs: Arc<dyn FileSystem>,
    path: &Path,
    entries: &[Entry],
    options: TableOptions,
) -> Result<BuildTiming> {
    let meta = table_meta(entries);
    let start = Instant::now();
    let mut builder = TableBuilder::create(fs, path, options, meta)?;
    for entry in entries {
        builder.add(entry)?;
    }
    let add = start.elapsed();
    let start = Instant::now();
    let stats = builder.finish()?;
    let finish = start.elapsed();
    Ok(BuildTiming { add, finish, stats })
}

/// Where the bytes of a table file go, from its footer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ByteSplit {
    /// Data blocks (headers and compressed bodies).
    pub data: u64,
    /// Index entries (72 bytes a block).
    pub index: u64,
    /// The user filter.
    pub filter: u64,
    /// The range-delete list.
    pub range_deletes: u64,
    /// The footer.
    pub footer: u64,
    /// The whole file.
    pub file: u64,
}

/// Reads the footer of the table at `path` and splits its bytes by region.
pub fn byte_split(path: &Path) -> Result<ByteSplit> {
    let mut file = std::fs::File::open(path).map_err(|e| Error::io("open", path, e))?;
    let len = file.metadata().map_err(|e| Error::io("stat", path, e))?.len();
    let footer_len = FOOTER_LEN as u64;
    if len < footer_len {
        return Err(Error::Mismatch(format!("{}: {len} bytes is shorter than a footer", path.display())));
    }
    file.seek(SeekFrom::Start(len - footer_len)).map_err(|e| Error::io("seek", path, e))?;
    let mut tail = [0u8; FOOTER_LEN];
    file.read_exact(&mut tail).map_err(|e| Error::io("read footer of", path, e))?;
    // The footer is self-describing from its end, so its last FOOTER_LEN bytes decode alone.
    let footer = Footer::decode(&tail)
        .map_err(|err| Error::Mismatch(format!("{}: footer: {err:?}", path.display())))?;
    Ok(ByteSplit {
        data: footer.index_offset,
        index: footer.index_len,
        filter: footer.filter_len,
        range_deletes: footer.rangedel_len,
        footer: footer_len,
        file: len,
    })
}

/// Events per user in `entries`.
pub fn events_per_user(entries: &[Entry]) -> HashMap<u64, u64> {
    let mut counts = HashMap::new();
    for entry in entries {
        *counts.entry(entry.user).or_insert(0) += 1;
    }
    counts
}

/// `n` users drawn from the workload's Zipf with a seed independent of the ingest, keeping
/// only users that have at least one event in `present` (a query for a user the table lacks
/// measures the filter, not "latest"). Returns the users and how many draws were skipped.
pub fn zipf_query_users(config: &WorkloadConfig, present: &HashMap<u64, u64>, n: usize) -> (Vec<u64>, u64) {
    let zipf = Zipf::new(config.users, config.zipf_s);
    let mut rng = Rng::new(mix64(config.seed ^ QUERY_SEED_SALT));
    let mut users = Vec::with_capacity(n);
    let mut skipped = 0u64;
    // An empty table has no user to find; stop rather than draw forever.
    while users.len() < n && !present.is_empty() {
        let user = user_of_rank(zipf.sample(&mut rng));
        if present.contains_key(&user) {
            users.push(user);
        } else {
            skipped += 1;
        }
    }
    (users, skipped)
}

/// `n` uniformly random user ids that are not in `present`.
pub fn absent_users(config: &WorkloadConfig, present: &HashMap<u64, u64>, n: usize) -> Vec<u64> {
    let mut rng = Rng::new(mix64(config.seed ^ ABSENT_SEED_SALT));
    let mut users = Vec::with_capacity(n);
    while users.len() < n {
        let user = rng.next_u64();
        if !present.contains_key(&user) {
            users.push(user);
        }
    }
    users
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_in_table_order_and_settling_keeps_the_newest() {
        let mut entries = table_entries(WorkloadConfig::default(), 20_000);
        assert_eq!(entries.len(), 20_000);
        assert!(entries.windows(2).all(|w| table_order(&w[0], &w[1]).is_lt()));
        // Make a duplicate key: the older version must go, the newer stay.
        let (user, ts) = (entries[0].user, entries[0].ts);
        entries.insert(1, Entry::put(user, ts, 0, vec![7u8; 64]));
        let newest = entries[0].value.clone();
        let dropped = settle_seqnos(&mut entries);
        assert_eq!(dropped, 1);
        assert_eq!(entries[0].value, newest);
        assert!(entries.iter().all(|e| e.seqno == 0));
        assert!(entries.windows(2).all(|w| table_order(&w[0], &w[1]).is_lt()));
    }

    #[test]
    fn query_users_are_present_and_absent_users_absent() {
        let config = WorkloadConfig::default();
        let entries = table_entries(config.clone(), 5_000);
        let present = events_per_user(&entries);
        let (users, _) = zipf_query_users(&config, &present, 1_000);
        assert_eq!(users.len(), 1_000);
        assert!(users.iter().all(|u| present.contains_key(u)));
        let absent = absent_users(&config, &present, 1_000);
        assert!(absent.iter().all(|u| !present.contains_key(u)));
    }

    #[test]
    fn byte_split_adds_up_to_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.sst");
        let entries = table_entries(WorkloadConfig::default(), 3_000);
        let fs: Arc<dyn FileSystem> = Arc::new(strata_vfs::OsFs::new());
        let built = build_timed(fs, &path, &entries, TableOptions::default()).unwrap();
        let split = byte_split(&path).unwrap();
        assert_eq!(split.file, built.stats.file_bytes);
        assert_eq!(split.data + split.index + split.filter + split.range_deletes + split.footer, split.file);
    }
}
