//! The k-way merge of tables: the first stage of the executor (`rules.rs` decides what of
//! its stream is kept).
//!
//! Inputs are tables of one partition; each yields its entries in table order (user asc,
//! ts asc, seqno desc). The merge keeps the smallest head of every input in a heap and
//! yields every entry of every input in table order. Seqnos are unique across a database,
//! so no two inputs hold the same `(user, ts, seqno)`; the builder refuses such a pair as
//! out of order, which turns a broken invariant into an error rather than a silently merged
//! table.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use strata_sstable::{Entry, Table, TableIter};

use crate::Result;

/// The order of table entries as a heap key.
type Key = (u64, i64, Reverse<u64>);

/// The k-way merge of tables in table order.
pub(crate) struct Merge {
    iters: Vec<TableIter>,
    heads: Vec<Option<Entry>>,
    heap: BinaryHeap<Reverse<(Key, usize)>>,
}

impl Merge {
    pub(crate) fn new(inputs: &[Table]) -> Result<Merge> {
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
    pub(crate) fn next(&mut self) -> Result<Option<Entry>> {
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use strata_sstable::{table_order, BlockCache, TableBuilder, TableMeta, TableOptions};
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
        let mut merge = Merge::new(&tables).unwrap();
        let mut got = Vec::new();
        while let Some(entry) = merge.next().unwrap() {
            got.push(entry);
        }
        all.sort_by(table_order);
        assert_eq!(got, all);
    }

    #[test]
    fn no_inputs_merge_to_nothing() {
        assert!(Merge::new(&[]).unwrap().next().unwrap().is_none());
    }
}
