//! End-to-end test of `strata-bench engine` at CI size, through the real binary: an ingest
//! left unsettled, then the settle's protocol on it with `--query-only --beside-compact`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

fn engine(args: &[&str], dir: &std::path::Path) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_strata-bench"))
        .arg("engine")
        .args(args)
        .arg("--dir")
        .arg(dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "engine {args:?} failed:\n{stdout}\n{stderr}");
    stdout
}

#[test]
fn beside_compact_times_a_reader_during_the_compaction_then_idle_on_its_result() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("work");
    // Small memtables and no settle: the partition is left as many flushed tables.
    engine(&["--events", "30000", "--memtable-mib", "1", "--queries", "100", "--no-compact"], &dir);
    let stdout =
        engine(&["--query-only", "--warmup-queries", "300", "--queries", "500", "--beside-compact"], &dir);
    let before: Vec<&str> = stdout.lines().filter(|l| l.starts_with("partition ")).collect();
    let after: Vec<&str> = stdout.lines().filter(|l| l.starts_with("after: partition ")).collect();
    // The newest partition holds the flushes; backfills (up to 48 h late) land in older ones.
    assert!(
        before.iter().any(|l| !l.contains(": 1 sequence + 0 unsequence tables")),
        "the ingest left nothing to compact:\n{stdout}"
    );
    // One aligned window of partitions: one group, merged into one table.
    assert_eq!(after.len(), 1, "{stdout}");
    assert!(after[0].contains(": 1 sequence + 0 unsequence tables, 30000 events"), "not settled:\n{stdout}");
    for label in [
        "latest 100 beside compact()",
        "timed (as `run` times it) pass",
        "p99 beside compact() / p99 idle after it",
    ] {
        assert!(stdout.contains(label), "the report lacks {label:?}:\n{stdout}");
    }
    // The reader runs until compact() returns, so it made at least one query.
    let during = stdout.lines().find(|l| l.starts_with("latest 100 beside compact()")).unwrap();
    let queries: String = during.split("): ").nth(1).unwrap().split(' ').next().unwrap().replace(',', "");
    assert!(queries.parse::<u64>().unwrap() >= 1, "{during}");
}
