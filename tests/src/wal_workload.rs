//! The WAL fault workload and its oracle.
//!
//! Several writer threads append batches whose contents name their writer and index, mixing
//! `sync = true` and `sync = false`; writer 0 also "persists" a prefix of the log now and
//! then (it records the seqno as durable elsewhere, as the engine's manifest would, and
//! then calls `release`). After a crash or fault, [`check`] compares what recovery returns
//! with what was acknowledged:
//! - every batch acknowledged with `sync = true` is present, byte for byte (after a crash);
//!   without a crash, every acknowledged batch is (it was handed to the OS);
//! - batches are all or nothing: each recovered batch equals the batch that was submitted;
//! - the recovered batches are a prefix of the log order: seqnos run on without a hole;
//! - nothing unwritten appears: every recovered batch was submitted by some writer, once,
//!   under the seqno it was acknowledged with.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use strata_vfs::FileSystem;
use strata_wal::{Batch, Op, Recovery, Wal, WalOptions};

/// Where the workload keeps its log on the simulated disk.
pub const DIR: &str = "/db/wal";

/// Size and shape of the workload.
#[derive(Clone, Debug)]
pub struct Config {
    /// Concurrent writer threads.
    pub writers: u64,
    /// Batches each writer appends.
    pub batches_per_writer: u64,
    /// Segment size: small, so that rotation happens many times.
    pub segment_bytes: u64,
    /// Writer 0 persists and releases every this many of its batches (0: never).
    pub release_every: u64,
    /// Background writeback interval in bytes: small, so that it runs during the workload.
    pub bytes_per_sync: u64,
}

impl Config {
    /// The WAL options the workload runs with.
    pub fn wal_options(&self) -> WalOptions {
        WalOptions {
            segment_bytes: self.segment_bytes,
            bytes_per_sync: self.bytes_per_sync,
            ..WalOptions::default()
        }
    }
}

/// Whether batch `index` of `writer` is appended with `sync = true` (about one in three).
pub fn is_sync(writer: u64, index: u64) -> bool {
    (writer + index).is_multiple_of(3)
}

/// The batch `index` of `writer`: 1 to 3 puts (and a delete now and then) whose user is the
/// writer and whose timestamps encode the index, so a recovered batch names its origin.
pub fn make_batch(writer: u64, index: u64) -> Batch {
    let mut batch = Batch::new();
    let ops = 1 + index % 3;
    for op in 0..ops {
        let ts = (index * 4 + op) as i64;
        let payload: Vec<u8> =
            (0..(index % 7) * 3).map(|b| (writer * 31 + index * 7 + op + b).to_le_bytes()[0]).collect();
        batch.put(writer, ts, &payload);
    }
    if index.is_multiple_of(5) {
        batch.delete(writer, (index * 4 + 3) as i64);
    }
    batch
}

/// The `(writer, index)` a batch of [`make_batch`] came from.
pub fn identify(batch: &Batch) -> Option<(u64, u64)> {
    match batch.iter().next()? {
        Op::Put { user, ts, .. } => Some((user, (ts as u64) / 4)),
        _ => None,
    }
}

/// One acknowledged append.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ack {
    /// The writer.
    pub writer: u64,
    /// Its batch index.
    pub index: u64,
    /// The seqno the WAL returned.
    pub seqno: u64,
    /// Whether it was appended with `sync = true`.
    pub sync: bool,
}

/// What a run did.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Every acknowledged append.
    pub acks: Vec<Ack>,
    /// Calls that returned an error (appends, releases, the open).
    pub errors: u64,
    /// The highest seqno recorded as persisted elsewhere before `release` was called.
    pub persisted: u64,
}

/// Opens the WAL on `fs`, runs the workload until it completes or every writer hit an
/// error, and closes the WAL. Errors are counted, never unwrapped: faults are the point.
pub fn run(fs: Arc<dyn FileSystem>, config: &Config) -> Outcome {
    let wal = match Wal::open(fs, DIR, config.wal_options(), 0) {
        Ok((wal, _)) => Arc::new(wal),
        Err(_) => return Outcome { errors: 1, ..Outcome::default() },
    };
    let acks = Arc::new(Mutex::new(Vec::new()));
    let errors = Arc::new(AtomicU64::new(0));
    let persisted = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = (0..config.writers)
        .map(|writer| {
            let (wal, acks, errors, persisted) =
                (wal.clone(), acks.clone(), errors.clone(), persisted.clone());
            let config = config.clone();
            std::thread::spawn(move || {
                for index in 0..config.batches_per_writer {
                    let sync = is_sync(writer, index);
                    let Ok(seqno) = wal.append(&make_batch(writer, index), sync) else {
                        errors.fetch_add(1, Ordering::Relaxed);
                        return;
                    };
                    if let Ok(mut acks) = acks.lock() {
                        acks.push(Ack { writer, index, seqno, sync });
                    }
                    let releasing =
                        writer == 0 && config.release_every > 0 && index.is_multiple_of(config.release_every);
                    if releasing && seqno > 1 {
                        // As the engine does: first record durably what is persisted, then
                        // let the WAL drop it. Everything before this batch counts as persisted.
                        persisted.store(seqno - 1, Ordering::SeqCst);
                        if wal.release(seqno - 1).is_err() {
                            errors.fetch_add(1, Ordering::Relaxed);
                            return;
                        }
                    }
                }
            })
        })
        .collect();
    for thread in threads {
        if thread.join().is_err() {
            errors.fetch_add(1, Ordering::Relaxed);
        }
    }
    // A clean close is part of the workload: it must report any failure the writers did
    // not see (a background fsync that failed after the last append).
    match Arc::try_unwrap(wal) {
        Ok(wal) => {
            if wal.close().is_err() {
                errors.fetch_add(1, Ordering::Relaxed);
            }
        }
        Err(_) => {
            errors.fetch_add(1, Ordering::Relaxed);
        }
    }
    let acks = acks.lock().map(|a| a.clone()).unwrap_or_default();
    Outcome { acks, errors: errors.load(Ordering::Relaxed), persisted: persisted.load(Ordering::SeqCst) }
}

/// Reopens the WAL on `fs` with the persisted seqno of `outcome`.
pub fn recover(
    fs: Arc<dyn FileSystem>,
    config: &Config,
    outcome: &Outcome,
) -> Result<(Wal, Recovery), String> {
    Wal::open(fs, Path::new(DIR), config.wal_options(), outcome.persisted)
        .map_err(|e| format!("reopen failed: {e}"))
}

/// What [`check`] verified.
#[derive(Debug, Default)]
pub struct Checked {
    /// Acknowledged batches that had to be present and were.
    pub required_present: u64,
    /// Sync-acknowledged batches among those.
    pub synced: u64,
}

/// Checks `recovery` against `outcome`; see the module doc. `crashed` says whether unsynced
/// data may have been lost. Returns a description of the first violation.
pub fn check(
    recovery: &Recovery,
    outcome: &Outcome,
    config: &Config,
    crashed: bool,
) -> Result<Checked, String> {
    let persisted = outcome.persisted;
    let mut by_seqno: HashMap<u64, (u64, u64)> = HashMap::new();
    let mut seen: HashMap<(u64, u64), u64> = HashMap::new();
    let mut expected_seqno = persisted + 1;
    for recovered in &recovery.batches {
        let seqno = recovered.first_seqno;
        if seqno != expected_seqno {
            return Err(format!("hole or overlap: batch at seqno {seqno}, expected {expected_seqno}"));
        }
        expected_seqno = seqno + u64::from(recovered.batch.len());
        let id =
            identify(&recovered.batch).ok_or_else(|| format!("seqno {seqno}: batch of unknown origin"))?;
        if id.0 >= config.writers || id.1 >= config.batches_per_writer {
            return Err(format!("seqno {seqno}: phantom batch {id:?} that no writer submitted"));
        }
        if recovered.batch != make_batch(id.0, id.1) {
            return Err(format!("seqno {seqno}: batch {id:?} altered or partial"));
        }
        if let Some(previous) = seen.insert(id, seqno) {
            return Err(format!("batch {id:?} recovered twice, at seqnos {previous} and {seqno}"));
        }
        by_seqno.insert(seqno, id);
    }
    let mut checked = Checked::default();
    for ack in &outcome.acks {
        if ack.seqno <= persisted {
            continue;
        }
        let id = (ack.writer, ack.index);
        let must_be_present = !crashed || ack.sync || ack.seqno < expected_seqno;
        match by_seqno.get(&ack.seqno) {
            Some(&found) if found == id => {}
            Some(&found) => {
                return Err(format!("seqno {} acknowledged for {id:?} but holds {found:?}", ack.seqno))
            }
            None if must_be_present => {
                return Err(format!(
                    "acknowledged batch {id:?} (seqno {}, sync {}) lost",
                    ack.seqno, ack.sync
                ))
            }
            None => continue,
        }
        checked.required_present += 1;
        checked.synced += u64::from(ack.sync);
    }
    Ok(checked)
}
