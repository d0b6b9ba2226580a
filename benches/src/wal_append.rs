//! The WAL append measurement shared by the criterion bench and `strata-bench wal`/`demo`:
//! pre-built batches of standard-workload events, appended by one or more writer threads to
//! a WAL on the real file system, timed on the wall clock.
//!
//! Batches are built before the clock starts, so the figure is the WAL's cost alone, not the
//! generator's.

use std::path::Path;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use strata_vfs::OsFs;
use strata_wal::{Batch, Recovery, Wal, WalOptions};

use crate::workload::Workload;
use crate::{Error, Result};

/// Generates `events` events and packs them into batches of `batch_events` (the last one
/// may be shorter).
pub fn build_batches(workload: &mut Workload, events: u64, batch_events: usize) -> Vec<Batch> {
    let batch_events = batch_events.max(1);
    let mut batches = Vec::new();
    let mut batch = Batch::new();
    let mut payload = Vec::with_capacity(workload.config().payload_bytes);
    for _ in 0..events {
        let (user, ts) = workload.next_into(&mut payload);
        batch.put(user, ts, &payload);
        if batch.len() as usize >= batch_events {
            batches.push(std::mem::take(&mut batch));
        }
    }
    if !batch.is_empty() {
        batches.push(batch);
    }
    batches
}

/// Opens (and recovers) a WAL on the OS file system.
pub fn open_os_wal(dir: &Path, options: WalOptions) -> Result<(Wal, Recovery)> {
    Ok(Wal::open(Arc::new(OsFs::new()), dir, options, 0)?)
}

/// Appends `appends` batches, cycling through `batches`, from `writers` threads at once;
/// returns the wall time from the moment all writers are released to the moment the last
/// one finished. Writer `t` appends the batches of indices `t, t + writers, ...`, so with
/// one writer the log holds `batches` in order.
pub fn append_timed(
    wal: &Wal,
    batches: &[Batch],
    appends: u64,
    writers: usize,
    sync: bool,
) -> Result<Duration> {
    if batches.is_empty() || appends == 0 {
        return Ok(Duration::ZERO);
    }
    let writers = writers.max(1);
    let len = batches.len() as u64;
    let batch_at = |k: u64| &batches[usize::try_from(k % len).unwrap_or(0)];
    if writers == 1 {
        // No thread at all: the single-writer figure must not pay for a handoff.
        let start = Instant::now();
        for k in 0..appends {
            wal.append(batch_at(k), sync)?;
        }
        return Ok(start.elapsed());
    }
    let barrier = Barrier::new(writers + 1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..writers)
            .map(|t| {
                let barrier = &barrier;
                scope.spawn(move || -> Result<()> {
                    barrier.wait();
                    let mut k = t as u64;
                    while k < appends {
                        wal.append(batch_at(k), sync)?;
                        k += writers as u64;
                    }
                    Ok(())
                })
            })
            .collect();
        barrier.wait();
        let start = Instant::now();
        let mut first_error = None;
        for handle in handles {
            let outcome =
                handle.join().unwrap_or_else(|_| Err(Error::Thread("a writer thread panicked".into())));
            if let Err(err) = outcome {
                first_error.get_or_insert(err);
            }
        }
        let elapsed = start.elapsed();
        match first_error {
            Some(err) => Err(err),
            None => Ok(elapsed),
        }
    })
}
