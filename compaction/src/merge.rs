//! The k-way merge of tables into one: the core of the compaction executor.
//!
//! Inputs are tables of one partition; each yields its entries in table order (user asc,
//! ts asc, seqno desc). The merge keeps the smallest head of every input in a heap and feeds
//! the builder in table order. Seqnos are unique across a database, so no two inputs hold
//! the same `(user, ts, seqno)`; the builder refuses such a pair as out of order, which
//! turns a broken invariant into an error rather than a silently merged table.
//!
//! This merge keeps every entry: every version, delete and range delete. Dropping what no
//! reader can see (old versions, settled tombstones, expired and capped events) is the job
//! of the retention rules the compaction issue adds between the merge and the builder.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use strata_sstable::{Entry, Table, TableBuilder, TableIter};

use crate::Result;

/// The order of table entries as a heap key.
type Key = (u64, i64, Reverse<u64>);

/// Streams every entry of `inputs` into `builder` in table order; returns how many. A read
/// error or a damaged input aborts the merge with its error (the caller abandons the
/// builder and keeps the inputs).
pub fn merge_into(inputs: &[Table], builder: &mut TableBuilder) -> Result<u64> {
    let mut iters: Vec<TableIter> = inputs.iter().map(Table::iter).collect();
    let mut heads: Vec<Option<Entry>> = Vec::with_capacity(iters.len());
    let mut heap: BinaryHeap<Reverse<(Key, usize)>> = BinaryHeap::with_capacity(iters.len());
    for (i, iter) in iters.iter_mut().enumerate() {
        let head = iter.next().transpose()?;
        if let Some(entry) = &head {
            heap.push(Reverse((entry.key(), i)));
        }
        heads.push(head);
    }
    let mut written = 0u64;
    while let Some(Reverse((_, i))) = heap.pop() {
        let Some(entry) = heads[i].take() else { continue };
        builder.add(&entry)?;
        written += 1;
        let next = iters[i].next().transpose()?;
        if let Some(entry) = &next {
            heap.push(Reverse((entry.key(), i)));
        }
        heads[i] = next;
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
        let out = std::path::Path::new("/t/out.sst");
        let mut builder =
            TableBuilder::create(Arc::clone(&fs), out, TableOptions::default(), TableMeta::default())
                .unwrap();
        assert_eq!(merge_into(&tables, &mut builder).unwrap(), all.len() as u64);
        builder.finish().unwrap();
        let merged = Table::open(fs.as_ref(), out, Arc::new(BlockCache::new(1 << 20))).unwrap();
        all.sort_by(table_order);
        let got: Vec<Entry> = merged.iter().map(|e| e.unwrap()).collect();
        assert_eq!(got, all);
    }
}
