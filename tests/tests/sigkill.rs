//! Real SIGKILL: a child process writes synced batches to a database on the real file
//! system and reports each acknowledgement on its stdout; the parent kills it at a random
//! moment between 0 and 100 ms, reopens the database and checks:
//! - every batch the child reported acknowledged is there, byte for byte;
//! - every batch is whole or absent (atomic);
//! - the batches present are a prefix of the order they were written in, with no hole;
//! - nothing else is there (no phantom event).
//!
//! The child is this test binary again, running `child_writes_synced_batches` with
//! `STRATA_KILL_CHILD_DIR` set (without it, that test does nothing). `STRATA_KILLS` sets the
//! number of kills (default 100, times `STRATA_FAULT_SCALE`), `STRATA_KILL_SEED` the seed of
//! the kill moments; a failure names the iteration and its seed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::cast_possible_truncation)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use strata::vfs::SimRng;
use strata::{Db, Options, WriteBatch, WriteOptions};
use strata_tests::env_size;
use strata_tests::summary::Summary;

const CHILD_DIR: &str = "STRATA_KILL_CHILD_DIR";
/// Events of one batch: a marker at (MARKER_USER, batch) and EVENTS - 1 others.
const EVENTS: u64 = 8;
const MARKER_USER: u64 = 1 << 40;

fn options() -> Options {
    // Small memtables and WAL segments, so that flushes and rotations happen under the kill.
    Options {
        memtable_bytes: 32 << 10,
        wal_segment_bytes: 64 << 10,
        partition_width: 1_000,
        ..Options::default()
    }
}

/// The events of batch `i`, as (user, ts, payload).
fn batch_events(i: u64) -> Vec<(u64, i64, Vec<u8>)> {
    let mut events = vec![(MARKER_USER, i as i64, format!("batch {i}").into_bytes())];
    for k in 1..EVENTS {
        let user = (i * 7 + k) % 13;
        events.push((
            user,
            (i * EVENTS + k) as i64,
            format!("{i}:{k}:{}", "x".repeat((i % 5) as usize)).into_bytes(),
        ));
    }
    events
}

/// The child: writes batch after batch with sync, printing "ack N" after each, until killed.
#[test]
fn child_writes_synced_batches() {
    let Some(dir) = std::env::var_os(CHILD_DIR) else { return };
    let db = Db::open(PathBuf::from(dir), options()).unwrap();
    let stdout = std::io::stdout();
    for i in 0.. {
        let mut batch = WriteBatch::new();
        for (user, ts, payload) in batch_events(i) {
            batch.put(user, ts, &payload);
        }
        db.write(&batch, &WriteOptions { sync: true }).unwrap();
        let mut out = stdout.lock();
        writeln!(out, "ack {i}").unwrap();
        out.flush().unwrap();
    }
}

/// Starts the child on `dir`, kills it after `delay`, and returns the batches it reported.
fn run_and_kill(dir: &Path, delay: Duration) -> Vec<u64> {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_writes_synced_batches", "--nocapture", "--test-threads", "1"])
        .env(CHILD_DIR, dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut acked = Vec::new();
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            // The test harness prints "test <name> ... " without a newline before the
            // child's own output, so the first ack may share its line.
            if let Some(at) = line.find("ack ") {
                acked.push(line[at + 4..].trim().parse::<u64>().unwrap());
            }
        }
        acked
    });
    std::thread::sleep(delay);
    let _ = child.kill(); // SIGKILL on Unix
    let _ = child.wait();
    reader.join().unwrap()
}

/// What the reopened database holds, per batch: how many of its events are there, byte for
/// byte. Also counts events that belong to no batch the child could have written.
fn recovered(db: &Db, upto: u64) -> (Vec<u64>, u64) {
    let mut present = vec![0u64; upto as usize];
    let mut phantoms = 0u64;
    let markers: Vec<_> = db.range(MARKER_USER, ..).unwrap().map(Result::unwrap).collect();
    for event in &markers {
        let i = event.ts as u64;
        if i < upto && event.payload.as_ref() == format!("batch {i}").as_bytes() {
            present[i as usize] += 1;
        } else {
            phantoms += 1;
        }
    }
    for user in 0..13u64 {
        for event in db.range(user, ..).unwrap().map(Result::unwrap) {
            let i = event.ts as u64 / EVENTS;
            let k = event.ts as u64 % EVENTS;
            let expected =
                (i < upto && k > 0).then(|| batch_events(i)).map(|events| events[k as usize].clone());
            match expected {
                Some((u, ts, payload))
                    if u == user && ts == event.ts && payload == event.payload.as_ref() =>
                {
                    present[i as usize] += 1;
                }
                _ => phantoms += 1,
            }
        }
    }
    (present, phantoms)
}

#[test]
fn sigkill_at_random_moments_loses_no_acknowledged_batch() {
    let kills = env_size("STRATA_KILLS", 100) * env_size("STRATA_FAULT_SCALE", 1).max(1);
    let seed = env_size("STRATA_KILL_SEED", 0x5349_474b_494c_4c01);
    let mut rng = SimRng::new(seed);
    let mut summary = Summary::new("SIGKILL of a writer on the real file system");
    let root = std::env::temp_dir().join(format!("strata-sigkill-{}", std::process::id()));
    for iteration in 0..kills {
        let dir = root.join(format!("{iteration}"));
        let delay = Duration::from_micros(rng.below(100_000));
        let acked = run_and_kill(&dir, delay);
        summary.kills += 1;
        summary.points += 1;
        summary.acked += acked.len() as u64;
        let context = format!("iteration {iteration} (seed {seed:#x}, killed after {delay:?})");
        // Acks come in order, one per batch.
        assert!(acked.iter().enumerate().all(|(n, &i)| n as u64 == i), "{context}: acks out of order");
        let db = match Db::open(&dir, options()) {
            Ok(db) => db,
            Err(err) => {
                summary.reopen_failures += 1;
                panic!("{context}: reopen failed: {err}\n{summary}");
            }
        };
        summary.states += 1;
        // The child may have written a batch or two past its last ack before it died.
        let upto = acked.len() as u64 + 64;
        let (present, phantoms) = recovered(&db, upto);
        assert_eq!(phantoms, 0, "{context}: events of no batch appeared\n{summary}");
        for (i, &count) in present.iter().enumerate() {
            assert!(
                count == 0 || count == EVENTS,
                "{context}: batch {i} is torn ({count} of {EVENTS} events)"
            );
        }
        let whole = present.iter().take_while(|&&c| c == EVENTS).count();
        assert!(
            present[whole..].iter().all(|&c| c == 0),
            "{context}: the batches present are not a prefix (first hole at {whole})"
        );
        summary.synced_checked += acked.len() as u64;
        if (whole as u64) < acked.len() as u64 {
            summary.losses += acked.len() as u64 - whole as u64;
            panic!("{context}: {} acknowledged batches lost\n{summary}", acked.len() - whole);
        }
        db.close().unwrap();
        drop(db);
        std::fs::remove_dir_all(&dir).unwrap();
    }
    let _ = std::fs::remove_dir_all(&root);
    summary.finish();
}
