//! `strata-bench demo`: an end-to-end check of the WAL on the real file system. It writes
//! standard-workload events, closes and reopens the log, and compares what recovery returns
//! with the events regenerated from the same seed, byte for byte.

use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use strata_bench::hw::per_sec;
use strata_bench::wal_append::{append_timed, build_batches, open_os_wal};
use strata_bench::workload::{Workload, WorkloadConfig};
use strata_bench::{Error, Result};
use strata_wal::{Op, RecoveredBatch, WalOptions};

use super::{mb_per_sec, rate, thousands, WorkDir};

/// Options of `demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Directory for the WAL (created if missing; must be empty). Default: a temporary one.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Events to write.
    #[arg(long, default_value_t = 200_000)]
    events: u64,
    /// Events per batch.
    #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u32).range(1..))]
    batch: u32,
    /// fsync every batch before acknowledging it.
    #[arg(long)]
    sync: bool,
}

pub fn run(args: &DemoArgs) -> Result<()> {
    let work = WorkDir::new(args.dir.as_deref())?;
    let wal_dir = work.path().join("wal");
    let config = WorkloadConfig::default();
    let raw_event_bytes = config.raw_event_bytes() as u64;

    let batches = build_batches(&mut Workload::new(config.clone()), args.events, args.batch as usize);
    let (wal, recovery) = open_os_wal(&wal_dir, WalOptions::default())?;
    if !recovery.batches.is_empty() {
        return Err(Error::Mismatch(format!(
            "the new WAL in {} already holds {} batches",
            wal_dir.display(),
            recovery.batches.len()
        )));
    }
    let elapsed = append_timed(&wal, &batches, batches.len() as u64, 1, args.sync)?;
    let stats = wal.stats();
    let close_start = Instant::now();
    wal.close()?;
    let close_time = close_start.elapsed();

    let reopen_start = Instant::now();
    let (wal, recovery) = open_os_wal(&wal_dir, WalOptions::default())?;
    let reopen_time = reopen_start.elapsed();
    let verified = verify(&recovery.batches, args.events, config)?;
    wal.close()?;

    let events_per_sec = per_sec(args.events as f64, elapsed);
    println!(
        "wrote {} events ({} bytes raw) in {} batches of up to {}, sync={}, in {:.3} s",
        thousands(args.events),
        thousands(args.events * raw_event_bytes),
        thousands(batches.len() as u64),
        thousands(u64::from(args.batch)),
        args.sync,
        elapsed.as_secs_f64()
    );
    println!(
        "  {} events/s, {:.1} MB/s of raw 80-byte events",
        rate(events_per_sec),
        mb_per_sec(events_per_sec * raw_event_bytes as f64)
    );
    println!(
        "  WAL: {} records, {} groups, {} fsyncs, {} bytes written, {} segments",
        thousands(stats.records),
        thousands(stats.groups),
        thousands(stats.syncs),
        thousands(stats.bytes_written),
        stats.segments
    );
    println!(
        "  close {:.1} ms, reopen (with recovery) {:.1} ms, recovered {} batches",
        close_time.as_secs_f64() * 1e3,
        reopen_time.as_secs_f64() * 1e3,
        thousands(recovery.batches.len() as u64)
    );
    println!("verified {} events", thousands(verified));
    Ok(())
}

/// Checks that `recovered` holds exactly the first `events` events of `config`, in order,
/// with contiguous seqnos. Returns the number of events checked.
fn verify(recovered: &[RecoveredBatch], events: u64, config: WorkloadConfig) -> Result<u64> {
    let mut expected = Workload::new(config);
    let mut payload = Vec::new();
    let mut checked = 0u64;
    let mut next_seqno = recovered.first().map(|b| b.first_seqno);
    for (index, recovered_batch) in recovered.iter().enumerate() {
        if Some(recovered_batch.first_seqno) != next_seqno {
            return Err(Error::Mismatch(format!(
                "batch {index} starts at seqno {}, expected {next_seqno:?}",
                recovered_batch.first_seqno
            )));
        }
        next_seqno = Some(recovered_batch.first_seqno + u64::from(recovered_batch.batch.len()));
        let mut ops = 0u32;
        for op in recovered_batch.batch.iter() {
            ops += 1;
            if checked == events {
                return Err(Error::Mismatch(format!(
                    "recovery returned more than the {events} events written"
                )));
            }
            let (user, ts) = expected.next_into(&mut payload);
            let want = Op::Put { user, ts, payload: &payload };
            if op != want {
                return Err(Error::Mismatch(format!(
                    "event {checked} (batch {index}) differs: got {op:?}, expected {want:?}"
                )));
            }
            checked += 1;
        }
        if ops != recovered_batch.batch.len() {
            return Err(Error::Mismatch(format!(
                "batch {index} decodes to {ops} operations but claims {}",
                recovered_batch.batch.len()
            )));
        }
    }
    if checked != events {
        return Err(Error::Mismatch(format!("recovery returned {checked} events, {events} were written")));
    }
    Ok(checked)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use strata_wal::Batch;

    fn recovered(batches: Vec<Batch>) -> Vec<RecoveredBatch> {
        let mut seqno = 1;
        batches
            .into_iter()
            .map(|batch| {
                let first_seqno = seqno;
                seqno += u64::from(batch.len());
                RecoveredBatch { first_seqno, batch }
            })
            .collect()
    }

    #[test]
    fn verify_accepts_the_events_and_refuses_any_difference() {
        let config = WorkloadConfig::default();
        let batches = build_batches(&mut Workload::new(config.clone()), 35, 10);
        let good = recovered(batches.clone());
        assert_eq!(verify(&good, 35, config.clone()).unwrap(), 35);

        assert!(matches!(verify(&good, 36, config.clone()), Err(Error::Mismatch(_))));
        assert!(matches!(verify(&good, 34, config.clone()), Err(Error::Mismatch(_))));
        assert!(matches!(verify(&good[1..], 25, config.clone()), Err(Error::Mismatch(_))));

        let mut gap = good.clone();
        gap[2].first_seqno += 1;
        assert!(matches!(verify(&gap, 35, config.clone()), Err(Error::Mismatch(_))));

        let mut altered = batches;
        let mut bytes = altered[1].as_bytes().to_vec();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        altered[1] = Batch::decode(&bytes, altered[1].len()).unwrap();
        let err = verify(&recovered(altered), 35, config).unwrap_err();
        assert!(err.to_string().contains("event 19"), "{err}");
    }
}
