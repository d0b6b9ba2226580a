//! The engines `strata-bench run` puts side by side, behind one small interface: strata
//! itself, and the peers RocksDB and fjall, each behind its cargo feature.
//!
//! Every engine gets the same events ([`EventBatch`]), the same memory budget ([`Budget`]),
//! and answers the same two queries: the newest `n` events of a user, and a user's events in
//! a time range. A key-value peer stores an event under [`encode_key`]: user (8 bytes, big
//! endian) then ts (8 bytes, big endian, sign bit flipped), so that one user's events are
//! contiguous and in time order; "latest" is a reverse prefix iteration.
//!
//! Each engine is configured as its own documentation recommends for this access pattern;
//! [`settings`] states every setting, and the run prints the ones that differ.

mod strata_store;

#[cfg(feature = "fjall")]
mod fjall_store;
#[cfg(feature = "rocksdb")]
mod rocksdb_store;

use std::path::Path;

use crate::{Error, Result};

/// One event as a query returns it: `strata::Event` for every engine, so that a query's
/// answer costs the same kind of allocation whichever engine gave it.
pub use strata::Event as Row;

/// The engines the CLI knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EngineKind {
    /// strata, this repository.
    Strata,
    /// RocksDB through the `rocksdb` crate (cargo feature `rocksdb`).
    Rocksdb,
    /// fjall (cargo feature `fjall`).
    Fjall,
}

impl EngineKind {
    /// Every engine, in the order results are printed.
    pub const ALL: [EngineKind; 3] = [EngineKind::Strata, EngineKind::Rocksdb, EngineKind::Fjall];

    /// The name used on the command line and in JSON.
    pub fn name(self) -> &'static str {
        match self {
            EngineKind::Strata => "strata",
            EngineKind::Rocksdb => "rocksdb",
            EngineKind::Fjall => "fjall",
        }
    }

    /// Parses a name given on the command line.
    pub fn parse(name: &str) -> Result<EngineKind> {
        EngineKind::ALL
            .into_iter()
            .find(|kind| kind.name() == name.trim())
            .ok_or_else(|| Error::Usage(format!("unknown engine {name:?}; known: strata, rocksdb, fjall")))
    }

    /// Whether this binary was built with the engine.
    pub fn compiled(self) -> bool {
        match self {
            EngineKind::Strata => true,
            EngineKind::Rocksdb => cfg!(feature = "rocksdb"),
            EngineKind::Fjall => cfg!(feature = "fjall"),
        }
    }

    /// The engines this binary was built with.
    pub fn compiled_engines() -> Vec<EngineKind> {
        EngineKind::ALL.into_iter().filter(|kind| kind.compiled()).collect()
    }
}

/// The memory every engine may use for writes and reads, the same for all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    /// Size of one memtable (write buffer).
    pub memtable_bytes: usize,
    /// Memtables held at most: the mutable one plus the immutable ones awaiting flush.
    pub memtables: usize,
    /// Block cache.
    pub cache_bytes: usize,
}

impl Budget {
    /// The whole budget: every memtable plus the cache.
    pub fn total_bytes(&self) -> usize {
        self.memtable_bytes * self.memtables + self.cache_bytes
    }
}

/// A batch of generated events in a neutral layout; every engine builds its own batch from
/// it inside the timed write, as an application would.
#[derive(Clone, Debug, Default)]
pub struct EventBatch {
    /// User of each event.
    pub users: Vec<u64>,
    /// Timestamp of each event.
    pub ts: Vec<i64>,
    /// Every payload, back to back, each `payload_len` bytes.
    pub payloads: Vec<u8>,
    /// Length of each payload.
    pub payload_len: usize,
}

impl EventBatch {
    /// An empty batch of payloads of `payload_len` bytes.
    pub fn with_capacity(events: usize, payload_len: usize) -> EventBatch {
        EventBatch {
            users: Vec::with_capacity(events),
            ts: Vec::with_capacity(events),
            payloads: Vec::with_capacity(events * payload_len),
            payload_len,
        }
    }

    /// Appends one event; its payload must be `payload_len` bytes.
    pub fn push(&mut self, user: u64, ts: i64, payload: &[u8]) {
        debug_assert_eq!(payload.len(), self.payload_len);
        self.users.push(user);
        self.ts.push(ts);
        self.payloads.extend_from_slice(payload);
    }

    /// Number of events.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// Whether the batch holds no event.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// The events as `(user, ts, payload)`.
    pub fn iter(&self) -> impl Iterator<Item = (u64, i64, &[u8])> + '_ {
        let len = self.payload_len;
        self.users.iter().zip(&self.ts).enumerate().map(move |(i, (&user, &ts))| {
            // `push` keeps `payloads` at exactly `len` bytes per event.
            (user, ts, self.payloads.get(i * len..(i + 1) * len).unwrap_or_default())
        })
    }
}

/// One engine under test. Queries append to `out`, which the caller clears.
pub trait Store: Send + Sync {
    /// Writes `batch` atomically; with `sync`, returns only once it is durable.
    fn write(&self, batch: &EventBatch, sync: bool) -> Result<()>;
    /// The newest `n` events of `user`, newest first.
    fn latest(&self, user: u64, n: usize, out: &mut Vec<Row>) -> Result<()>;
    /// The events of `user` with `t0 <= ts <= t1`, ascending; none if `t0 > t1`.
    fn range(&self, user: u64, t0: i64, t1: i64, out: &mut Vec<Row>) -> Result<()>;
    /// Flushes everything and compacts to the engine's steady state; returns when done.
    fn settle(&self) -> Result<()>;
    /// Closes cleanly, as the engine's documentation says to before a process exits.
    fn close(self: Box<Self>) -> Result<()>;
}

/// Opens (creating if missing) the database of `kind` in `dir`.
pub fn open(kind: EngineKind, dir: &Path, budget: Budget) -> Result<Box<dyn Store>> {
    match kind {
        EngineKind::Strata => Ok(Box::new(strata_store::StrataStore::open(dir, budget)?)),
        #[cfg(feature = "rocksdb")]
        EngineKind::Rocksdb => Ok(Box::new(rocksdb_store::RocksdbStore::open(dir, budget)?)),
        #[cfg(feature = "fjall")]
        EngineKind::Fjall => Ok(Box::new(fjall_store::FjallStore::open(dir, budget)?)),
        #[allow(unreachable_patterns)]
        other => Err(not_compiled(other)),
    }
}

/// Every setting of `kind` under `budget`, as (setting, value). The setting names are shared
/// across engines so that the run can print the ones that differ side by side.
pub fn settings(kind: EngineKind, budget: Budget) -> Vec<(&'static str, String)> {
    match kind {
        EngineKind::Strata => strata_store::settings(budget),
        #[cfg(feature = "rocksdb")]
        EngineKind::Rocksdb => rocksdb_store::settings(budget),
        #[cfg(feature = "fjall")]
        EngineKind::Fjall => fjall_store::settings(budget),
        #[allow(unreachable_patterns)]
        _ => Vec::new(),
    }
}

/// The error for an engine this binary was built without.
pub fn not_compiled(kind: EngineKind) -> Error {
    Error::Usage(format!(
        "engine {} is not compiled into this binary; build with `--features {}` (see README.md)",
        kind.name(),
        kind.name()
    ))
}

/// The key of a key-value peer: user big endian, then ts big endian with the sign bit
/// flipped, so that byte order is (user, ts) order for every i64.
pub fn encode_key(user: u64, ts: i64) -> [u8; 16] {
    let mut key = [0u8; 16];
    key[..8].copy_from_slice(&user.to_be_bytes());
    key[8..].copy_from_slice(&ts_to_ordered(ts).to_be_bytes());
    key
}

/// The inverse of [`encode_key`]; `None` if `key` is not 16 bytes.
pub fn decode_key(key: &[u8]) -> Option<(u64, i64)> {
    let user = u64::from_be_bytes(key.get(..8)?.try_into().ok()?);
    let ts = u64::from_be_bytes(key.get(8..16)?.try_into().ok()?);
    if key.len() != 16 {
        return None;
    }
    Some((user, ordered_to_ts(ts)))
}

fn ts_to_ordered(ts: i64) -> u64 {
    u64::from_be_bytes(ts.to_be_bytes()) ^ (1 << 63)
}

fn ordered_to_ts(bits: u64) -> i64 {
    i64::from_be_bytes((bits ^ (1 << 63)).to_be_bytes())
}

/// A peer's key that failed to decode: the database holds something this tool never wrote.
#[cfg(any(feature = "rocksdb", feature = "fjall"))]
fn bad_key(engine: &str, key: &[u8]) -> Error {
    Error::Mismatch(format!("{engine} returned a key of {} bytes, not a 16-byte event key", key.len()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#[allow(clippy::cast_possible_truncation)]
mod tests {
    use super::*;

    #[test]
    fn keys_sort_as_user_then_ts() {
        let pairs = [(0u64, i64::MIN), (0, -1), (0, 0), (0, 1), (0, i64::MAX), (1, i64::MIN), (u64::MAX, 7)];
        let keys: Vec<[u8; 16]> = pairs.iter().map(|&(u, t)| encode_key(u, t)).collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]));
        for (&(u, t), key) in pairs.iter().zip(&keys) {
            assert_eq!(decode_key(key), Some((u, t)));
        }
        assert_eq!(decode_key(&[0; 15]), None);
        assert_eq!(decode_key(&[0; 17]), None);
    }

    #[test]
    fn engine_names_round_trip() {
        for kind in EngineKind::ALL {
            assert_eq!(EngineKind::parse(kind.name()).unwrap(), kind);
        }
        assert!(EngineKind::parse("leveldb").is_err());
        assert!(EngineKind::compiled_engines().contains(&EngineKind::Strata));
    }

    #[test]
    fn batch_iterates_its_events() {
        let mut batch = EventBatch::with_capacity(2, 3);
        batch.push(1, 10, b"abc");
        batch.push(2, -5, b"xyz");
        let events: Vec<_> = batch.iter().collect();
        assert_eq!(events, vec![(1, 10, &b"abc"[..]), (2, -5, &b"xyz"[..])]);
        let mut empty_payloads = EventBatch::with_capacity(1, 0);
        empty_payloads.push(3, 4, b"");
        assert_eq!(empty_payloads.iter().collect::<Vec<_>>(), vec![(3, 4, &b""[..])]);
    }

    /// Every engine compiled into this build answers the same queries with the same events:
    /// newest first for "latest", ascending and inclusive for "range", overwrites resolved,
    /// before and after settle and across a reopen.
    #[test]
    fn every_compiled_engine_answers_alike() {
        let budget = Budget { memtable_bytes: 1 << 20, memtables: 3, cache_bytes: 1 << 20 };
        for kind in EngineKind::compiled_engines() {
            let dir = tempfile::tempdir().unwrap();
            let store = open(kind, dir.path(), budget).unwrap();
            let mut batch = EventBatch::with_capacity(6, 2);
            for ts in [5, 1, 3, -4] {
                batch.push(9, ts, &[ts as u8; 2]);
            }
            batch.push(8, 2, b"zz");
            batch.push(10, i64::MIN, b"lo");
            store.write(&batch, true).unwrap();
            let mut again = EventBatch::with_capacity(1, 2);
            again.push(9, 3, b"v2");
            store.write(&again, false).unwrap();
            let check = |store: &dyn Store, when: &str| {
                let mut out = Vec::new();
                store.latest(9, 2, &mut out).unwrap();
                let got: Vec<(u64, i64, Vec<u8>)> =
                    out.iter().map(|e| (e.user, e.ts, e.payload.to_vec())).collect();
                assert_eq!(got, vec![(9, 5, vec![5, 5]), (9, 3, b"v2".to_vec())], "{kind:?} latest {when}");
                out.clear();
                store.range(9, -4, 3, &mut out).unwrap();
                assert_eq!(
                    out.iter().map(|e| e.ts).collect::<Vec<_>>(),
                    vec![-4, 1, 3],
                    "{kind:?} range {when}"
                );
                out.clear();
                store.range(9, 4, 3, &mut out).unwrap();
                assert!(out.is_empty(), "{kind:?} inverted range {when}");
                store.latest(10, 5, &mut out).unwrap();
                assert_eq!(out.iter().map(|e| e.ts).collect::<Vec<_>>(), vec![i64::MIN], "{kind:?} {when}");
                out.clear();
                store.latest(7, 5, &mut out).unwrap();
                assert!(out.is_empty(), "{kind:?} absent user {when}");
            };
            check(&*store, "written");
            store.settle().unwrap();
            check(&*store, "settled");
            store.close().unwrap();
            let store = open(kind, dir.path(), budget).unwrap();
            check(&*store, "reopened");
            store.close().unwrap();
        }
    }
}
