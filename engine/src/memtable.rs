//! The [`Memtable`]: the in-memory, concurrently written buffer of recent writes that is
//! flushed to SSTables once it is big enough.
//!
//! It owns every entry written since the last switch: puts, point deletes and range deletes,
//! each with its sequence number. Layout: 64 shards, each a `RwLock` over a hash map from user
//! id to that user's [`UserRun`]; a shard is picked by a mix of the user id, so writers of
//! different users rarely meet on a lock. Payloads are not copied per event: each write
//! batch's encoding is kept once in an arena (`chunks`), and a run holds 32-byte [`Slot`]s
//! that point into it. Entries handed out slice the arena's buffers.
//!
//! Invariants:
//! - a run's `entries` are sorted in table order (ts ascending, seqno descending for equal
//!   ts) and hold only puts and point deletes; every version of a `(user, ts)` is kept,
//!   because snapshots may need old ones;
//! - seqnos are unique, so no two entries share `(user, ts, seqno)` (an insert repeating one
//!   replaces it, which keeps a replayed write idempotent);
//! - range deletes live apart, in insertion order, in `range_deletes`;
//! - every slot's `chunk` indexes a buffer of the arena, and `offset..offset + len` lies in
//!   it (the write path takes both from the batch it registers);
//! - a run's `min_ts`/`max_ts` cover its entries and its range-delete spans; a run may be
//!   empty, with inverted bounds, when the memtable was built on a flushed one's memory
//!   ([`Spare`]), and every reader treats it as absent.
//!
//! Memory accounting ([`Memtable::approximate_bytes`], which `Options::memtable_bytes` is
//! checked against) charges heap that is really allocated, not lengths: each batch buffer by
//! its length (an exact-size copy), and every growable container (a run's `entries` and
//! `range_deletes`, each shard's map, the arena's `chunks`) by the growth of its capacity,
//! measured under the lock already held for the insert. Vectors and maps grow by doubling, so
//! charging lengths left their slack out (a third of the slot vectors' heap in the standard
//! workload), and the budget did not bound real memory. Nothing is freed before the memtable
//! is dropped, so the charge only grows: a replaced slot frees nothing (its vector keeps its
//! capacity, the arena its buffer).
//!
//! Recycling: a flushed memtable that no reader holds is not freed but emptied. Its maps,
//! each active user's run emptied with its capacity kept, become a [`Spare`] that the next
//! memtable is built on (charged with the runs' capacity from the start); its batch buffers
//! that no reader shares go to the memtable being filled, which copies batches into them
//! (charged by length, as a fresh copy is).
//!
//! Why per-user sorted vectors and not a skiplist: the workload is time-ordered appends, so
//! the common insert (the newest event of its user) is an O(1) `push` under one shard lock;
//! late events cost a binary search and a `Vec::insert` in one user's run, which is short.
//! Reads are per user, and "the latest N events of a user" is a slice from the end of one
//! vector, found with a binary search and walked without pointer chasing.

use std::cmp::Reverse;
use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};

use bytes::{Bytes, BytesMut};
use parking_lot::{Mutex, RwLock, RwLockReadGuard};
use strata_sstable::{Entry, EntryRef, Kind};

/// Number of shards; a power of two, picked by the top bits of the shard mix.
const SHARDS: usize = 64;
/// `log2(SHARDS)`.
const SHARD_BITS: u32 = 6;
/// Heap of one bucket of a shard map: the `(user, run)` pair and its control byte.
const BUCKET_BYTES: usize = std::mem::size_of::<(u64, UserRun)>() + 1;
/// Control bytes a map allocates besides one per bucket (hashbrown's `Group::WIDTH` with
/// SSE2; 8 elsewhere, which this slightly overcounts).
const MAP_TAIL_BYTES: usize = 16;
/// Heap of one range delete's place in a run's `range_deletes` (charged per unit of capacity).
const ENTRY_OVERHEAD: usize = std::mem::size_of::<Entry>();
/// Heap of one put or point delete's place in a run's `entries` (charged per unit of
/// capacity), besides its payload in the batch buffer.
const SLOT_BYTES: usize = std::mem::size_of::<Slot>();
/// Heap of one batch's place in the arena's `chunks` (charged per unit of capacity).
const CHUNK_BYTES: usize = std::mem::size_of::<Bytes>();
/// A spare batch buffer of up to twice this (or twice the batch, if larger) is reused for a
/// batch ([`Memtable::copy_batch`]).
const MIN_FIT_BYTES: usize = 4096;
/// Seed of the hash map's mix, so it is independent of the shard mix: otherwise every user
/// of a shard would share the hash bits the map uses for its tags.
const MAP_SEED: u64 = 0x9e37_79b9_7f4a_7c15;

/// Heap allocated by a shard map of `capacity` (its `HashMap::capacity`).
///
/// Derived from std's hashbrown: a table has a power-of-two number of buckets and holds 7/8
/// of them (one less than the bucket count up to 8 buckets), so the capacity gives the
/// bucket count back; it allocates one `(key, value)` and one control byte per bucket plus
/// [`MAP_TAIL_BYTES`]. Should std change its layout, this stays an approximation within a
/// factor of its load factor, which is enough for a memory budget.
fn map_heap(capacity: usize) -> usize {
    let buckets = match capacity {
        0 => return 0,
        1..=7 => capacity + 1,
        _ => capacity / 7 * 8,
    };
    buckets * BUCKET_BYTES + MAP_TAIL_BYTES
}

/// A full-avalanche multiply-xorshift mix of a u64 (the splitmix64 finalizer).
fn mix64(x: u64) -> u64 {
    let mut z = x;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Builds [`FastHasher`]s for the per-shard maps.
///
/// Not SipHash (std's default): SipHash resists hash flooding by attacker-chosen keys, which
/// an embedded engine keyed by the application's own user ids does not face, and it costs
/// several times more per lookup on the write path. The ids are still mixed, because they are
/// often sequential and the map takes bucket and tag bits from the hash.
#[derive(Clone, Copy, Debug, Default)]
struct FastHash;

impl BuildHasher for FastHash {
    type Hasher = FastHasher;

    fn build_hasher(&self) -> FastHasher {
        FastHasher(0)
    }
}

/// A hasher for u64 keys: [`mix64`] of the seeded key.
#[derive(Clone, Copy, Debug)]
struct FastHasher(u64);

impl Hasher for FastHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = mix64(self.0.rotate_left(29) ^ n ^ MAP_SEED);
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only u64 keys are hashed here; this general path folds 8 bytes at a time.
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
    }
}

/// One put or point delete in a user's run: its key, and where its payload lies in the
/// memtable's arena of batch buffers. 32 bytes and `Copy`: an insert writes half a cache
/// line and touches no reference count, and a run grows by plain copies.
#[derive(Clone, Copy, Debug)]
struct Slot {
    ts: i64,
    seqno: u64,
    /// Index of the batch buffer in [`Memtable::chunks`].
    chunk: u32,
    /// Payload position in that buffer.
    offset: u32,
    len: u32,
    kind: Kind,
}

/// The entry a slot stands for, its payload sliced from the arena.
fn entry(chunks: &[Bytes], user: u64, slot: &Slot) -> Entry {
    let payload = payload(chunks, slot).map_or_else(Bytes::new, |(buffer, p)| buffer.slice_ref(p));
    Entry { user, ts: slot.ts, seqno: slot.seqno, kind: slot.kind, value: payload }
}

/// A put's payload and the arena buffer it lies in; `None` for a delete (or a slot outside
/// the arena, which the write path never makes).
fn payload<'a>(chunks: &'a [Bytes], slot: &Slot) -> Option<(&'a Bytes, &'a [u8])> {
    let buffer = chunks.get(slot.chunk as usize).filter(|_| slot.kind == Kind::Put)?;
    let start = slot.offset as usize;
    Some((buffer, buffer.get(start..start + slot.len as usize)?))
}

/// A put or point delete as a flush takes it: the user and the slot, a plain copy that
/// touches no reference count. Its payload is borrowed from the arena through the
/// [`FlushReader`] it came from.
#[derive(Clone, Copy, Debug)]
pub(crate) struct FlushPoint {
    pub user: u64,
    slot: Slot,
}

/// Reads a memtable for its flush: each user's points in table order, their payloads borrowed
/// from the arena. It holds every shard and the arena read-locked: an immutable memtable takes
/// no more inserts, so no writer waits on it, and the flush reaches each user's run through a
/// reference rather than a lock and a hash lookup per user. A flush built an owned `Entry`
/// per event before, and the `Bytes` in it cost an atomic increment and decrement on a batch
/// buffer: 14% of the flush thread's time in a sustained ingest.
pub(crate) struct FlushReader<'a> {
    shards: Vec<RwLockReadGuard<'a, HashMap<u64, UserRun, FastHash>>>,
    chunks: RwLockReadGuard<'a, Vec<Bytes>>,
}

/// One user's run, as [`FlushReader::users`] lists it.
pub(crate) struct FlushUser<'a> {
    pub user: u64,
    run: &'a UserRun,
}

impl FlushUser<'_> {
    /// Appends the user's points, in table order, to `out`: building into the caller's buffer
    /// lets the flush gather many users at once.
    pub fn points(&self, out: &mut Vec<FlushPoint>) {
        let user = self.user;
        out.extend(self.run.entries.iter().map(|&slot| FlushPoint { user, slot }));
    }

    /// The user's range deletes, in insertion order.
    pub fn range_deletes(&self) -> &[Entry] {
        &self.run.range_deletes
    }
}

impl FlushReader<'_> {
    /// Every user with anything in the memtable, ascending.
    pub fn users(&self) -> Vec<FlushUser<'_>> {
        let mut users: Vec<FlushUser<'_>> = self
            .shards
            .iter()
            .flat_map(|shard| shard.iter())
            .filter(|(_, run)| !run.is_empty())
            .map(|(&user, run)| FlushUser { user, run })
            .collect();
        users.sort_unstable_by_key(|u| u.user);
        users
    }

    /// Calls `f` with the timestamp of every put and point delete, in no order.
    pub fn for_each_ts(&self, mut f: impl FnMut(i64)) {
        for run in self.shards.iter().flat_map(|shard| shard.values()) {
            run.entries.iter().for_each(|slot| f(slot.ts));
        }
    }

    /// The point with its payload borrowed.
    pub fn entry_ref(&self, point: &FlushPoint) -> EntryRef<'_> {
        let slot = &point.slot;
        let value = payload(&self.chunks, slot).map_or(&[][..], |(_, p)| p);
        EntryRef { user: point.user, ts: slot.ts, seqno: slot.seqno, kind: slot.kind, value }
    }

    /// The point as an owned entry (the rare path of a user with range deletes).
    pub fn entry(&self, point: &FlushPoint) -> Entry {
        entry(&self.chunks, point.user, &point.slot)
    }
}

/// The sort key of a slot inside one user's run: ts ascending, seqno descending.
fn run_key(e: &Slot) -> (i64, Reverse<u64>) {
    (e.ts, Reverse(e.seqno))
}

/// Everything the memtable holds for one user.
#[derive(Debug)]
struct UserRun {
    /// Puts and point deletes, sorted in table order.
    entries: Vec<Slot>,
    /// Range deletes (kind [`Kind::RangeDelete`]), in insertion order.
    range_deletes: Vec<Entry>,
    /// Smallest ts over `entries` and range-delete spans.
    min_ts: i64,
    /// Largest ts over `entries` and range-delete spans.
    max_ts: i64,
}

impl UserRun {
    /// An empty run; its bounds are inverted until the first insert.
    fn new() -> UserRun {
        UserRun { entries: Vec::new(), range_deletes: Vec::new(), min_ts: i64::MAX, max_ts: i64::MIN }
    }

    /// Whether the run holds nothing (one kept from a recycled memtable and not used since).
    fn is_empty(&self) -> bool {
        self.entries.is_empty() && self.range_deletes.is_empty()
    }

    /// Widens the bounds to `lo..=hi`.
    fn cover(&mut self, lo: i64, hi: i64) {
        self.min_ts = self.min_ts.min(lo);
        self.max_ts = self.max_ts.max(hi);
    }

    /// Inserts a put or point delete at its place, replacing an entry with the same
    /// `(ts, seqno)` (a replayed write).
    fn insert(&mut self, slot: Slot) {
        self.cover(slot.ts, slot.ts);
        let key = run_key(&slot);
        // Fast path: the newest event of its user goes at the end.
        let pos = match self.entries.last() {
            Some(last) if run_key(last) >= key => self.entries.partition_point(|e| run_key(e) < key),
            _ => return self.entries.push(slot),
        };
        match self.entries.get_mut(pos) {
            Some(found) if run_key(found) == key => *found = slot,
            _ => self.entries.insert(pos, slot),
        }
    }
}

/// A put or point delete of one write batch, for [`Memtable::insert_batch`]: the payload is
/// `offset..offset + len` of the batch's buffer.
#[derive(Clone, Copy, Debug)]
pub struct Point {
    /// The user.
    pub user: u64,
    /// The timestamp.
    pub ts: i64,
    /// Its seqno.
    pub seqno: u64,
    /// Put or delete.
    pub kind: Kind,
    /// Payload start in the batch buffer.
    pub offset: u32,
    /// Payload length.
    pub len: u32,
}

/// One shard: a lock over part of the users, aligned so that neighbouring shards' locks do
/// not share a cache line.
#[repr(align(128))]
#[derive(Debug, Default)]
struct Shard(RwLock<HashMap<u64, UserRun, FastHash>>);

/// The runs of a flushed memtable, kept for the next one ([`Memtable::into_spare`],
/// [`Memtable::recycled`]): its shard maps, each run emptied but keeping its vector. Users
/// mostly come back from one memtable to the next, so the next memtable's inserts find their
/// run and its room already there. Freeing the runs cost the flush thread 13% of its time (a
/// `free` per user, into the writer's malloc arena), and growing them again cost the writer
/// a third of its insert (`malloc`, `realloc` copies, and page faults on memory the trim
/// after each flush had returned). (The batch buffers go to the memtable being filled at
/// once: [`Memtable::give_buffers`].)
pub struct Spare {
    shards: Box<[Shard; SHARDS]>,
    /// Heap the maps and runs hold.
    heap: usize,
}

/// The concurrent in-memory table of recent writes (see the module documentation).
pub struct Memtable {
    /// The users, spread by [`Memtable::shard`].
    shards: Box<[Shard; SHARDS]>,
    /// The arena: the buffer of every batch inserted, holding the payloads that slots
    /// point into. Appended to once per batch; never shrinks.
    chunks: RwLock<Vec<Bytes>>,
    /// Emptied batch buffers of a flushed memtable ([`Memtable::give_buffers`]), which
    /// [`Memtable::copy_batch`] fills before it allocates.
    spare_buffers: Mutex<Vec<BytesMut>>,
    /// Approximate memory held, in bytes.
    bytes: AtomicUsize,
    /// Entries and range deletes inserted.
    ops: AtomicU64,
    /// Largest seqno inserted; 0 when empty.
    max_seqno: AtomicU64,
    /// Smallest seqno inserted; `u64::MAX` when empty.
    min_seqno: AtomicU64,
    /// Smallest ts inserted (range-delete spans included); `i64::MAX` when empty.
    min_ts: AtomicI64,
    /// Largest ts inserted (range-delete spans included); `i64::MIN` when empty.
    max_ts: AtomicI64,
}

impl Spare {
    /// Heap the spare's maps and runs hold, which a memtable built on it starts charged with.
    pub fn heap(&self) -> usize {
        self.heap
    }
}

impl Memtable {
    /// An empty memtable.
    pub fn new() -> Memtable {
        Memtable {
            shards: Box::new(std::array::from_fn(|_| Shard::default())),
            chunks: RwLock::new(Vec::new()),
            spare_buffers: Mutex::new(Vec::new()),
            bytes: AtomicUsize::new(0),
            ops: AtomicU64::new(0),
            max_seqno: AtomicU64::new(0),
            min_seqno: AtomicU64::new(u64::MAX),
            min_ts: AtomicI64::new(i64::MAX),
            max_ts: AtomicI64::new(i64::MIN),
        }
    }

    /// An empty memtable built on the runs a flushed one left ([`Memtable::into_spare`]).
    /// The runs' capacity is charged from the start: it is held, and inserts fill it
    /// without growing.
    pub fn recycled(spare: Spare) -> Memtable {
        let mut mem = Memtable::new();
        mem.shards = spare.shards;
        mem.bytes = AtomicUsize::new(spare.heap);
        mem
    }

    /// Empties this flushed memtable: its runs into a [`Spare`] for the next memtable (the
    /// runs of users that had points keep their vector's capacity; the others are freed, so
    /// what is kept is bounded by what this memtable used), and its batch buffers that no
    /// reader still shares returned, emptied, for [`Memtable::give_buffers`].
    pub fn into_spare(self) -> (Spare, Vec<BytesMut>) {
        let Memtable { mut shards, chunks, spare_buffers, .. } = self;
        let mut heap = 0;
        for shard in shards.iter_mut() {
            let map = shard.0.get_mut();
            map.retain(|_, run| !run.entries.is_empty());
            for run in map.values_mut() {
                *run = UserRun { entries: std::mem::take(&mut run.entries), ..UserRun::new() };
                run.entries.clear();
                heap += run.entries.capacity() * SLOT_BYTES;
            }
            heap += map_heap(map.capacity());
        }
        let mut buffers = spare_buffers.into_inner();
        buffers.extend(chunks.into_inner().into_iter().filter_map(|buffer| buffer.try_into_mut().ok()).map(
            |mut buffer| {
                buffer.clear();
                buffer
            },
        ));
        (Spare { shards, heap }, buffers)
    }

    /// Adds emptied batch buffers for [`Memtable::copy_batch`] to fill, keeping no more than
    /// `limit` bytes of capacity waiting (the rest is freed). The flush hands a flushed
    /// memtable's buffers to the one being filled at once: kept for the next memtable
    /// instead, they sat unused beside three live memtables and raised the peak memory.
    pub fn give_buffers(&self, buffers: Vec<BytesMut>, limit: usize) {
        let mut waiting = self.spare_buffers.lock();
        let mut held: usize = waiting.iter().map(BytesMut::capacity).sum();
        for buffer in buffers {
            if held + buffer.capacity() > limit {
                break;
            }
            held += buffer.capacity();
            waiting.push(buffer);
        }
    }

    /// A copy of a batch's encoding for the arena ([`Memtable::insert_batch`]), in a spare
    /// buffer when there is one: a fresh allocation of that size comes from pages the last
    /// trim returned to the kernel, and the copy then paid a page fault every 4 KiB.
    ///
    /// A batch is charged by its length, so a spare buffer far larger than the batch is
    /// freed rather than filled: it would hold memory the charge leaves out.
    pub fn copy_batch(&self, encoded: &[u8]) -> Bytes {
        let spare = self.spare_buffers.lock().pop();
        match spare {
            Some(mut buffer) if buffer.capacity() <= 2 * encoded.len().max(MIN_FIT_BYTES) => {
                buffer.extend_from_slice(encoded);
                buffer.freeze()
            }
            _ => Bytes::copy_from_slice(encoded),
        }
    }

    /// The shard holding `user`.
    fn shard(&self, user: u64) -> &RwLock<HashMap<u64, UserRun, FastHash>> {
        &self.shards[self.shard_index(user)].0
    }

    /// The index of the shard holding `user`.
    fn shard_index(&self, user: u64) -> usize {
        usize::try_from(mix64(user) >> (64 - SHARD_BITS)).unwrap_or(0) % SHARDS
    }

    /// Updates the counters after an insert of `bytes` bytes at `seqno` covering `lo..=hi`.
    /// The op count is bumped last (release) so that a reader seeing it also sees the rest.
    fn account(&self, bytes: usize, seqno: u64, lo: i64, hi: i64) {
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        self.max_seqno.fetch_max(seqno, Ordering::Relaxed);
        self.min_seqno.fetch_min(seqno, Ordering::Relaxed);
        self.min_ts.fetch_min(lo, Ordering::Relaxed);
        self.max_ts.fetch_max(hi, Ordering::Relaxed);
        self.ops.fetch_add(1, Ordering::Release);
    }

    /// Registers a batch buffer in the arena; returns its chunk index and the bytes the
    /// arena's vector grew by.
    fn add_chunk(&self, buffer: Bytes) -> (u32, usize) {
        let mut chunks = self.chunks.write();
        let capacity = chunks.capacity();
        chunks.push(buffer);
        let grown = (chunks.capacity() - capacity) * CHUNK_BYTES;
        (u32::try_from(chunks.len() - 1).unwrap_or(u32::MAX), grown)
    }

    /// Inserts a Put (payload) or a Delete (payload ignored) at (user, ts) with `seqno`.
    /// Repeating an existing `(user, ts, seqno)` replaces it. (The write path uses
    /// [`Memtable::insert_batch`]; this is the one-event form, for tests.)
    #[cfg(test)]
    pub fn insert(&self, user: u64, ts: i64, seqno: u64, kind: Kind, payload: Bytes) {
        if kind == Kind::RangeDelete {
            let last = <[u8; 8]>::try_from(payload.as_ref()).map_or(ts, i64::from_le_bytes);
            return self.insert_range_delete(user, ts, last, seqno);
        }
        let buffer = if kind == Kind::Put { self.copy_batch(&payload) } else { Bytes::new() };
        let len = u32::try_from(buffer.len()).unwrap_or(u32::MAX);
        self.insert_batch(buffer, &[Point { user, ts, seqno, kind, offset: 0, len }]);
    }

    /// Inserts the puts and point deletes of one write batch, whose payloads lie in
    /// `buffer` (the batch's encoding, shared, never copied per event).
    ///
    /// The write path's fast lane: the points are grouped by shard (a counting sort of
    /// their indices) so that each shard's lock is taken once per batch, slots are small
    /// copies, and the counters are updated once.
    pub fn insert_batch(&self, buffer: Bytes, points: &[Point]) {
        if points.is_empty() {
            return;
        }
        let (chunk, arena_growth) = self.add_chunk(buffer.clone());
        let (mut min_seqno, mut max_seqno) = (u64::MAX, 0);
        let (mut min_ts, mut max_ts) = (i64::MAX, i64::MIN);
        let mut starts = [0u32; SHARDS + 1];
        let shard_of: Vec<u8> = points
            .iter()
            .map(|p| {
                min_seqno = min_seqno.min(p.seqno);
                max_seqno = max_seqno.max(p.seqno);
                min_ts = min_ts.min(p.ts);
                max_ts = max_ts.max(p.ts);
                let shard = self.shard_index(p.user);
                starts[shard + 1] += 1;
                u8::try_from(shard).unwrap_or(0)
            })
            .collect();
        for i in 0..SHARDS {
            starts[i + 1] += starts[i];
        }
        // Stable: a user's points keep their batch order, usually ts order, which takes the
        // append fast path.
        let mut order = vec![0u32; points.len()];
        let mut next = starts;
        for (i, &shard) in shard_of.iter().enumerate() {
            let at = &mut next[usize::from(shard)];
            order[*at as usize] = u32::try_from(i).unwrap_or(u32::MAX);
            *at += 1;
        }
        // Heap only: the batch buffer is an exact-size copy, containers count by capacity.
        let mut added = buffer.len() + arena_growth;
        for shard_index in 0..SHARDS {
            let group = &order[starts[shard_index] as usize..starts[shard_index + 1] as usize];
            if group.is_empty() {
                continue;
            }
            let mut shard = self.shards[shard_index].0.write();
            let map_before = map_heap(shard.capacity());
            for &i in group {
                let p = &points[i as usize];
                let run = shard.entry(p.user).or_insert_with(UserRun::new);
                let slot =
                    Slot { ts: p.ts, seqno: p.seqno, chunk, offset: p.offset, len: p.len, kind: p.kind };
                // A replaced slot frees nothing: the vector keeps its capacity, the arena
                // its buffer.
                let capacity = run.entries.capacity();
                run.insert(slot);
                added += (run.entries.capacity() - capacity) * SLOT_BYTES;
            }
            added += map_heap(shard.capacity()).saturating_sub(map_before);
        }
        self.bytes.fetch_add(added, Ordering::Relaxed);
        self.max_seqno.fetch_max(max_seqno, Ordering::Relaxed);
        self.min_seqno.fetch_min(min_seqno, Ordering::Relaxed);
        self.min_ts.fetch_min(min_ts, Ordering::Relaxed);
        self.max_ts.fetch_max(max_ts, Ordering::Relaxed);
        self.ops.fetch_add(points.len() as u64, Ordering::Release);
    }

    /// Records a delete of every event of `user` with first <= ts <= last, at `seqno`.
    /// Stored as `Entry::range_delete(user, first, last, seqno)`.
    pub fn insert_range_delete(&self, user: u64, first: i64, last: i64, seqno: u64) {
        let (lo, hi) = (first.min(last), first.max(last));
        let bytes = {
            let mut shard = self.shard(user).write();
            let map_before = map_heap(shard.capacity());
            let run = shard.entry(user).or_insert_with(UserRun::new);
            let capacity = run.range_deletes.capacity();
            run.cover(lo, hi);
            run.range_deletes.push(Entry::range_delete(user, first, last, seqno));
            let grown = (run.range_deletes.capacity() - capacity) * ENTRY_OVERHEAD;
            grown + map_heap(shard.capacity()).saturating_sub(map_before)
        };
        self.account(bytes, seqno, lo, hi);
    }

    /// Heap held, in bytes: batch buffers by length, and the capacity of the runs' vectors,
    /// the shard maps and the arena (see the module documentation). Approximate only in
    /// what it leaves out: the allocator's own rounding and headers, and the few words of a
    /// batch buffer's shared handle.
    pub fn approximate_bytes(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Entries plus range deletes inserted.
    pub fn ops(&self) -> u64 {
        self.ops.load(Ordering::Acquire)
    }

    /// Whether nothing was inserted.
    pub fn is_empty(&self) -> bool {
        self.ops() == 0
    }

    /// Largest seqno inserted; 0 when empty.
    pub fn max_seqno(&self) -> u64 {
        self.max_seqno.load(Ordering::Relaxed)
    }

    /// Smallest seqno inserted; `u64::MAX` when empty.
    pub fn min_seqno(&self) -> u64 {
        self.min_seqno.load(Ordering::Relaxed)
    }

    /// Min and max ts over everything, range-delete spans included; `None` when empty.
    pub fn ts_bounds(&self) -> Option<(i64, i64)> {
        if self.is_empty() {
            return None;
        }
        let (lo, hi) = (self.min_ts.load(Ordering::Relaxed), self.max_ts.load(Ordering::Relaxed));
        (lo <= hi).then_some((lo, hi))
    }

    /// Min and max ts of `user`, range-delete spans included; `None` if the user has nothing.
    pub fn user_bounds(&self, user: u64) -> Option<(i64, i64)> {
        let shard = self.shard(user).read();
        shard.get(&user).filter(|run| run.min_ts <= run.max_ts).map(|run| (run.min_ts, run.max_ts))
    }

    /// Appends to `out` up to `limit` entries of `user` (puts and point deletes, not range
    /// deletes) in table order (ts asc, seqno desc) with `lo <= ts <= hi` that sort strictly
    /// after `after = Some((ts, seqno))` (`None`: from the start). Returns how many were
    /// appended.
    ///
    /// A chunked forward cursor: pass the key of the last entry received to get the next
    /// chunk. O(log n + limit) under one shard read lock.
    pub fn scan(
        &self,
        user: u64,
        after: Option<(i64, u64)>,
        lo: i64,
        hi: i64,
        limit: usize,
        out: &mut Vec<Entry>,
    ) -> usize {
        if limit == 0 || lo > hi {
            return 0;
        }
        let shard = self.shard(user).read();
        let Some(run) = shard.get(&user) else { return 0 };
        let entries = &run.entries;
        let mut start = entries.partition_point(|e| e.ts < lo);
        if let Some((ts, seqno)) = after {
            let key = (ts, Reverse(seqno));
            start = start.max(entries.partition_point(|e| run_key(e) <= key));
        }
        let len = out.len();
        let tail = entries.get(start..).unwrap_or_default();
        let chunks = self.chunks.read();
        out.extend(tail.iter().take_while(|e| e.ts <= hi).take(limit).map(|e| entry(&chunks, user, e)));
        out.len() - len
    }

    /// The reverse of [`Memtable::scan`]: appends up to `limit` entries of `user` with
    /// `lo <= ts <= hi` that sort strictly before `before = Some((ts, seqno))` in table order
    /// (`None`: from the end), walking from the largest key down: ts descending and, for equal
    /// ts, seqno ascending (the oldest version first). Returns how many were appended.
    /// O(log n + limit).
    pub fn scan_rev(
        &self,
        user: u64,
        before: Option<(i64, u64)>,
        lo: i64,
        hi: i64,
        limit: usize,
        out: &mut Vec<Entry>,
    ) -> usize {
        if limit == 0 || lo > hi {
            return 0;
        }
        let shard = self.shard(user).read();
        let Some(run) = shard.get(&user) else { return 0 };
        let entries = &run.entries;
        let mut end = entries.partition_point(|e| e.ts <= hi);
        if let Some((ts, seqno)) = before {
            let key = (ts, Reverse(seqno));
            end = end.min(entries.partition_point(|e| run_key(e) < key));
        }
        let len = out.len();
        let head = entries.get(..end).unwrap_or_default();
        let chunks = self.chunks.read();
        out.extend(head.iter().rev().take_while(|e| e.ts >= lo).take(limit).map(|e| entry(&chunks, user, e)));
        out.len() - len
    }

    /// Appends every range delete of `user` (any seqno), in insertion order.
    pub fn range_deletes(&self, user: u64, out: &mut Vec<Entry>) {
        let shard = self.shard(user).read();
        if let Some(run) = shard.get(&user) {
            out.extend(run.range_deletes.iter().cloned());
        }
    }

    /// Users with anything in the memtable, ascending.
    #[cfg(test)]
    pub fn users(&self) -> Vec<u64> {
        self.flush_reader().users().iter().map(|u| u.user).collect()
    }

    /// The reader a flush walks this memtable with; see [`FlushReader`].
    pub fn flush_reader(&self) -> FlushReader<'_> {
        FlushReader {
            shards: self.shards.iter().map(|shard| shard.0.read()).collect(),
            chunks: self.chunks.read(),
        }
    }

    /// Calls `f` with the user's entries (table order) and range deletes; `None` (and `f`
    /// not called) if the user is absent. (Tests; the flush uses [`Memtable::flush_reader`].) `f` runs under the shard's read lock, so it must
    /// not insert into this memtable.
    #[cfg(test)]
    pub fn with_user<R>(&self, user: u64, f: impl FnOnce(&[Entry], &[Entry]) -> R) -> Option<R> {
        let shard = self.shard(user).read();
        let run = shard.get(&user).filter(|run| !run.is_empty())?;
        let entries: Vec<Entry> = {
            let chunks = self.chunks.read();
            run.entries.iter().map(|e| entry(&chunks, user, e)).collect()
        };
        Some(f(&entries, &run.range_deletes))
    }
}

impl Default for Memtable {
    fn default() -> Memtable {
        Memtable::new()
    }
}

impl fmt::Debug for Memtable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Memtable")
            .field("ops", &self.ops())
            .field("bytes", &self.approximate_bytes())
            .field("min_seqno", &self.min_seqno())
            .field("max_seqno", &self.max_seqno())
            .field("ts_bounds", &self.ts_bounds())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;

    use proptest::prelude::*;
    use strata_sstable::table_order;

    use super::*;

    fn put(m: &Memtable, user: u64, ts: i64, seqno: u64) {
        m.insert(user, ts, seqno, Kind::Put, Bytes::from(format!("{user}/{ts}/{seqno}")));
    }

    /// `(ts, seqno)` of each entry.
    fn keys(entries: &[Entry]) -> Vec<(i64, u64)> {
        entries.iter().map(|e| (e.ts, e.seqno)).collect()
    }

    /// Given buffers are filled before `copy_batch` allocates, and no more than the limit
    /// waits; a flushed memtable returns the buffers no reader shares.
    #[test]
    fn buffers_are_reused_within_the_limit_and_never_while_shared() {
        let m = Memtable::new();
        let buffers: Vec<BytesMut> = (0..4).map(|_| BytesMut::with_capacity(100)).collect();
        let given: Vec<*const u8> = buffers.iter().map(|b| b.as_ptr()).collect();
        m.give_buffers(buffers, 250);
        let copies: Vec<Bytes> =
            [&b"hello"[..], b"world", b"again"].iter().map(|b| m.copy_batch(b)).collect();
        assert_eq!(copies.iter().map(|c| &c[..]).collect::<Vec<_>>(), [&b"hello"[..], b"world", b"again"]);
        let reused: Vec<bool> = copies.iter().map(|c| given.contains(&c.as_ptr())).collect();
        assert_eq!(reused, [true, true, false], "two buffers fit the 250-byte limit");
        // A buffer far larger than the batch is not filled: the charge is the batch's length.
        let huge = BytesMut::with_capacity(4 * MIN_FIT_BYTES);
        let huge_at = huge.as_ptr();
        m.give_buffers(vec![huge], usize::MAX);
        assert_ne!(m.copy_batch(b"small").as_ptr(), huge_at);
        assert!(m.spare_buffers.lock().is_empty(), "the oversized buffer was freed");

        let m = Memtable::new();
        m.insert(1, 10, 1, Kind::Put, Bytes::from_static(b"kept"));
        m.insert(2, 20, 2, Kind::Put, Bytes::from_static(b"free"));
        let mut held = Vec::new();
        m.scan(1, None, i64::MIN, i64::MAX, 10, &mut held);
        let (spare, buffers) = m.into_spare();
        assert_eq!(buffers.len(), 1, "the buffer a reader holds is not handed out");
        assert!(buffers.iter().all(|b| b.is_empty()));
        assert_eq!(&held[0].value[..], b"kept");
        let next = Memtable::recycled(spare);
        assert!(next.is_empty());
        assert_eq!(next.users(), Vec::<u64>::new());
        assert_eq!(next.user_bounds(1), None);
    }

    /// Every entry of `user` in `lo..=hi`, walked forward in chunks of `chunks[i % len]`.
    fn walk(m: &Memtable, user: u64, lo: i64, hi: i64, chunks: &[usize]) -> Vec<Entry> {
        let mut all = Vec::new();
        let mut after = None;
        for i in 0.. {
            let limit = chunks[i % chunks.len()];
            let mut chunk = Vec::new();
            let n = m.scan(user, after, lo, hi, limit, &mut chunk);
            assert_eq!(n, chunk.len());
            assert!(n <= limit);
            let Some(last) = chunk.last() else { break };
            if let Some(prev) = all.last() {
                assert!(table_order(prev, &chunk[0]).is_lt(), "the cursor went back");
            }
            after = Some((last.ts, last.seqno));
            all.extend(chunk);
        }
        all
    }

    /// The reverse of [`walk`].
    fn walk_rev(m: &Memtable, user: u64, lo: i64, hi: i64, chunks: &[usize]) -> Vec<Entry> {
        let mut all = Vec::new();
        let mut before = None;
        for i in 0.. {
            let limit = chunks[i % chunks.len()];
            let mut chunk = Vec::new();
            let n = m.scan_rev(user, before, lo, hi, limit, &mut chunk);
            assert_eq!(n, chunk.len());
            assert!(n <= limit);
            let Some(last) = chunk.last() else { break };
            if let Some(prev) = all.last() {
                assert!(table_order(prev, &chunk[0]).is_gt(), "the cursor went back");
            }
            before = Some((last.ts, last.seqno));
            all.extend(chunk);
        }
        all
    }

    #[test]
    fn memtable_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Memtable>();
    }

    #[test]
    fn empty_memtable() {
        let m = Memtable::new();
        assert!(m.is_empty());
        assert_eq!((m.ops(), m.approximate_bytes()), (0, 0));
        assert_eq!((m.min_seqno(), m.max_seqno()), (u64::MAX, 0));
        assert_eq!(m.ts_bounds(), None);
        assert_eq!(m.user_bounds(1), None);
        assert!(m.users().is_empty());
        assert_eq!(m.with_user(1, |e, r| e.len() + r.len()), None);
        let mut out = Vec::new();
        assert_eq!(m.scan(1, None, i64::MIN, i64::MAX, 10, &mut out), 0);
        assert_eq!(m.scan_rev(1, None, i64::MIN, i64::MAX, 10, &mut out), 0);
        m.range_deletes(1, &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn in_order_appends_take_the_fast_path() {
        let m = Memtable::new();
        for i in 0..100u64 {
            put(&m, 7, i64::try_from(i).unwrap() * 10, i + 1);
        }
        let expected: Vec<(i64, u64)> = (0..100).map(|i| (i * 10, u64::try_from(i).unwrap() + 1)).collect();
        assert_eq!(m.with_user(7, |e, _| keys(e)), Some(expected));
        assert_eq!(m.user_bounds(7), Some((0, 990)));
        assert_eq!((m.ops(), m.min_seqno(), m.max_seqno()), (100, 1, 100));
        // "Latest 3 events": a slice from the end.
        let mut out = Vec::new();
        assert_eq!(m.scan_rev(7, None, i64::MIN, i64::MAX, 3, &mut out), 3);
        assert_eq!(keys(&out), vec![(990, 100), (980, 99), (970, 98)]);
    }

    #[test]
    fn late_inserts_land_in_place() {
        let m = Memtable::new();
        for (ts, seqno) in [(10, 1), (30, 2), (50, 3), (20, 4), (-5, 5), (40, 6), (60, 7), (35, 8)] {
            put(&m, 1, ts, seqno);
        }
        let got = m.with_user(1, |e, _| keys(e));
        let want = vec![(-5, 5), (10, 1), (20, 4), (30, 2), (35, 8), (40, 6), (50, 3), (60, 7)];
        assert_eq!(got, Some(want));
        assert_eq!(m.user_bounds(1), Some((-5, 60)));
        assert_eq!(m.ts_bounds(), Some((-5, 60)));
    }

    #[test]
    fn equal_ts_versions_newest_first_and_cursor_between_them() {
        let m = Memtable::new();
        put(&m, 1, 5, 1);
        put(&m, 1, 10, 3);
        m.insert(1, 10, 7, Kind::Delete, Bytes::from_static(b"ignored"));
        put(&m, 1, 10, 5); // a late version between the two others
        put(&m, 1, 20, 2);
        let want = vec![(5, 1), (10, 7), (10, 5), (10, 3), (20, 2)];
        assert_eq!(m.with_user(1, |e, _| keys(e)), Some(want));
        m.with_user(1, |e, _| {
            assert_eq!(e[1].kind, Kind::Delete);
            assert!(e[1].value.is_empty());
        });

        let mut out = Vec::new();
        m.scan(1, Some((10, 5)), i64::MIN, i64::MAX, 10, &mut out);
        assert_eq!(keys(&out), vec![(10, 3), (20, 2)]);
        out.clear();
        m.scan(1, Some((10, 6)), 0, 15, 10, &mut out); // a cursor on no entry
        assert_eq!(keys(&out), vec![(10, 5), (10, 3)]);
        out.clear();
        m.scan_rev(1, Some((10, 5)), i64::MIN, i64::MAX, 10, &mut out);
        assert_eq!(keys(&out), vec![(10, 7), (5, 1)]);
        out.clear();
        m.scan_rev(1, None, 10, 10, 10, &mut out);
        assert_eq!(keys(&out), vec![(10, 3), (10, 5), (10, 7)]); // oldest version first
    }

    /// The capacity std's `Vec` has after `n` pushes from empty: what a run's vectors or the
    /// arena have after `n` inserts, computed rather than assumed from std's growth policy.
    fn capacity_after<T: Clone>(item: T, n: usize) -> usize {
        let mut v = Vec::new();
        (0..n).for_each(|_| v.push(item.clone()));
        v.capacity()
    }

    /// The capacity of a shard map after `n` users were inserted one by one.
    fn map_capacity(n: u64) -> usize {
        let mut map: HashMap<u64, UserRun, FastHash> = HashMap::default();
        (0..n).for_each(|user| {
            map.entry(user).or_insert_with(UserRun::new);
        });
        map.capacity()
    }

    const SLOT: Slot = Slot { ts: 0, seqno: 0, chunk: 0, offset: 0, len: 0, kind: Kind::Put };

    /// Heap charged for `slots` slots of one user alone in its shard, inserted by `batches`
    /// batches, besides their buffers.
    fn one_user_heap(slots: usize, batches: usize) -> usize {
        capacity_after(SLOT, slots) * SLOT_BYTES
            + map_heap(map_capacity(1))
            + capacity_after(Bytes::new(), batches) * CHUNK_BYTES
    }

    #[test]
    fn map_heap_inverts_hashbrowns_capacity() {
        // Every capacity std's map takes while growing must map back to a power-of-two bucket
        // count that holds it at hashbrown's load factor, or `map_heap` would misreport.
        for n in 1..2000 {
            let capacity = map_capacity(n);
            let buckets = (map_heap(capacity) - MAP_TAIL_BYTES) / BUCKET_BYTES;
            assert!(buckets.is_power_of_two(), "{n} users: capacity {capacity} -> {buckets} buckets");
            let holds = if buckets <= 8 { buckets - 1 } else { buckets / 8 * 7 };
            assert_eq!(holds, capacity, "{n} users");
        }
        assert_eq!(map_heap(0), 0);
    }

    #[test]
    fn accounting_charges_capacity_not_length() {
        let m = Memtable::new();
        let point =
            |ts: i64, offset: u32| Point { user: 5, ts, seqno: ts as u64, kind: Kind::Put, offset, len: 2 };
        m.insert_batch(Bytes::from_static(b"ab"), &[point(1, 0)]);
        assert_eq!(m.approximate_bytes(), 2 + one_user_heap(1, 1));
        // Three more slots in one batch: the vector grows (or not) by its capacity, once.
        m.insert_batch(Bytes::from_static(b"cdefgh"), &[point(2, 0), point(3, 2), point(4, 4)]);
        assert_eq!(m.approximate_bytes(), 8 + one_user_heap(4, 2));
        m.insert_batch(Bytes::from_static(b"ij"), &[point(5, 0)]);
        assert_eq!(m.approximate_bytes(), 10 + one_user_heap(5, 3));
        // Std's growth today (a first allocation of 4, then doubling) charges 8 slots for 5.
        assert!(capacity_after(SLOT, 5) > 5);
        assert!(m.approximate_bytes() > 10 + 5 * SLOT_BYTES + BUCKET_BYTES + 3 * CHUNK_BYTES);
    }

    #[test]
    fn repeated_key_replaces_and_accounting_follows() {
        let m = Memtable::new();
        m.insert(1, 10, 4, Kind::Put, Bytes::from_static(b"abcd"));
        let one = 4 + one_user_heap(1, 1);
        assert_eq!(m.approximate_bytes(), one);
        // The slot is replaced, which frees nothing: the vector keeps its capacity and the
        // arena the old buffer, so only the new buffer (and any arena growth) is added.
        m.insert(1, 10, 4, Kind::Put, Bytes::from_static(b"xy"));
        assert_eq!(m.approximate_bytes(), 4 + 2 + one_user_heap(1, 2));
        assert_eq!(m.with_user(1, |e, _| e.to_vec()), Some(vec![Entry::put(1, 10, 4, &b"xy"[..])]));
    }

    #[test]
    fn range_deletes_are_kept_apart_and_widen_bounds() {
        let m = Memtable::new();
        put(&m, 3, 50, 1);
        m.insert_range_delete(3, -100, 20, 2);
        m.insert(3, 60, 3, Kind::RangeDelete, Bytes::copy_from_slice(&200i64.to_le_bytes()));
        m.insert_range_delete(9, 5, 6, 4);
        assert_eq!(m.ops(), 4);
        assert_eq!(m.user_bounds(3), Some((-100, 200)));
        assert_eq!(m.user_bounds(9), Some((5, 6)));
        assert_eq!(m.ts_bounds(), Some((-100, 200)));
        assert_eq!(m.users(), vec![3, 9]);
        let mut out = Vec::new();
        m.range_deletes(3, &mut out);
        assert_eq!(out, vec![Entry::range_delete(3, -100, 20, 2), Entry::range_delete(3, 60, 200, 3)]);
        out.clear();
        assert_eq!(m.scan(3, None, i64::MIN, i64::MAX, 10, &mut out), 1);
        assert_eq!(m.scan(9, None, i64::MIN, i64::MAX, 10, &mut out), 0);
        assert_eq!(m.with_user(9, |e, r| (e.len(), r.len())), Some((0, 1)));
        let maps = if m.shard_index(3) == m.shard_index(9) {
            map_heap(map_capacity(2))
        } else {
            2 * map_heap(map_capacity(1))
        };
        let rd = |n| capacity_after(Entry::range_delete(0, 0, 0, 0), n) * ENTRY_OVERHEAD;
        let slots = capacity_after(SLOT, 1) * SLOT_BYTES + capacity_after(Bytes::new(), 1) * CHUNK_BYTES;
        assert_eq!(m.approximate_bytes(), "3/50/1".len() + slots + rd(2) + rd(1) + maps);
    }

    #[test]
    fn fast_hasher_spreads_sequential_ids() {
        let mut shards = BTreeSet::new();
        let mut hashes = BTreeSet::new();
        for user in 0..1000u64 {
            shards.insert(mix64(user) >> (64 - SHARD_BITS));
            hashes.insert(FastHash.hash_one(user));
        }
        assert_eq!(shards.len(), SHARDS);
        assert_eq!(hashes.len(), 1000);
    }

    #[test]
    fn concurrent_writers_and_readers() {
        const WRITERS: u64 = 4;
        const PER_WRITER: i64 = 2000;
        let m = Arc::new(Memtable::new());
        let seqnos = AtomicU64::new(1);
        let done = AtomicBool::new(false);
        let users: Vec<u64> = (0..3).chain(100..100 + WRITERS).collect();
        let written: Vec<Vec<Entry>> = std::thread::scope(|s| {
            for _ in 0..2 {
                s.spawn(|| {
                    while !done.load(Ordering::Acquire) {
                        for &user in &users {
                            let got = walk(&m, user, i64::MIN, i64::MAX, &[3, 17, 64]);
                            assert!(got.windows(2).all(|w| table_order(&w[0], &w[1]).is_lt()));
                            let got = walk_rev(&m, user, 100, 900, &[5, 40]);
                            assert!(got.windows(2).all(|w| table_order(&w[0], &w[1]).is_gt()));
                        }
                    }
                });
            }
            let writers: Vec<_> = (0..WRITERS)
                .map(|t| {
                    let (m, seqnos) = (&m, &seqnos);
                    s.spawn(move || {
                        let mut mine = Vec::new();
                        for i in 0..PER_WRITER {
                            // Own user, then a shared one; every 7th event is late.
                            let user = if i % 2 == 0 { 100 + t } else { u64::try_from(i).unwrap() % 3 };
                            let ts = if i % 7 == 0 { i / 3 } else { i };
                            let seqno = seqnos.fetch_add(1, Ordering::Relaxed);
                            let payload = Bytes::from(format!("{t}/{i}"));
                            m.insert(user, ts, seqno, Kind::Put, payload.clone());
                            mine.push(Entry::put(user, ts, seqno, payload));
                        }
                        mine
                    })
                })
                .collect();
            let written = writers.into_iter().map(|h| h.join().unwrap()).collect();
            done.store(true, Ordering::Release);
            written
        });

        let mut expected: Vec<Entry> = written.into_iter().flatten().collect();
        expected.sort_by(table_order);
        let mut got = Vec::new();
        for user in m.users() {
            m.with_user(user, |e, r| {
                assert!(r.is_empty());
                got.extend_from_slice(e);
            });
        }
        assert!(got.windows(2).all(|w| table_order(&w[0], &w[1]).is_lt()));
        assert_eq!(got, expected);
        assert_eq!(m.ops(), u64::try_from(expected.len()).unwrap());
        assert_eq!((m.min_seqno(), m.max_seqno()), (1, m.ops()));
        assert_eq!(m.users(), users);
    }

    /// One generated write.
    #[derive(Clone, Debug)]
    enum Op {
        Put(u64, i64, Vec<u8>),
        Delete(u64, i64),
        RangeDelete(u64, i64, i64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => (0..4u64, -5..15i64, prop::collection::vec(any::<u8>(), 0..4))
                .prop_map(|(u, ts, p)| Op::Put(u, ts, p)),
            2 => (0..4u64, -5..15i64).prop_map(|(u, ts)| Op::Delete(u, ts)),
            1 => (0..4u64, -5..15i64, 0..6i64).prop_map(|(u, ts, len)| Op::RangeDelete(u, ts, ts + len)),
        ]
    }

    /// Ops with their seqnos `1..=n`, in order or shuffled.
    fn ops() -> impl Strategy<Value = Vec<(Op, u64)>> {
        (prop::collection::vec(op(), 0..60), any::<bool>()).prop_flat_map(|(ops, shuffle)| {
            let seqnos: Vec<u64> = (1..=u64::try_from(ops.len()).unwrap()).collect();
            let seqnos = if shuffle { Just(seqnos).prop_shuffle().boxed() } else { Just(seqnos).boxed() };
            seqnos.prop_map(move |s| ops.iter().cloned().zip(s).collect::<Vec<_>>())
        })
    }

    proptest! {
        #[test]
        fn matches_a_btreemap_model(
            ops in ops(),
            chunks in prop::collection::vec(1..5usize, 1..4),
            ranges in prop::collection::vec((-7..17i64, -7..17i64), 5),
            previous in prop::option::of(prop::collection::vec(op(), 0..30)),
        ) {
            // Optionally built on the memory of a flushed memtable whose users overlap: its
            // emptied runs and buffers must read as absent and change nothing.
            let (m, spare_heap) = match previous {
                None => (Memtable::new(), 0),
                Some(previous) => {
                    let p = Memtable::new();
                    for (i, op) in previous.iter().enumerate() {
                        let (user, seqno) = match op {
                            Op::Put(u, ..) | Op::Delete(u, _) | Op::RangeDelete(u, ..) => (u + 1, 1000 + i as u64),
                        };
                        match op {
                            Op::Put(_, ts, payload) => p.insert(user, *ts, seqno, Kind::Put, Bytes::from(payload.clone())),
                            Op::Delete(_, ts) => p.insert(user, *ts, seqno, Kind::Delete, Bytes::new()),
                            Op::RangeDelete(_, first, last) => p.insert_range_delete(user, *first, *last, seqno),
                        }
                    }
                    let (spare, buffers) = p.into_spare();
                    let heap = spare.heap();
                    let m = Memtable::recycled(spare);
                    m.give_buffers(buffers, usize::MAX);
                    prop_assert_eq!(m.approximate_bytes(), heap);
                    (m, heap)
                }
            };
            let mut model: BTreeMap<(u64, i64, Reverse<u64>), Entry> = BTreeMap::new();
            let mut model_rd: BTreeMap<u64, Vec<Entry>> = BTreeMap::new();
            let mut bounds: BTreeMap<u64, (i64, i64)> = BTreeMap::new();
            let mut widen = |user: u64, lo: i64, hi: i64| {
                let b = bounds.entry(user).or_insert((lo, hi));
                *b = (b.0.min(lo), b.1.max(hi));
            };
            // A length model: what the heap would be if every container were exact-fit.
            let (mut payloads, mut bytes) = (0, 0);
            for (op, seqno) in &ops {
                let seqno = *seqno;
                match op {
                    Op::Put(user, ts, payload) => {
                        m.insert(*user, *ts, seqno, Kind::Put, Bytes::from(payload.clone()));
                        let e = Entry::put(*user, *ts, seqno, payload.clone());
                        model.insert(e.key(), e);
                        widen(*user, *ts, *ts);
                        bytes += SLOT_BYTES + CHUNK_BYTES;
                        payloads += payload.len();
                    }
                    Op::Delete(user, ts) => {
                        m.insert(*user, *ts, seqno, Kind::Delete, Bytes::from_static(b"x"));
                        let e = Entry::delete(*user, *ts, seqno);
                        model.insert(e.key(), e);
                        widen(*user, *ts, *ts);
                        bytes += SLOT_BYTES + CHUNK_BYTES;
                    }
                    Op::RangeDelete(user, first, last) => {
                        m.insert_range_delete(*user, *first, *last, seqno);
                        model_rd.entry(*user).or_default().push(Entry::range_delete(*user, *first, *last, seqno));
                        widen(*user, *first, *last);
                        bytes += ENTRY_OVERHEAD;
                    }
                }
            }
            bytes += bounds.len() * BUCKET_BYTES;

            let n = u64::try_from(ops.len()).unwrap();
            prop_assert_eq!(m.ops(), n);
            prop_assert_eq!(m.is_empty(), n == 0);
            prop_assert_eq!(m.max_seqno(), n);
            prop_assert_eq!(m.min_seqno(), if n == 0 { u64::MAX } else { 1 });
            // Capacity is at least length; growth at most doubles it, beyond first
            // allocations (a few places per vector, a few buckets and the tail per map).
            let charged = m.approximate_bytes() - spare_heap;
            prop_assert!(m.approximate_bytes() >= payloads + bytes, "{charged} < {payloads} + {bytes}");
            let first = bounds.len() * (4 * (SLOT_BYTES + ENTRY_OVERHEAD + BUCKET_BYTES) + MAP_TAIL_BYTES);
            let most = payloads + 2 * bytes + first + 4 * CHUNK_BYTES;
            prop_assert!(charged <= most, "{charged} > {most}");
            let all = bounds.values().copied().reduce(|a, b| (a.0.min(b.0), a.1.max(b.1)));
            prop_assert_eq!(m.ts_bounds(), all);
            prop_assert_eq!(m.users(), bounds.keys().copied().collect::<Vec<_>>());

            for user in 0..5u64 {
                prop_assert_eq!(m.user_bounds(user), bounds.get(&user).copied());
                let mine: Vec<Entry> = model.values().filter(|e| e.user == user).cloned().collect();
                let rds = model_rd.get(&user).cloned().unwrap_or_default();
                let got = m.with_user(user, |e, r| (e.to_vec(), r.to_vec()));
                prop_assert_eq!(got, bounds.contains_key(&user).then(|| (mine.clone(), rds.clone())));
                let mut got_rd = Vec::new();
                m.range_deletes(user, &mut got_rd);
                prop_assert_eq!(&got_rd, &rds);

                for &(lo, hi) in ranges.iter().chain(&[(i64::MIN, i64::MAX)]) {
                    let want: Vec<Entry> = mine.iter().filter(|e| lo <= e.ts && e.ts <= hi).cloned().collect();
                    prop_assert_eq!(walk(&m, user, lo, hi, &chunks), want.clone());
                    let rev: Vec<Entry> = want.into_iter().rev().collect();
                    prop_assert_eq!(walk_rev(&m, user, lo, hi, &chunks), rev);
                }
            }
        }
    }
}
