//! `strata-bench demo`: an end-to-end check of the embedded engine (`strata::Db`) on the real
//! file system. It writes standard-workload events in batches, closes the database (which
//! flushes them into time-partitioned tables), reopens it, and checks every event against
//! the events regenerated from the same seed, byte for byte: each key by `get`, and every
//! user's whole history by `range` and `latest`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use strata::{Db, Options, WriteBatch, WriteOptions};
use strata_bench::hw::per_sec;
use strata_bench::workload::{Workload, WorkloadConfig};
use strata_bench::{Error, Result};

use super::{mb_per_sec, rate, thousands, WorkDir};

/// Options of `demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Directory for the database (created if missing; must be empty). Default: a temporary one.
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

/// What the events should read back as: `(user, ts) -> payload`, the last write winning.
type Model = BTreeMap<(u64, i64), Vec<u8>>;

pub fn run(args: &DemoArgs) -> Result<()> {
    let work = WorkDir::new(args.dir.as_deref())?;
    let path = work.path().join("db");
    let config = WorkloadConfig::default();
    let raw_event_bytes = config.raw_event_bytes() as u64;

    let (batches, model) = build(&config, args.events, args.batch);
    let db = Db::open(&path, Options::default())?;
    let start = Instant::now();
    for batch in &batches {
        db.write(batch, &WriteOptions { sync: args.sync })?;
    }
    let elapsed = start.elapsed();
    let close_start = Instant::now();
    db.close()?;
    let close_time = close_start.elapsed();
    drop(db);

    let reopen_start = Instant::now();
    let db = Db::open(&path, Options::default())?;
    let reopen_time = reopen_start.elapsed();
    let stats = db.stats();
    let verified = verify(&db, &model)?;
    db.close()?;

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
    let tables: u64 = stats.partitions.iter().map(|p| p.sequence_tables + p.unsequence_tables).sum();
    let bytes: u64 = stats.partitions.iter().map(|p| p.bytes).sum();
    println!(
        "  close (flush) {:.1} ms, reopen {:.1} ms: {} partitions, {} tables, {:.1} bytes/event on disk",
        close_time.as_secs_f64() * 1e3,
        reopen_time.as_secs_f64() * 1e3,
        stats.partitions.len(),
        tables,
        bytes as f64 / args.events.max(1) as f64
    );
    println!("verified {} keys of {} users, byte for byte", thousands(verified.0), thousands(verified.1));
    Ok(())
}

/// The write batches of `events` standard-workload events, and the model they leave.
fn build(config: &WorkloadConfig, events: u64, per_batch: u32) -> (Vec<WriteBatch>, Model) {
    let mut workload = Workload::new(config.clone());
    let mut model = Model::new();
    let mut batches = Vec::new();
    let mut payload = Vec::new();
    let mut left = events;
    while left > 0 {
        let n = left.min(u64::from(per_batch));
        let mut batch = WriteBatch::new();
        for _ in 0..n {
            let (user, ts) = workload.next_into(&mut payload);
            batch.put(user, ts, &payload);
            model.insert((user, ts), payload.clone());
        }
        batches.push(batch);
        left -= n;
    }
    (batches, model)
}

/// Checks `db` against `model`: every key by `get`, every user's events by `range` (all of
/// them, ascending) and `latest` (the newest 100). Returns (keys, users) checked.
fn verify(db: &Db, model: &Model) -> Result<(u64, u64)> {
    let mismatch = |what: String| Err(Error::Mismatch(what));
    for ((user, ts), payload) in model {
        match db.get(*user, *ts)? {
            Some(event) if event.payload[..] == payload[..] => {}
            other => return mismatch(format!("get({user}, {ts}) returned {other:?}")),
        }
    }
    let mut users = 0u64;
    let mut keys = model.iter().peekable();
    while let Some(((user, _), _)) = keys.peek() {
        let user = *user;
        let want: Vec<(i64, &Vec<u8>)> = std::iter::from_fn(|| keys.next_if(|((u, _), _)| *u == user))
            .map(|((_, ts), p)| (*ts, p))
            .collect();
        let mut got = db.range(user, ..)?;
        for (ts, payload) in &want {
            match got.next().transpose()? {
                Some(event) if event.ts == *ts && event.payload[..] == payload[..] => {}
                other => return mismatch(format!("range of user {user} at ts {ts}: got {other:?}")),
            }
        }
        if let Some(extra) = got.next().transpose()? {
            return mismatch(format!("range of user {user} returned an unwritten event {extra:?}"));
        }
        let latest = db.latest(user, 100)?;
        let newest: Vec<i64> = want.iter().rev().take(100).map(|(ts, _)| *ts).collect();
        if latest.iter().map(|e| e.ts).collect::<Vec<_>>() != newest {
            return mismatch(format!("latest(100) of user {user} differs"));
        }
        users += 1;
    }
    Ok((model.len() as u64, users))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn verify_accepts_the_events_and_refuses_any_difference() {
        let config = WorkloadConfig::default();
        let (batches, model) = build(&config, 3_500, 100);
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path(), Options::default()).unwrap();
        for batch in &batches {
            db.write(batch, &WriteOptions::default()).unwrap();
        }
        assert_eq!(verify(&db, &model).unwrap().0, model.len() as u64);

        let (&(user, ts), _) = model.iter().nth(1_000).unwrap();
        db.put(user, ts, b"altered").unwrap();
        let err = verify(&db, &model).unwrap_err();
        assert!(err.to_string().contains(&format!("get({user}, {ts})")), "{err}");

        let mut missing = model.clone();
        missing.insert((user, ts + 1), b"never written".to_vec());
        assert!(verify(&db, &missing).is_err());
    }
}
