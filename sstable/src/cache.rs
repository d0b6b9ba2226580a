//! The decoded-block cache shared by every table reader: a byte budget split over shards,
//! each shard an LRU behind its own `parking_lot::Mutex`, so that readers of different
//! blocks rarely wait on each other.
//!
//! The cache is generic over the value it holds (`Cache<V>`) and keyed by [`CacheKey`]
//! (table id, block offset); the crate names its block cache `BlockCache`.
//!
//! # Design
//!
//! A key's shard is chosen by bits 32 and up of its hash; the shard's `HashMap` uses the low
//! bits and the top 7, so the two choices do not correlate. Each shard holds a `HashMap`
//! from key to slot index and a `Vec` of slots threaded on an intrusive doubly-linked list
//! (most recently used at the head), with a free list of vacant slots: `get` and `insert`
//! are O(1) apart from the evictions an insert causes; only `remove_table` walks a shard.
//! Values are `Arc`s: a reader keeps its block alive after eviction, and evicted values are
//! dropped after the shard lock is released, so freeing a large block does not stall other
//! readers of the shard.
//!
//! # Invariants
//!
//! - The shards' shares of the budget sum to exactly `capacity_bytes`, and a shard's charged
//!   bytes never exceed its share after any operation; so the cache's bytes never exceed
//!   `capacity_bytes`.
//! - An entry whose charge exceeds its shard's share is not cached; the caller still gets
//!   its value. Inserting a key that is already cached replaces the old entry (except in
//!   `get_or_insert_with`, which keeps the entry that won the race, so that all readers
//!   share one decoded copy).
//! - `map`, the linked list and `usage` always describe the same set of entries; `entries`
//!   in [`CacheStats`] is `inserts - evictions - removals` (replacements and
//!   `remove_table` are removals, and are not counted as evictions).
//! - A loader runs outside every lock, so a slow decode never blocks a shard, and two
//!   readers missing the same block may both decode it (only one copy is kept).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::sync::Arc;

use parking_lot::Mutex;

/// Most shards a cache made by [`Cache::new`] has.
const MAX_SHARDS: usize = 16;
/// [`Cache::new`] uses fewer shards rather than give a shard less than this, so that a
/// small cache still holds large blocks.
const MIN_SHARD_BYTES: usize = 512 * 1024;
/// The end of a list, or no slot.
const NIL: usize = usize::MAX;
/// Budget per remembered first miss ([`Cache::lookup`]): one ghost slot per 256 KiB, about
/// 18 cached blocks (a decoded 8 KiB block takes about 14 KiB), at least 64 per shard. A
/// slot is direct-mapped, so a block is admitted only if it misses again before another
/// first miss of its shard lands on the same slot: within about as many misses as the
/// shard has slots. Admissions are what a reader pays most for (a whole block read, checked
/// and decoded: 14 to 28 µs in the standard run) and they make the slowest 2% of "latest
/// 100" queries, so fewer of them buy the tail more than the extra first misses (the
/// user's entries only) cost.
///
/// Measured with `strata-bench run --preset standard --engines strata --mixed-secs 0
/// --sync-events 0`, alternating runs (docs/PERFORMANCE.md). The 256 MiB cache has 16
/// shards of 16 MiB, so 512 KiB and 1 MiB both gave the floor of 64 slots a shard, which
/// is what 256 KiB gives: p99 25.6 / 21.2 / 28.5 / 21.7 and 27.7 / 22.5 µs, 140k / 145k /
/// 129k / 148k and 134k / 144k queries/s; 128 KiB (128 slots a shard) gave 28.3 / 31.9 /
/// 29.9 / 32.4 µs and 143k / 133k / 139k / 133k. The engine bench's same-seed warm-up
/// (`strata-bench engine --query-only`) barely moves: p99 15.5 / 16.0 against 16.4 / 16.5
/// µs. Earlier, one slot per cached block (8 KiB) admitted 133,000 blocks in 200,000
/// queries, mostly evicted before a second use.
const GHOST_BYTES: usize = 256 * 1024;

/// What [`Cache::lookup`] found.
pub enum Lookup<V> {
    /// The cached value, now the most recently used of its shard.
    Hit(Arc<V>),
    /// A miss of a key that missed once before, not long ago: worth caching now.
    Again,
    /// A first miss: the key is remembered, not cached.
    First,
}

/// What a cached block is called: the table it belongs to and its offset in the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CacheKey {
    /// The table id (unique in a database for its lifetime).
    pub table: u64,
    /// The block's byte offset in the table file.
    pub offset: u64,
}

/// Counters of a cache, summed over its shards (each shard's counters are read under its
/// lock, so a snapshot taken while other threads work is consistent per shard only).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Lookups that found their key.
    pub hits: u64,
    /// Lookups that did not.
    pub misses: u64,
    /// Entries added (oversized values and values that lost a load race are not counted).
    pub inserts: u64,
    /// Entries dropped to make room for others.
    pub evictions: u64,
    /// Sum of the charges of the cached entries.
    pub bytes: u64,
    /// Entries cached.
    pub entries: u64,
}

/// A cheap hasher for [`CacheKey`]: the keys are our own, not an attacker's, so SipHash's
/// DoS resistance buys nothing; the murmur3 finalizer spreads every input bit to every
/// output bit, which both the shard choice and the map's control bytes need.
#[derive(Clone, Copy, Debug, Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = (self.0.rotate_left(23) ^ value).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }

    fn finish(&self) -> u64 {
        let mut x = self.0;
        x ^= x >> 33;
        x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
        x ^= x >> 33;
        x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        x ^ (x >> 33)
    }
}

type KeyMap = HashMap<CacheKey, usize, BuildHasherDefault<KeyHasher>>;

fn hash_key(key: CacheKey) -> u64 {
    let mut hasher = KeyHasher::default();
    key.hash(&mut hasher);
    hasher.finish()
}

fn to_u64(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

struct Slot<V> {
    key: CacheKey,
    /// `None` while the slot is on the free list, so a vacant slot holds no memory.
    value: Option<Arc<V>>,
    charge: usize,
    prev: usize,
    next: usize,
}

/// One LRU list with its share of the budget.
struct Shard<V> {
    capacity: usize,
    usage: usize,
    map: KeyMap,
    slots: Vec<Slot<V>>,
    free: Vec<usize>,
    /// Most recently used.
    head: usize,
    /// Least recently used: the next to go.
    tail: usize,
    hits: u64,
    misses: u64,
    inserts: u64,
    evictions: u64,
    /// Hashes of keys that missed once and were not cached ([`Cache::lookup`]), one per
    /// slot of a direct-mapped table: a later miss of the same key finds its hash and is
    /// admitted. A collision only forgets a key, so a block is cached a miss later.
    ghosts: Vec<u64>,
}

impl<V> Shard<V> {
    fn new(capacity: usize) -> Self {
        Shard {
            capacity,
            usage: 0,
            map: KeyMap::default(),
            slots: Vec::new(),
            free: Vec::new(),
            head: NIL,
            tail: NIL,
            hits: 0,
            misses: 0,
            inserts: 0,
            evictions: 0,
            ghosts: Vec::new(),
        }
    }

    /// Whether `key` (hashed `hash`) missed before since its ghost was last cleared; then
    /// clears it, else remembers it. The table is sized on first use to one slot per
    /// [`GHOST_BYTES`] of budget, at least 64.
    fn missed_before(&mut self, hash: u64) -> bool {
        if self.ghosts.is_empty() {
            self.ghosts = vec![0; (self.capacity / GHOST_BYTES).max(64)];
        }
        let n = to_u64(self.ghosts.len());
        let Some(ghost) = self.ghosts.get_mut(usize::try_from(hash % n).unwrap_or(0)) else { return true };
        // 0 marks an empty slot; a key hashing to 0 is simply never remembered.
        let again = *ghost == hash && hash != 0;
        *ghost = if again { 0 } else { hash };
        again
    }

    fn unlink(&mut self, i: usize) {
        let (prev, next) = match self.slots.get(i) {
            Some(slot) => (slot.prev, slot.next),
            None => return,
        };
        match self.slots.get_mut(prev) {
            Some(p) => p.next = next,
            None => self.head = next,
        }
        match self.slots.get_mut(next) {
            Some(n) => n.prev = prev,
            None => self.tail = prev,
        }
    }

    fn push_front(&mut self, i: usize) {
        let old_head = self.head;
        if let Some(slot) = self.slots.get_mut(i) {
            slot.prev = NIL;
            slot.next = old_head;
        }
        match self.slots.get_mut(old_head) {
            Some(h) => h.prev = i,
            None => self.tail = i,
        }
        self.head = i;
    }

    fn touch(&mut self, i: usize) -> Option<Arc<V>> {
        if self.head != i {
            self.unlink(i);
            self.push_front(i);
        }
        self.slots.get(i).and_then(|slot| slot.value.clone())
    }

    fn get(&mut self, key: CacheKey) -> Option<Arc<V>> {
        let found = self.map.get(&key).copied().and_then(|i| self.touch(i));
        match found {
            Some(_) => self.hits += 1,
            None => self.misses += 1,
        }
        found
    }

    /// Takes slot `i` out of the map, the list and the budget; returns its value so the
    /// caller can drop it after unlocking.
    fn remove_slot(&mut self, i: usize) -> Option<Arc<V>> {
        self.unlink(i);
        let slot = self.slots.get_mut(i)?;
        let value = slot.value.take();
        let (key, charge) = (slot.key, slot.charge);
        self.map.remove(&key);
        self.usage -= charge;
        self.free.push(i);
        value
    }

    /// Caches `value` under `key`. With `keep_existing`, an entry already cached under `key`
    /// wins and is returned instead; otherwise it is replaced. Values to drop (replaced,
    /// evicted, or `value` itself when it lost) are pushed onto `garbage`.
    fn insert(
        &mut self,
        key: CacheKey,
        value: Arc<V>,
        charge: usize,
        keep_existing: bool,
        garbage: &mut Vec<Arc<V>>,
    ) -> Arc<V> {
        if let Some(&i) = self.map.get(&key) {
            if keep_existing {
                if let Some(existing) = self.touch(i) {
                    garbage.push(value);
                    return existing;
                }
            }
            garbage.extend(self.remove_slot(i));
        }
        if charge > self.capacity {
            return value;
        }
        while self.usage + charge > self.capacity && self.tail != NIL {
            let lru = self.tail;
            garbage.extend(self.remove_slot(lru));
            self.evictions += 1;
        }
        let slot = Slot { key, value: Some(Arc::clone(&value)), charge, prev: NIL, next: NIL };
        let i = match self.free.pop() {
            Some(i) => {
                if let Some(vacant) = self.slots.get_mut(i) {
                    *vacant = slot;
                }
                i
            }
            None => {
                self.slots.push(slot);
                self.slots.len() - 1
            }
        };
        self.push_front(i);
        self.map.insert(key, i);
        self.usage += charge;
        self.inserts += 1;
        value
    }

    fn remove_table(&mut self, table: u64, garbage: &mut Vec<Arc<V>>) {
        let doomed: Vec<usize> = self.map.iter().filter(|(k, _)| k.table == table).map(|(_, &i)| i).collect();
        for i in doomed {
            garbage.extend(self.remove_slot(i));
        }
    }
}

/// A sharded LRU cache of `Arc<V>` under a byte budget; see the module documentation.
pub struct Cache<V> {
    shards: Box<[Mutex<Shard<V>>]>,
    capacity: usize,
}

impl<V> std::fmt::Debug for Cache<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("capacity", &self.capacity)
            .field("shards", &self.shards.len())
            .field("stats", &self.stats())
            .finish()
    }
}

impl<V> Cache<V> {
    /// A cache of `capacity_bytes` over up to 16 shards: fewer when the capacity is small,
    /// so that each shard's share stays at least 512 KiB (a shard must hold a whole block).
    pub fn new(capacity_bytes: usize) -> Self {
        let mut shards = MAX_SHARDS;
        while shards > 1 && capacity_bytes / shards < MIN_SHARD_BYTES {
            shards /= 2;
        }
        Self::with_shards(capacity_bytes, shards)
    }

    /// A cache of `capacity_bytes` split over exactly `shards` shards (at least one). The
    /// remainder of the division goes to the first shards, so the shares sum to the capacity.
    pub fn with_shards(capacity_bytes: usize, shards: usize) -> Self {
        let shards = shards.max(1);
        let share = capacity_bytes / shards;
        let extra = capacity_bytes % shards;
        let shards = (0..shards).map(|i| Mutex::new(Shard::new(share + usize::from(i < extra)))).collect();
        Cache { shards, capacity: capacity_bytes }
    }

    fn shard(&self, key: CacheKey) -> &Mutex<Shard<V>> {
        let n = to_u64(self.shards.len());
        let i = usize::try_from((hash_key(key) >> 32) % n).unwrap_or(0);
        // `i < len` by construction; the fallback only keeps this free of indexing panics.
        self.shards.get(i).unwrap_or(&self.shards[0])
    }

    /// The value cached under `key`, if any; unlike [`Cache::get`], it neither counts a hit
    /// or a miss nor makes the entry recently used (a whole-table scan should not decide
    /// what readers keep).
    pub fn peek(&self, key: CacheKey) -> Option<Arc<V>> {
        let shard = self.shard(key).lock();
        let slot = *shard.map.get(&key)?;
        shard.slots.get(slot).and_then(|s| s.value.clone())
    }

    /// The value cached under `key`, now the most recently used of its shard.
    pub fn get(&self, key: CacheKey) -> Option<Arc<V>> {
        self.shard(key).lock().get(key)
    }

    /// The value cached under `key`, or whether the key missed before. A reader that only
    /// needs a sliver of a block decodes that sliver on a first miss and caches the whole
    /// block on the next ([`Cache::insert_shared`]): a block read once, by a cold user's
    /// query, then never pushes out blocks that readers come back to (the "doorkeeper" of
    /// TinyLFU, Einziger et al. 2017).
    pub fn lookup(&self, key: CacheKey) -> Lookup<V> {
        let mut shard = self.shard(key).lock();
        match shard.get(key) {
            Some(value) => Lookup::Hit(value),
            None if shard.missed_before(hash_key(key)) => Lookup::Again,
            None => Lookup::First,
        }
    }

    /// Caches `value` under `key`, charged `charge` bytes, unless another thread cached the
    /// key meanwhile: then that value is returned and this one dropped, so readers share one
    /// copy (the second half of [`Cache::get_or_insert_with`]).
    pub fn insert_shared(&self, key: CacheKey, value: V, charge: usize) -> Arc<V> {
        let mut garbage = Vec::new();
        let value = self.shard(key).lock().insert(key, Arc::new(value), charge, true, &mut garbage);
        drop(garbage);
        value
    }

    /// Caches `value` under `key`, charged `charge` bytes, replacing any entry of the same
    /// key and evicting least recently used entries of the shard until the charge fits. A
    /// value whose charge exceeds the shard's share is not cached.
    pub fn insert(&self, key: CacheKey, value: Arc<V>, charge: usize) {
        let mut garbage = Vec::new();
        self.shard(key).lock().insert(key, value, charge, false, &mut garbage);
        drop(garbage);
    }

    /// The value cached under `key`, or the one `load` returns as `(value, charge)`, which is
    /// then cached. `load` runs without any lock held; if another thread cached the key
    /// meanwhile, its value is returned and this one dropped, so readers share one copy.
    pub fn get_or_insert_with<E>(
        &self,
        key: CacheKey,
        load: impl FnOnce() -> Result<(V, usize), E>,
    ) -> Result<Arc<V>, E> {
        let shard = self.shard(key);
        if let Some(value) = shard.lock().get(key) {
            return Ok(value);
        }
        let (value, charge) = load()?;
        let mut garbage = Vec::new();
        let value = shard.lock().insert(key, Arc::new(value), charge, true, &mut garbage);
        drop(garbage);
        Ok(value)
    }

    /// Drops every cached block of `table` (its file is being deleted). Walks each shard.
    pub fn remove_table(&self, table: u64) {
        for shard in self.shards.iter() {
            let mut garbage = Vec::new();
            shard.lock().remove_table(table, &mut garbage);
            drop(garbage);
        }
    }

    /// Counters summed over the shards.
    pub fn stats(&self) -> CacheStats {
        let mut stats = CacheStats::default();
        for shard in self.shards.iter() {
            let s = shard.lock();
            stats.hits += s.hits;
            stats.misses += s.misses;
            stats.inserts += s.inserts;
            stats.evictions += s.evictions;
            stats.bytes += to_u64(s.usage);
            stats.entries += to_u64(s.map.len());
        }
        stats
    }

    /// The byte budget.
    pub fn capacity_bytes(&self) -> usize {
        self.capacity
    }

    /// Number of shards.
    pub fn shards(&self) -> usize {
        self.shards.len()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn key(table: u64, offset: u64) -> CacheKey {
        CacheKey { table, offset }
    }

    /// Keys from most to least recently used, walking the list, after checking that the
    /// list, the map and the usage agree.
    fn order<V>(cache: &Cache<V>) -> Vec<CacheKey> {
        assert_eq!(cache.shards.len(), 1);
        let s = cache.shards[0].lock();
        let mut keys = Vec::new();
        let (mut i, mut prev, mut usage) = (s.head, NIL, 0);
        while i != NIL {
            let slot = &s.slots[i];
            assert_eq!(slot.prev, prev);
            assert_eq!(s.map[&slot.key], i);
            assert!(slot.value.is_some());
            keys.push(slot.key);
            usage += slot.charge;
            prev = i;
            i = slot.next;
        }
        assert_eq!(s.tail, prev);
        assert_eq!(keys.len(), s.map.len());
        assert_eq!(usage, s.usage);
        assert_eq!(s.free.len() + keys.len(), s.slots.len());
        keys
    }

    #[test]
    fn is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Cache<Vec<u8>>>();
    }

    #[test]
    fn new_keeps_shards_large_enough() {
        assert_eq!(Cache::<u8>::new(0).shards(), 1);
        assert_eq!(Cache::<u8>::new(1 << 20).shards(), 2);
        assert_eq!(Cache::<u8>::new(8 << 20).shards(), 16);
        assert_eq!(Cache::<u8>::new(1 << 30).shards(), 16);
        let c = Cache::<u8>::with_shards(1003, 16);
        let total: usize = c.shards.iter().map(|s| s.lock().capacity).sum();
        assert_eq!(total, 1003);
        assert_eq!(c.capacity_bytes(), 1003);
    }

    #[test]
    fn peek_neither_counts_nor_reorders() {
        let c = Cache::with_shards(1 << 20, 1);
        c.insert(key(1, 0), Arc::new(1u8), 10);
        c.insert(key(1, 8), Arc::new(2u8), 10);
        let before = (order(&c), c.stats());
        assert_eq!(c.peek(key(1, 0)).as_deref(), Some(&1));
        assert!(c.peek(key(2, 0)).is_none());
        assert_eq!((order(&c), c.stats()), before);
    }

    #[test]
    fn get_after_insert_returns_the_same_arc() {
        let c = Cache::new(1 << 20);
        let v = Arc::new(7u32);
        c.insert(key(1, 0), Arc::clone(&v), 10);
        assert!(Arc::ptr_eq(&c.get(key(1, 0)).unwrap(), &v));
        assert!(c.get(key(1, 64)).is_none());
        let s = c.stats();
        assert_eq!((s.hits, s.misses, s.inserts, s.bytes, s.entries), (1, 1, 1, 10, 1));
    }

    #[test]
    fn evicts_least_recently_used_first() {
        let c = Cache::with_shards(30, 1);
        for o in 0..3 {
            c.insert(key(1, o), Arc::new(o), 10);
        }
        assert!(c.get(key(1, 0)).is_some()); // now 1 is the least recently used
        c.insert(key(1, 3), Arc::new(3), 10);
        assert!(c.get(key(1, 1)).is_none());
        assert_eq!(order(&c), vec![key(1, 3), key(1, 0), key(1, 2)]);
        c.insert(key(1, 4), Arc::new(4), 20);
        assert_eq!(order(&c), vec![key(1, 4), key(1, 3)]);
        assert_eq!(c.stats().evictions, 3);
        assert_eq!(c.stats().bytes, 30);
    }

    #[test]
    fn oversized_values_are_returned_but_not_cached() {
        let c = Cache::with_shards(100, 1);
        c.insert(key(1, 0), Arc::new(0u8), 50);
        let v = c.get_or_insert_with(key(1, 1), || Ok::<_, ()>((1u8, 101))).unwrap();
        assert_eq!(*v, 1);
        assert!(c.get(key(1, 1)).is_none());
        assert!(c.get(key(1, 0)).is_some(), "an oversized value must not evict others");
        assert_eq!(c.stats().inserts, 1);
    }

    #[test]
    fn get_or_insert_with_loads_once_and_passes_errors_through() {
        let c = Cache::new(1 << 20);
        let mut loads = 0;
        for _ in 0..3 {
            let v = c
                .get_or_insert_with(key(2, 8), || {
                    loads += 1;
                    Ok::<_, String>((String::from("block"), 5))
                })
                .unwrap();
            assert_eq!(*v, "block");
        }
        assert_eq!(loads, 1);
        let err = c.get_or_insert_with(key(2, 16), || Err::<(String, usize), _>("bad")).unwrap_err();
        assert_eq!(err, "bad");
        assert!(c.get(key(2, 16)).is_none());
    }

    fn found<V>(lookup: Lookup<V>) -> &'static str {
        match lookup {
            Lookup::Hit(_) => "hit",
            Lookup::Again => "again",
            Lookup::First => "first",
        }
    }

    /// The doorkeeper: a key is admitted on its second miss, and a first miss caches
    /// nothing; `insert_shared` keeps a copy another thread cached first.
    #[test]
    fn lookup_admits_a_key_on_its_second_miss() {
        let c = Cache::with_shards(1 << 20, 1);
        assert_eq!(found(c.lookup(key(1, 0))), "first");
        assert_eq!(found(c.lookup(key(1, 4096))), "first", "another key");
        assert_eq!(c.stats().entries, 0, "a first miss caches nothing");
        assert_eq!(found(c.lookup(key(1, 0))), "again");
        let kept = c.insert_shared(key(1, 0), String::from("block"), 5);
        let lost = c.insert_shared(key(1, 0), String::from("racer"), 5);
        assert!(Arc::ptr_eq(&kept, &lost), "the first copy cached wins");
        assert_eq!(found(c.lookup(key(1, 0))), "hit");
        assert_eq!(found(c.lookup(key(1, 4096))), "again");
        c.remove_table(1);
        assert_eq!(found(c.lookup(key(1, 0))), "first", "the ghost was cleared when admitted");
        let stats = c.stats();
        assert_eq!((stats.hits, stats.misses, stats.inserts), (1, 5, 1));
    }

    #[test]
    fn remove_table_drops_only_that_table() {
        let c = Cache::with_shards(1 << 20, 4);
        for t in 0..3 {
            for o in 0..50 {
                c.insert(key(t, o), Arc::new((t, o)), 100);
            }
        }
        c.remove_table(1);
        for o in 0..50 {
            assert!(c.get(key(0, o)).is_some());
            assert!(c.get(key(1, o)).is_none());
            assert!(c.get(key(2, o)).is_some());
        }
        let s = c.stats();
        assert_eq!((s.entries, s.bytes, s.evictions), (100, 10_000, 0));
    }

    #[test]
    fn freed_slots_are_reused() {
        let c = Cache::with_shards(1 << 20, 1);
        for t in 0..2 {
            for o in 0..50 {
                c.insert(key(t, o), Arc::new((t, o)), 100);
            }
        }
        c.remove_table(0);
        for o in 0..50 {
            c.insert(key(2, o), Arc::new((2, o)), 100);
        }
        assert_eq!(c.shards[0].lock().slots.len(), 100);
        assert_eq!(order(&c).len(), 100);
    }

    #[test]
    fn evicted_values_stay_alive_for_their_holders() {
        let c = Cache::with_shards(10, 1);
        c.insert(key(1, 0), Arc::new(vec![1u8; 4]), 10);
        let held = c.get(key(1, 0)).unwrap();
        c.insert(key(1, 1), Arc::new(vec![2u8; 4]), 10);
        assert!(c.get(key(1, 0)).is_none());
        assert_eq!(*held, vec![1u8; 4]);
        assert_eq!(Arc::strong_count(&held), 1);
    }

    #[test]
    fn concurrent_readers_and_loaders() {
        const THREADS: u64 = 4;
        const OPS: u64 = 20_000;
        let c = Cache::<(u64, u64)>::with_shards(16 * 1000, 16);
        std::thread::scope(|scope| {
            for t in 0..THREADS {
                let c = &c;
                scope.spawn(move || {
                    let mut x = t + 1;
                    for _ in 0..OPS {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        let (table, offset) = (x % 4, (x >> 8) % 400);
                        let v = c
                            .get_or_insert_with(key(table, offset), || Ok::<_, ()>(((table, offset), 100)))
                            .unwrap();
                        assert_eq!(*v, (table, offset));
                        if x % 7 == 0 {
                            if let Some(v) = c.get(key(offset % 4, table)) {
                                assert_eq!(*v, (offset % 4, table));
                            }
                        }
                    }
                });
            }
        });
        let s = c.stats();
        assert!(s.bytes <= 16 * 1000);
        assert_eq!(s.bytes, s.entries * 100);
        assert_eq!(s.entries, s.inserts - s.evictions);
        assert!(s.hits + s.misses >= THREADS * OPS);
        assert!(s.hits > 0 && s.evictions > 0);
        for shard in c.shards.iter() {
            let shard = shard.lock();
            assert!(shard.usage <= shard.capacity);
        }
    }

    #[derive(Clone, Debug)]
    enum Op {
        Get(CacheKey),
        Insert(CacheKey, usize),
        GetOrInsert(CacheKey, usize),
        RemoveTable(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        let k = (0u64..3, 0u64..6).prop_map(|(t, o)| key(t, o));
        prop_oneof![
            4 => k.clone().prop_map(Op::Get),
            4 => (k.clone(), 0usize..60).prop_map(|(k, c)| Op::Insert(k, c)),
            3 => (k, 0usize..60).prop_map(|(k, c)| Op::GetOrInsert(k, c)),
            1 => (0u64..3).prop_map(Op::RemoveTable),
        ]
    }

    /// The obvious LRU: a Vec from most to least recently used.
    #[derive(Default)]
    struct Model {
        capacity: usize,
        entries: Vec<(CacheKey, usize, u64)>,
        stats: CacheStats,
    }

    impl Model {
        fn get(&mut self, k: CacheKey) -> Option<u64> {
            match self.entries.iter().position(|e| e.0 == k) {
                Some(p) => {
                    let e = self.entries.remove(p);
                    self.entries.insert(0, e);
                    self.stats.hits += 1;
                    Some(e.2)
                }
                None => {
                    self.stats.misses += 1;
                    None
                }
            }
        }

        fn insert(&mut self, k: CacheKey, charge: usize, id: u64) {
            self.entries.retain(|e| e.0 != k);
            if charge > self.capacity {
                return;
            }
            while self.entries.iter().map(|e| e.1).sum::<usize>() + charge > self.capacity {
                self.entries.pop();
                self.stats.evictions += 1;
            }
            self.entries.insert(0, (k, charge, id));
            self.stats.inserts += 1;
        }

        fn stats(&self) -> CacheStats {
            CacheStats {
                bytes: self.entries.iter().map(|e| e.1 as u64).sum(),
                entries: self.entries.len() as u64,
                ..self.stats
            }
        }
    }

    proptest! {
        #[test]
        fn single_shard_matches_a_vec_lru(capacity in 0usize..200, ops in proptest::collection::vec(op(), 0..200)) {
            let cache = Cache::<u64>::with_shards(capacity, 1);
            let mut model = Model { capacity, ..Model::default() };
            let mut live: Vec<Arc<u64>> = Vec::new();
            for (id, op) in ops.into_iter().enumerate() {
                let id = id as u64;
                match op {
                    Op::Get(k) => {
                        let got = cache.get(k);
                        prop_assert_eq!(got.as_deref().copied(), model.get(k));
                        if let Some(v) = got {
                            prop_assert!(live.iter().any(|l| Arc::ptr_eq(l, &v)), "not the inserted Arc");
                        }
                    }
                    Op::Insert(k, charge) => {
                        let v = Arc::new(id);
                        live.push(Arc::clone(&v));
                        cache.insert(k, v, charge);
                        model.insert(k, charge, id);
                    }
                    Op::GetOrInsert(k, charge) => {
                        let expected = match model.get(k) {
                            Some(existing) => existing,
                            None => {
                                model.insert(k, charge, id);
                                id
                            }
                        };
                        let got = cache.get_or_insert_with(k, || Ok::<_, ()>((id, charge))).unwrap();
                        prop_assert_eq!(*got, expected);
                        live.push(got);
                    }
                    Op::RemoveTable(t) => {
                        cache.remove_table(t);
                        model.entries.retain(|e| e.0.table != t);
                    }
                }
                let stats = cache.stats();
                prop_assert!(stats.bytes <= capacity as u64);
                prop_assert_eq!(stats, model.stats());
                let keys: Vec<CacheKey> = model.entries.iter().map(|e| e.0).collect();
                prop_assert_eq!(order(&cache), keys);
            }
        }
    }
}
