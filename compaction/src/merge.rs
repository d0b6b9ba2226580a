//! The k-way merge of tables into one: the core of the compaction executor.
//!
//! Inputs are tables of one partition; each yields its entries in table order (user asc,
//! ts asc, seqno desc). The merge keeps the smallest head of every input in a heap and feeds
//! the builder in table order. Seqnos are unique across a database, so no two inputs hold
//! the same `(user, ts, seqno)`; the builder refuses such a pair as out of order, which
//! turns a broken invariant into an error rather than a silently merged table.
//!
//! [`merge_into`] keeps every entry: every version, delete and range delete.
//! [`merge_settled`] is the settle step's merge for a whole partition when no snapshot needs
//! an older state: it keeps each key's newest version only, applies and drops the deletes,
//! and zeroes the seqnos (which then cost nothing in the table). The retention rules and
//! the per-user cap of the compaction issue come between the merge and the builder too.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use strata_sstable::{Entry, Kind, Table, TableBuilder, TableIter};

use crate::Result;

/// The order of table entries as a heap key.
type Key = (u64, i64, Reverse<u64>);

/// The k-way merge of tables in table order.
struct Merge {
    iters: Vec<TableIter>,
    heads: Vec<Option<Entry>>,
    heap: BinaryHeap<Reverse<(Key, usize)>>,
}

impl Merge {
    fn new(inputs: &[Table]) -> Result<Merge> {
        let mut iters: Vec<TableIter> = inputs.iter().map(Table::iter).collect();
        let mut heads = Vec::with_capacity(iters.len());
        let mut heap = BinaryHeap::with_capacity(iters.len());
        for (i, iter) in iters.iter_mut().enumerate() {
            let head = iter.next().transpose()?;
            if let Some(entry) = &head {
                heap.push(Reverse((entry.key(), i)));
            }
            heads.push(head);
        }
        Ok(Merge { iters, heads, heap })
    }

    /// The next entry in table order; a read error or damaged input is returned as is.
    fn next(&mut self) -> Result<Option<Entry>> {
        while let Some(Reverse((_, i))) = self.heap.pop() {
            let Some(entry) = self.heads[i].take() else { continue };
            let next = self.iters[i].next().transpose()?;
            if let Some(next) = &next {
                self.heap.push(Reverse((next.key(), i)));
            }
            self.heads[i] = next;
            return Ok(Some(entry));
        }
        Ok(None)
    }
}

/// Streams every entry of `inputs` into `builder` in table order; returns how many. A read
/// error or a damaged input aborts the merge with its error (the caller abandons the
/// builder and keeps the inputs).
pub fn merge_into(inputs: &[Table], builder: &mut TableBuilder) -> Result<u64> {
    let mut merge = Merge::new(inputs)?;
    let mut written = 0u64;
    while let Some(entry) = merge.next()? {
        builder.add(&entry)?;
        written += 1;
    }
    Ok(written)
}

/// Merges `inputs` keeping, for each `(user, ts)`, its newest version only, and only if
/// that is a put that no newer range delete of the inputs covers; point and range deletes
/// are dropped once applied, and the puts are written with seqno 0. Returns the puts kept.
///
/// Valid only when `inputs` are every table of their partition and no live snapshot is
/// older than their newest seqno. Then no older version of these keys exists anywhere (a
/// key belongs to one partition), every later write carries a higher seqno than 0 and
/// still wins, and a later range delete still covers the zeroed puts; a snapshot taken
/// later reads the newest versions, which is what is kept. Errors as [`merge_into`].
pub fn merge_settled(inputs: &[Table], builder: &mut TableBuilder) -> Result<u64> {
    let mut merge = Merge::new(inputs)?;
    let mut written = 0u64;
    // The range deletes of the current user seen so far: `(first, last, seqno)`. Table
    // order puts a range delete at its first ts, before every entry it can cover.
    let mut deletes: Vec<(i64, i64, u64)> = Vec::new();
    let mut user: Option<u64> = None;
    let mut last_ts: Option<i64> = None;
    while let Some(entry) = merge.next()? {
        if user != Some(entry.user) {
            user = Some(entry.user);
            deletes.clear();
            last_ts = None;
        }
        if entry.kind == Kind::RangeDelete {
            deletes.push((entry.ts, entry.range_last().unwrap_or(entry.ts), entry.seqno));
            continue;
        }
        if last_ts == Some(entry.ts) {
            continue; // an older version of a key already decided
        }
        last_ts = Some(entry.ts);
        let covered = deletes
            .iter()
            .any(|&(first, last, seqno)| first <= entry.ts && entry.ts <= last && seqno > entry.seqno);
        if entry.kind == Kind::Delete || covered {
            continue;
        }
        builder.add(&Entry { seqno: 0, ..entry })?;
        written += 1;
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use strata_sstable::{table_order, BlockCache, TableMeta, TableOptions};
    use strata_vfs::{FileSystem, SimFs};

    use super::*;

    fn build(fs: &Arc<dyn FileSystem>, name: &str, mut entries: Vec<Entry>) -> Table {
        entries.sort_by(table_order);
        let path = std::path::Path::new("/t").join(name);
        fs.create_dir(std::path::Path::new("/t")).unwrap();
        let mut builder =
            TableBuilder::create(Arc::clone(fs), &path, TableOptions::default(), TableMeta::default())
                .unwrap();
        for e in &entries {
            builder.add(e).unwrap();
        }
        builder.finish().unwrap();
        Table::open(fs.as_ref(), &path, Arc::new(BlockCache::new(1 << 20))).unwrap()
    }

    /// Runs `merge` over `tables` into a fresh table; returns its count and its entries.
    fn run_merge(
        fs: &Arc<dyn FileSystem>,
        tables: &[Table],
        merge: fn(&[Table], &mut TableBuilder) -> Result<u64>,
    ) -> (u64, Vec<Entry>) {
        let out = std::path::Path::new("/t/out.sst");
        let mut builder =
            TableBuilder::create(Arc::clone(fs), out, TableOptions::default(), TableMeta::default()).unwrap();
        let written = merge(tables, &mut builder).unwrap();
        builder.finish().unwrap();
        let merged = Table::open(fs.as_ref(), out, Arc::new(BlockCache::new(1 << 20))).unwrap();
        (written, merged.iter().map(|e| e.unwrap()).collect())
    }

    #[test]
    fn the_merge_is_the_sorted_union_of_its_inputs() {
        let fs: Arc<dyn FileSystem> = Arc::new(SimFs::new());
        let mut all = Vec::new();
        let mut tables = Vec::new();
        let mut seqno = 1;
        for t in 0..4u64 {
            let mut entries = Vec::new();
            for i in 0..500i64 {
                let user = (i as u64 * 7 + t) % 13;
                let entry = match i % 11 {
                    0 => Entry::delete(user, i % 50, seqno),
                    1 => Entry::range_delete(user, i % 50, i % 50 + 3, seqno),
                    _ => Entry::put(
                        user,
                        i % 50,
                        seqno,
                        vec![u8::try_from(t).unwrap(); usize::try_from(i % 9).unwrap()],
                    ),
                };
                seqno += 1;
                entries.push(entry);
            }
            all.extend(entries.iter().cloned());
            tables.push(build(&fs, &format!("in{t}.sst"), entries));
        }
        let (written, got) = run_merge(&fs, &tables, merge_into);
        assert_eq!(written, all.len() as u64);
        all.sort_by(table_order);
        assert_eq!(got, all);
    }

    /// The settled merge against a model: per key, the newest entry by seqno; kept if it
    /// is a put no newer range delete (of the same user, covering its ts) hides.
    #[test]
    fn the_settled_merge_keeps_each_keys_newest_live_put_with_seqno_zero() {
        let fs: Arc<dyn FileSystem> = Arc::new(SimFs::new());
        let mut all = Vec::new();
        let mut tables = Vec::new();
        let mut seqno = 1;
        for t in 0..4u64 {
            let mut entries = Vec::new();
            for i in 0..400i64 {
                let user = (i as u64 * 5 + t) % 7;
                let ts = if i % 13 == 0 { i64::MIN } else { i % 40 };
                let entry = match i % 9 {
                    0 => Entry::delete(user, ts, seqno),
                    1 => Entry::range_delete(user, ts, ts.saturating_add(5), seqno),
                    _ => Entry::put(user, ts, seqno, vec![u8::try_from(t).unwrap(); 3]),
                };
                seqno += 1;
                entries.push(entry);
            }
            all.extend(entries.iter().cloned());
            tables.push(build(&fs, &format!("s{t}.sst"), entries));
        }
        let (written, got) = run_merge(&fs, &tables, merge_settled);

        let mut newest: std::collections::BTreeMap<(u64, i64), &Entry> = Default::default();
        for e in all.iter().filter(|e| e.kind != Kind::RangeDelete) {
            let slot = newest.entry((e.user, e.ts)).or_insert(e);
            if e.seqno > slot.seqno {
                *slot = e;
            }
        }
        let want: Vec<Entry> = newest
            .values()
            .filter(|e| e.kind == Kind::Put)
            .filter(|e| {
                !all.iter().any(|d| {
                    d.kind == Kind::RangeDelete
                        && d.user == e.user
                        && d.ts <= e.ts
                        && e.ts <= d.range_last().unwrap()
                        && d.seqno > e.seqno
                })
            })
            .map(|e| Entry { seqno: 0, ..(*e).clone() })
            .collect();
        assert!(want.len() > 20 && want.len() < newest.len(), "the model exercises every rule");
        assert_eq!(got, want);
        assert_eq!(written, want.len() as u64);
    }
}
