//! End-to-end tests of `strata-bench import`: small logs in the MovieLens and CSV layouts,
//! generated here (never downloaded), loaded by the real binary with `--verify`; the JSON
//! results checked against `run`'s schema; and the verifier's self-test, which must fail.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use strata_bench::runner::SCHEMA;
use strata_bench::workload::Rng;

const USERS: u64 = 300;
const PHASES: [&str; 6] = ["ingest", "reopen", "settle", "latest", "range", "memory"];

/// A MovieLens `u.data`-layout log: `USERS` users with 5 to 15 ratings each over about two
/// months, a third of them in the same second as the user's previous one, lines shuffled
/// (as `u.data` is not sorted). Returns its rows.
fn write_movielens(path: &Path, header: Option<&str>) -> usize {
    let mut rng = Rng::new(42);
    let mut lines = Vec::new();
    for user in 1..=USERS {
        let mut ts = 880_000_000 + rng.below(60 * 86_400);
        for _ in 0..5 + rng.below(11) {
            if rng.below(3) != 0 {
                ts += rng.below(86_400);
            }
            lines.push(format!("{user}\t{}\t{}\t{ts}", 1 + rng.below(1682), 1 + rng.below(5)));
        }
    }
    for i in (1..lines.len()).rev() {
        let j = usize::try_from(rng.below(i as u64 + 1)).unwrap();
        lines.swap(i, j);
    }
    let mut text = header.map(|h| format!("{h}\n")).unwrap_or_default();
    for line in &lines {
        text.push_str(line);
        text.push('\n');
    }
    std::fs::write(path, text).unwrap();
    lines.len()
}

fn import(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_strata-bench")).arg("import").args(args).output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn path_str(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// Checks a results file and returns it.
fn check_results(json: &Path, source: &Path, rows: usize) -> serde_json::Value {
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(json).unwrap()).unwrap();
    assert_eq!(report["schema_version"], 1);
    assert_eq!(report["command"], "import");
    assert_eq!(report["source"], path_str(source));
    assert_eq!(report["rows"], rows);
    let results = report["results"].as_array().unwrap();
    let phases: Vec<&str> = results.iter().map(|r| r["phase"].as_str().unwrap()).collect();
    assert_eq!(phases, PHASES);
    for result in results {
        let phase = result["phase"].as_str().unwrap();
        assert_eq!(result["engine"], "strata");
        // Exactly the figures `run` reports for the phase, each a finite number >= 0.
        let (_, fields) = SCHEMA.iter().find(|(name, _)| *name == phase).unwrap();
        let mut want: Vec<&str> = fields.to_vec();
        want.extend(["engine", "phase"]);
        want.sort_unstable();
        let object = result.as_object().unwrap();
        let mut got: Vec<&str> = object.keys().map(String::as_str).collect();
        got.sort_unstable();
        assert_eq!(got, want, "{phase}");
        for field in *fields {
            let value = object[*field].as_f64().unwrap();
            assert!(value.is_finite() && value >= 0.0, "{phase}.{field} = {value}");
        }
    }
    let figure = |phase: &str, field: &str| -> f64 {
        results.iter().find(|r| r["phase"] == phase).unwrap()[field].as_f64().unwrap()
    };
    assert_eq!(figure("ingest", "events"), rows as f64);
    assert!(figure("ingest", "events_per_sec") > 0.0);
    assert!(figure("settle", "bytes_on_disk") > 0.0);
    assert_eq!(figure("latest", "queries"), 200.0);
    assert_eq!(figure("range", "queries"), 200.0);
    // Every query user has rows, so every "latest" answer holds at least one event.
    assert!(figure("latest", "events_returned") >= 200.0);
    assert!(figure("range", "events_returned") > 0.0);
    assert!(figure("latest", "p99_us") >= figure("latest", "p50_us"));
    assert!(figure("memory", "peak_rss_bytes") > 0.0 || !Path::new("/proc/self/status").exists());
    report
}

#[test]
fn movielens_log_loads_and_every_answer_verifies() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("u.data");
    let rows = write_movielens(&data, None);
    let json = tmp.path().join("out.json");
    let db = tmp.path().join("db");
    let out = import(&[
        "--format",
        "movielens",
        path_str(&data),
        "--verify",
        "--json",
        path_str(&json),
        "--latest-queries",
        "200",
        "--range-queries",
        "200",
        "--warmup-queries",
        "100",
        "--dir",
        path_str(&db),
    ]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{}", text(&out.stderr));
    // Two warm-ups (before the settle and after it), latest and range answers, each checked.
    assert!(stdout.contains("verify: 600 answers checked, 0 mismatches"), "{stdout}");
    assert!(stdout.contains("latest.p99_us"), "{stdout}");
    let report = check_results(&json, &data, rows);
    assert_eq!(report["format"], "movielens");
    assert_eq!(report["users"], USERS);
    // Same-second ratings of a user are kept, moved 1 µs apart, not overwritten.
    assert!(report["moved_rows"].as_u64().unwrap() > 0);
    assert!(db.join("db").is_dir());
}

#[test]
fn verify_catches_a_wrong_answer() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("u.data");
    write_movielens(&data, None);
    let args = [
        "--format",
        "movielens",
        path_str(&data),
        "--latest-queries",
        "20",
        "--range-queries",
        "20",
        "--warmup-queries",
        "50",
    ];
    let out = import(&[&args[..], &["--verify", "--inject-wrong-answer"]].concat());
    let stderr = text(&out.stderr);
    assert!(!out.status.success(), "a wrong answer passed verification; stdout:\n{}", text(&out.stdout));
    assert!(stderr.contains("verification failed: latest 100 of user"), "{stderr}");
    assert!(stderr.contains("the answer ends after"), "{stderr}");
    // The self-test means nothing without --verify, and is refused.
    let out = import(&[&args[..], &["--inject-wrong-answer"]].concat());
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("needs --verify"));
}

#[test]
fn inter_file_with_header_and_csv_load() {
    let tmp = tempfile::tempdir().unwrap();
    // A RecBole `.inter` file: a typed header line, then the u.data layout.
    let inter = tmp.path().join("ml.inter");
    let rows = write_movielens(&inter, Some("user_id:token\titem_id:token\trating:float\ttimestamp:float"));
    let json = tmp.path().join("inter.json");
    let queries = ["--latest-queries", "200", "--range-queries", "200", "--warmup-queries", "0"];
    let out = import(
        &[&["--format", "movielens", path_str(&inter), "--verify", "--json", path_str(&json)], &queries[..]]
            .concat(),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    check_results(&json, &inter, rows);

    // The same log as a CSV with a header, the timestamp in milliseconds in column 3.
    let csv = tmp.path().join("ratings.csv");
    let converted: String = std::fs::read_to_string(&inter)
        .unwrap()
        .lines()
        .enumerate()
        .map(|(i, line)| {
            let f: Vec<&str> = line.split('\t').collect();
            if i == 0 {
                "userId,movieId,rating,timestamp\n".to_string()
            } else {
                format!("{},{},{},{}000\n", f[0], f[1], f[2], f[3])
            }
        })
        .collect();
    std::fs::write(&csv, converted).unwrap();
    let json = tmp.path().join("csv.json");
    let csv_args = ["--format", "csv", path_str(&csv), "--header", "--ts-col", "3", "--ts-unit", "ms"];
    let out = import(&[&csv_args[..], &["--verify", "--json", path_str(&json)], &queries[..]].concat());
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report = check_results(&json, &csv, rows);
    assert_eq!(report["format"], "csv");
}

#[test]
fn a_malformed_line_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let data: PathBuf = tmp.path().join("u.data");
    std::fs::write(&data, "1\t2\t3\t881250949\n2\t3\t4\n").unwrap();
    let out = import(&["--format", "movielens", path_str(&data)]);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(stderr.contains(&format!("{}:2: expected at least 4", data.display())), "{stderr}");
    // A CSV-only flag on the fixed movielens layout is refused.
    let out = import(&["--format", "movielens", path_str(&data), "--header"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("--header is for --format csv"));
}
