//! End-to-end test of `strata-bench run` at CI size: a few thousand events, strata only,
//! through the real binary (parent and child processes). Every phase must produce every
//! field of the JSON schema, the charts must be drawn, and the human table printed.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

use strata_bench::runner::SCHEMA;

#[test]
fn a_ci_sized_run_produces_every_field_of_the_schema() {
    let tmp = tempfile::tempdir().unwrap();
    let json = tmp.path().join("results.json");
    let plots = tmp.path().join("charts");
    let output = Command::new(env!("CARGO_BIN_EXE_strata-bench"))
        .args(["run", "--engines", "strata", "--events", "4000", "--sync-events", "1000", "--batch", "200"])
        .args([
            "--users",
            "300",
            "--latest-queries",
            "500",
            "--warmup-queries",
            "100",
            "--range-queries",
            "300",
        ])
        .args([
            "--mixed-secs",
            "0.5",
            "--memtable-mib",
            "1",
            "--cache-mib",
            "4",
            "--dup-fraction",
            "0.05",
            "--quiet",
        ])
        .arg("--dir")
        .arg(tmp.path().join("work"))
        .arg("--json")
        .arg(&json)
        .arg("--plot")
        .arg(&plots)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "run failed:\n{stdout}\n{stderr}");
    for label in
        ["ingest: events/s", "latest-100: p99 us", "peak RSS: MiB", "hardware limits", "settings that differ"]
    {
        assert!(stdout.contains(label), "the report lacks {label:?}:\n{stdout}");
    }

    let file: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(file["schema_version"], 1);
    assert_eq!(file["command"], "run");
    assert_eq!(file["config"]["events"], 4000);
    for field in ["seq_write_fdatasync_bytes_per_sec", "fsync_p50_us", "fsync_p99_us", "memcpy_bytes_per_sec"]
    {
        assert!(file["hardware"][field].as_f64().unwrap() > 0.0, "hardware.{field}");
    }
    assert!(file["machine"]["cores"].as_u64().unwrap() >= 1);
    assert!(!file["settings"]["strata"].as_array().unwrap().is_empty());
    let results = file["results"].as_array().unwrap();
    assert_eq!(results.len(), SCHEMA.len(), "one object per phase: {results:?}");
    for (result, (phase, fields)) in results.iter().zip(SCHEMA) {
        assert_eq!(result["engine"], "strata");
        assert_eq!(result["phase"], *phase);
        let object = result.as_object().unwrap();
        assert_eq!(object.len(), fields.len() + 2, "phase {phase} has extra or missing fields: {object:?}");
        for field in *fields {
            let value = object.get(*field).and_then(serde_json::Value::as_f64);
            assert!(
                value.is_some_and(|v| v.is_finite() && v >= 0.0),
                "phase {phase}: field {field} = {value:?}"
            );
        }
    }
    let series = &file["series"][0];
    assert_eq!(series["engine"], "strata");
    assert!(!series["latest_cdf"].as_array().unwrap().is_empty());

    for chart in ["ingest.svg", "latest-cdf.svg"] {
        let svg = std::fs::read_to_string(plots.join(chart)).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("strata"), "{chart}");
    }
    // --dir keeps the engine's directory for inspection.
    assert!(tmp.path().join("work/strata/db").exists());
}

#[test]
fn an_engine_not_built_in_or_unknown_is_refused_by_name() {
    let output = Command::new(env!("CARGO_BIN_EXE_strata-bench"))
        .args(["run", "--engines", "strata,leveldb", "--events", "10"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("leveldb"), "{stderr}");
    let output =
        Command::new(env!("CARGO_BIN_EXE_strata-bench")).args(["run", "--batch", "0"]).output().unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("--batch"));
}
