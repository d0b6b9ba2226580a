//! [`Publisher`]: the visible seqno, advanced only over contiguous applied batches.
//!
//! Writers get their seqnos from the WAL in log order but finish inserting into the
//! memtable in any order. A read at seqno `S` must see every batch at or below `S` whole,
//! so `S` moves past a batch only once it and every batch before it are applied.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

/// The highest seqno a new read sees; see the module doc.
#[derive(Debug)]
pub(crate) struct Publisher {
    visible: AtomicU64,
    /// Applied batches waiting for an earlier one: first seqno -> last seqno.
    waiting: Mutex<BTreeMap<u64, u64>>,
}

impl Publisher {
    /// Starts with every seqno up to `visible` visible.
    pub fn new(visible: u64) -> Publisher {
        Publisher { visible: AtomicU64::new(visible), waiting: Mutex::new(BTreeMap::new()) }
    }

    /// The seqno a read taken now sees.
    pub fn visible(&self) -> u64 {
        self.visible.load(Ordering::Acquire)
    }

    /// Marks the batch `first..=last` applied.
    pub fn publish(&self, first: u64, last: u64) {
        let mut waiting = self.waiting.lock();
        let mut visible = self.visible.load(Ordering::Acquire);
        if first != visible + 1 {
            waiting.insert(first, last);
            return;
        }
        visible = last;
        while let Some(next_last) = waiting.remove(&(visible + 1)) {
            visible = next_last;
        }
        self.visible.store(visible, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advances_only_over_contiguous_batches() {
        let p = Publisher::new(10);
        p.publish(14, 20);
        assert_eq!(p.visible(), 10);
        p.publish(11, 13);
        assert_eq!(p.visible(), 20);
        p.publish(21, 21);
        assert_eq!(p.visible(), 21);
    }

    #[test]
    fn concurrent_publishers_reach_the_end() {
        let p = std::sync::Arc::new(Publisher::new(0));
        let threads: Vec<_> = (0..4u64)
            .map(|t| {
                let p = std::sync::Arc::clone(&p);
                std::thread::spawn(move || {
                    for i in 0..1000u64 {
                        let first = (i * 4 + t) * 2 + 1;
                        p.publish(first, first + 1);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(p.visible(), 8000);
    }
}
