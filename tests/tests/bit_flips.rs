//! Bit rot in every region of every file kind (issue #7, item 3): a single flipped bit in a
//! table's data blocks, index, filter, range-delete list or footer, in a WAL segment's
//! header, record headers, record bodies or newest record, in the manifest's header,
//! snapshot, edits or last edit, or in CURRENT, is always detected: the open is refused with
//! a corruption error naming the damaged file, or the read that touches the damage reports
//! it, naming the file. No read ever answers anything but the model (no wrong answer, no
//! missing table or partition), no flip goes unnoticed (every byte is covered by a checksum
//! some read checks), and a refused open does no lasting damage: flipping the bit back on
//! the same disk and reopening gives the model again.
//!
//! Three base disks are built once: the engine workload (`strata_tests::engine_workload`)
//! run to its end and closed (tables, a manifest of one snapshot, CURRENT); the same with
//! manifest rewrites off, so the manifest keeps its edits and its last edit is the flush of
//! `close` (after which the WAL was released); and the workload stopped three quarters of
//! the way through, after a `sync_wal`, dropped without close and crashed
//! (`CrashMode::DurableOnly`), so live WAL segments hold synced, acknowledged batches. Every
//! byte of every file is classified into its region (tables from their footer,
//! `docs/format/*.md` for the rest; files a clean open removes as unreferenced are their own
//! region, where a flip must change nothing); each region gets flips at seeded offsets, one
//! in each equal slice of its bytes over all its files, each on a fresh copy of its base.
//!
//! The newest WAL record and the manifest's last edit are where damage can look like a torn
//! write. Recovery tells them apart by shape (`strata_vfs::damage`: a whole record with no
//! sector of zeros, or one bit away from valid, was never torn); until it did, a flip there
//! was cut as a torn tail, losing a synced batch or, after a clean close, a flush's tables.
//!
//! Env knobs: `STRATA_FLIP_SEEDS` (flips per region, default 24), `STRATA_FLIP_SEED`
//! (workload and offset seed, default 7), `STRATA_FLIP_BATCHES` (default 300), all flips
//! multiplied by `STRATA_FAULT_SCALE` (default 1). A failure names the base, file, offset
//! and bit; replay it with the same seed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::cast_possible_truncation)]

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use strata::sstable::format::{Footer, FOOTER_LEN};
use strata::{Db, Error, ErrorKind, Options};
use strata_tests::engine_workload::{copy_disk, options, play, run, Outcome, State, Step, Workload, DIR};
use strata_tests::env_size;

const WAL_RECORD_HEADER: u64 = strata_wal::RECORD_HEADER_LEN as u64;
use strata_tests::summary::Summary;
use strata_vfs::{CrashMode, SimFs, SimRng};

/// A disk to damage, and what it must read back as.
struct Base {
    name: &'static str,
    sim: SimFs,
    model: State,
    options: Options,
}

fn seed() -> u64 {
    env_size("STRATA_FLIP_SEED", 7)
}

fn flips_per_region() -> u64 {
    env_size("STRATA_FLIP_SEEDS", 24) * env_size("STRATA_FAULT_SCALE", 1).max(1)
}

fn workload() -> Workload {
    Workload::generate(seed(), env_size("STRATA_FLIP_BATCHES", 300) as usize)
}

fn bases() -> &'static [Base] {
    static BASES: OnceLock<Vec<Base>> = OnceLock::new();
    BASES.get_or_init(|| {
        let w = workload();
        // The workload's small manifest threshold leaves a closed database with a manifest of
        // one snapshot: a base that never rewrites it has edits, and a last edit after
        // which the WAL was released.
        let long_manifest = Options { manifest_rewrite_bytes: 1 << 30, ..options() };
        vec![
            closed_base("closed", &w, options()),
            closed_base("closed-long-manifest", &w, long_manifest),
            crashed_base(&w),
        ]
    })
}

/// The workload run to its end and closed cleanly.
fn closed_base(name: &'static str, w: &Workload, options: Options) -> Base {
    let sim = SimFs::new();
    let outcome = run(Arc::new(sim.clone()), w, &options);
    assert!(outcome.closed, "seed {}: the clean run failed: {:?}", w.seed, outcome.failure);
    let sim = copy_disk(&sim.crash_image(CrashMode::DurableOnly));
    Base { name, sim, model: w.model(w.batches.len()), options }
}

/// The workload stopped after three quarters of its steps (on a write, so the newest WAL
/// record is an acknowledged batch), synced, dropped without close and crashed.
fn crashed_base(w: &Workload) -> Base {
    let mut cut = w.steps.len() * 3 / 4;
    while !matches!(w.steps[cut - 1], Step::Write(_)) {
        cut -= 1;
    }
    let mut partial = w.clone();
    partial.steps.truncate(cut);
    let sim = SimFs::new();
    let db = Db::open_with_fs(Arc::new(sim.clone()), DIR, options()).unwrap();
    let mut outcome = Outcome::default();
    play(&db, &partial, &mut outcome);
    assert!(outcome.failure.is_none(), "seed {}: {:?}", w.seed, outcome.failure);
    db.sync_wal().unwrap();
    drop(db);
    let image = sim.crash_image(CrashMode::DurableOnly);
    Base { name: "crashed", sim: copy_disk(&image), model: w.model(outcome.acked), options: options() }
}

/// The byte ranges of one region, over all the files that have it.
#[derive(Default)]
struct Region {
    spans: Vec<(PathBuf, Range<u64>)>,
}

impl Region {
    fn bytes(&self) -> u64 {
        self.spans.iter().map(|(_, r)| r.end - r.start).sum()
    }

    fn files(&self) -> usize {
        let mut names: Vec<&PathBuf> = self.spans.iter().map(|(p, _)| p).collect();
        names.dedup();
        names.len()
    }

    /// The `at`-th byte of the region, counting over its spans in order.
    fn locate(&self, mut at: u64) -> (PathBuf, u64) {
        for (path, range) in &self.spans {
            let len = range.end - range.start;
            if at < len {
                return (path.clone(), range.start + at);
            }
            at -= len;
        }
        unreachable!("offset past the region")
    }
}

/// `(file kind, region)` -> its bytes.
type Regions = BTreeMap<(&'static str, &'static str), Region>;

/// The regions every base must have bytes in (the crashed base also has a WAL).
const EXPECTED: &[(&str, &str)] = &[
    ("sstable", "data blocks"),
    ("sstable", "index"),
    ("sstable", "filter"),
    ("sstable", "range deletes"),
    ("sstable", "footer"),
    ("manifest", "header"),
    ("manifest", "snapshot"),
    ("manifest", "edits"),
    ("manifest", "last edit"),
    ("CURRENT", "whole"),
];
const EXPECTED_WAL: &[(&str, &str)] =
    &[("wal", "segment header"), ("wal", "record header"), ("wal", "record body"), ("wal", "newest record")];

fn u32_at(bytes: &[u8], at: usize) -> u64 {
    bytes.get(at..at + 4).map_or(0, |b| u64::from(u32::from_le_bytes(b.try_into().unwrap())))
}

/// Classifies every byte of every file of `sim`. Bytes no rule claims go to
/// `("other", "unclassified")`, which the campaign reports and flips like any region.
fn classify(base: &Base) -> Regions {
    let sim = &base.sim;
    let mut regions = Regions::new();
    let newest_wal = sim.paths().into_iter().filter(|p| p.extension().is_some_and(|e| e == "wal")).max();
    let live = live_files(base);
    for path in sim.paths() {
        let bytes = sim.contents(&path).unwrap();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if !live.contains(&path) {
            let kind = if name.starts_with("MANIFEST-") { "manifest" } else { "sstable" };
            regions
                .entry(("unreferenced", kind))
                .or_default()
                .spans
                .push((path.clone(), 0..bytes.len() as u64));
            continue;
        }
        let mut add = |kind, region, range: Range<u64>| {
            if range.end > range.start {
                regions.entry((kind, region)).or_default().spans.push((path.clone(), range));
            }
        };
        let len = bytes.len() as u64;
        if name.ends_with(".sst") {
            let f = Footer::decode(&bytes).unwrap();
            let filter = f.index_offset + f.index_len;
            let deletes = filter + f.filter_len;
            assert_eq!(
                deletes + f.rangedel_len,
                len - FOOTER_LEN as u64,
                "{}: regions do not tile",
                path.display()
            );
            add("sstable", "data blocks", 0..f.index_offset);
            add("sstable", "index", f.index_offset..filter);
            add("sstable", "filter", filter..deletes);
            add("sstable", "range deletes", deletes..deletes + f.rangedel_len);
            add("sstable", "footer", len - FOOTER_LEN as u64..len);
        } else if name.ends_with(".wal") {
            add("wal", "segment header", 0..32.min(len));
            let mut at = 32;
            while at < len {
                let end = (at + WAL_RECORD_HEADER + u32_at(&bytes, at as usize + 8)).min(len);
                if end == len && Some(&path) == newest_wal.as_ref() {
                    add("wal", "newest record", at..end);
                } else {
                    add("wal", "record header", at..(at + WAL_RECORD_HEADER).min(end));
                    add("wal", "record body", (at + WAL_RECORD_HEADER).min(end)..end);
                }
                at = end;
            }
        } else if name.starts_with("MANIFEST-") {
            add("manifest", "header", 0..16.min(len));
            let mut at = 16;
            while at < len {
                let end = (at + 12 + u32_at(&bytes, at as usize)).min(len);
                let region = if at == 16 {
                    "snapshot"
                } else if end == len {
                    "last edit"
                } else {
                    "edits"
                };
                add("manifest", region, at..end);
                at = end;
            }
        } else if name == "CURRENT" {
            add("CURRENT", "whole", 0..len);
        } else {
            add("other", "unclassified", 0..len);
        }
    }
    regions
}

/// The files the database reads: CURRENT, the manifest it names, and every other file a
/// clean open of a copy keeps (it removes unreferenced tables and old manifests; those a
/// flip may hit without consequence, and the campaign checks just that).
fn live_files(base: &Base) -> Vec<PathBuf> {
    let sim = &base.sim;
    let dir = Path::new(DIR);
    let current = sim.contents(&dir.join("CURRENT")).unwrap();
    let manifest = u64::from_le_bytes(current[16..24].try_into().unwrap());
    let copy = copy_disk(sim);
    drop(open(&copy, &base.options).unwrap());
    let kept = copy.paths();
    let mut live: Vec<PathBuf> = sim
        .paths()
        .into_iter()
        .filter(|p| kept.contains(p) && !p.to_string_lossy().contains("MANIFEST-"))
        .collect();
    live.push(dir.join(format!("MANIFEST-{manifest:06}")));
    live
}

/// What one flip led to.
#[derive(Debug)]
enum Verdict {
    /// The open failed with a corruption error naming the file.
    Refused,
    /// The open succeeded; a read failed with an error naming the file, no read was wrong.
    Reported,
    /// An error that is not a corruption error naming the damaged file.
    Misreported(String),
    /// A read answered something other than the model.
    Wrong(String),
    /// Everything opened and read as the model: the damage went unnoticed.
    Undetected,
}

/// Whether `err` is a corruption error that names `file`.
fn names(err: &Error, file: &str) -> bool {
    err.kind() == ErrorKind::Corruption && err.to_string().contains(file)
}

/// Reads everything a reader can ask for and compares it with `model`: every user's full
/// range, `latest` over all its events, a `get` of every model key, and a snapshot's range.
fn read_verdict(db: &Db, model: &State, file: &str) -> Verdict {
    let mut errors: Vec<Error> = Vec::new();
    let mut wrong: Vec<String> = Vec::new();
    let snapshot = db.snapshot();
    for user in 0..strata_tests::engine_workload::USERS {
        let expected: Vec<(i64, Vec<u8>)> =
            model.range((user, i64::MIN)..=(user, i64::MAX)).map(|(k, v)| (k.1, v.clone())).collect();
        let mut compare =
            |what: &str, got: Result<Vec<(i64, Vec<u8>)>, Error>, want: &[(i64, Vec<u8>)]| match got {
                Ok(got) if got == want => {}
                Ok(got) => {
                    wrong.push(format!("user {user} {what}: {} events, model has {}", got.len(), want.len()))
                }
                Err(e) => errors.push(e),
            };
        let collect = |iter: Result<strata::RangeIter, Error>| -> Result<Vec<(i64, Vec<u8>)>, Error> {
            iter?.map(|e| e.map(|e| (e.ts, e.payload.to_vec()))).collect()
        };
        compare("range", collect(db.range(user, ..)), &expected);
        compare("snapshot range", collect(snapshot.range(user, ..)), &expected);
        let newest: Vec<(i64, Vec<u8>)> = expected.iter().rev().cloned().collect();
        let latest =
            db.latest(user, 1 << 20).map(|v| v.into_iter().map(|e| (e.ts, e.payload.to_vec())).collect());
        compare("latest", latest, &newest);
        for (ts, payload) in &expected {
            let got = db.get(user, *ts).map(|e| e.into_iter().map(|e| (e.ts, e.payload.to_vec())).collect());
            compare(&format!("get({ts})"), got, &[(*ts, payload.clone())]);
        }
    }
    if let Some(first) = wrong.first() {
        return Verdict::Wrong(format!("{} wrong answers, first: {first}", wrong.len()));
    }
    match errors.iter().find(|e| !names(e, file)) {
        Some(e) => Verdict::Misreported(format!("read error not naming {file}: {e}")),
        None if errors.is_empty() => Verdict::Undetected,
        None => Verdict::Reported,
    }
}

fn open(sim: &SimFs, options: &Options) -> Result<Db, Error> {
    Db::open_with_fs(Arc::new(sim.clone()), DIR, options.clone())
}

/// Flips `bit` of `offset` in `path` on a copy of `base`, judges the open and the reads,
/// then flips it back on that same disk: the reopen must read as the model (`Err` says how
/// it did not: damage the failed open left behind).
fn flip(base: &Base, path: &Path, offset: u64, bit: u8, live: bool) -> (Verdict, Result<(), String>) {
    let disk = copy_disk(&base.sim);
    disk.flip_bit(path, offset, bit).unwrap();
    let file = path.file_name().unwrap().to_string_lossy().to_string();
    let verdict = match open(&disk, &base.options) {
        Err(e) if names(&e, &file) => Verdict::Refused,
        Err(e) => Verdict::Misreported(format!("open failed with [{:?}] {e}", e.kind())),
        Ok(db) => read_verdict(&db, &base.model, &file),
    };
    (verdict, restored(&disk, base, path, (offset, bit), live))
}

/// Flips the bit back (an unreferenced file is rightly gone by now) and checks a reopen.
fn restored(
    disk: &SimFs,
    base: &Base,
    path: &Path,
    (offset, bit): (u64, u8),
    live: bool,
) -> Result<(), String> {
    if live || disk.contents(path).is_some() {
        disk.flip_bit(path, offset, bit).map_err(|e| format!("cannot flip the bit back: {e}"))?;
    }
    let db =
        open(disk, &base.options).map_err(|e| format!("reopen after the bit was restored failed: {e}"))?;
    match read_verdict(&db, &base.model, "") {
        Verdict::Undetected => Ok(()),
        other => Err(format!("after the bit was restored: {other:?}")),
    }
}

/// Per-region figures.
#[derive(Default)]
struct Row {
    files: usize,
    bytes: u64,
    flips: u64,
    refused: u64,
    reported: u64,
    misreported: u64,
    wrong: u64,
    undetected: u64,
    harmless: u64,
    lasting: u64,
}

/// The seeded offsets of a region's flips: one in each of `k` equal slices of its bytes,
/// so they spread over the region and its files.
fn offsets(region: &Region, k: u64, rng: &mut SimRng) -> Vec<(PathBuf, u64, u8)> {
    let total = region.bytes();
    let k = k.min(total);
    (0..k)
        .map(|i| {
            let (lo, hi) = (total * i / k, total * (i + 1) / k);
            let (path, offset) = region.locate(lo + rng.below(hi - lo));
            (path, offset, rng.below(8) as u8)
        })
        .collect()
}

/// Runs the flips of every region of every base into `rows`, `summary` and `failures`.
fn campaign(
    select: &dyn Fn(&str, &str) -> bool,
    summary: &mut Summary,
    failures: &mut Vec<String>,
) -> BTreeMap<String, Row> {
    let k = flips_per_region();
    let mut rows: BTreeMap<String, Row> = BTreeMap::new();
    for base in bases() {
        let regions = classify(base);
        let expected = EXPECTED.iter().chain(if base.name == "crashed" { EXPECTED_WAL } else { &[] });
        for (kind, region) in expected {
            if !regions.contains_key(&(*kind, *region)) && select(kind, region) {
                rows.entry(format!("{}/{kind}/{region}", base.name)).or_default();
            }
        }
        for ((kind, name), region) in &regions {
            if !select(kind, name) {
                continue;
            }
            let row = rows.entry(format!("{}/{kind}/{name}", base.name)).or_default();
            row.files = region.files();
            row.bytes = region.bytes();
            let mut rng =
                SimRng::new(seed() ^ xxh(kind) ^ xxh(name).rotate_left(17) ^ xxh(base.name).rotate_left(34));
            for (path, offset, bit) in offsets(region, k, &mut rng) {
                let live = *kind != "unreferenced";
                let (verdict, lasting) = flip(base, &path, offset, bit, live);
                let at = format!(
                    "seed {} base {} {} offset {offset} bit {bit}",
                    seed(),
                    base.name,
                    path.display()
                );
                row.flips += 1;
                summary.points += 1;
                summary.states += 1;
                summary.injected += 1;
                match verdict {
                    Verdict::Refused => row.refused += 1,
                    Verdict::Reported => row.reported += 1,
                    Verdict::Misreported(m) => {
                        row.misreported += 1;
                        failures.push(format!("{at}: misreported: {m}"));
                    }
                    Verdict::Wrong(m) => {
                        row.wrong += 1;
                        failures.push(format!("{at}: WRONG ANSWER: {m}"));
                    }
                    // A file the database does not read may take any damage.
                    Verdict::Undetected if !live => row.harmless += 1,
                    Verdict::Undetected => {
                        row.undetected += 1;
                        failures.push(format!("{at}: undetected"));
                    }
                }
                if let Err(m) = lasting {
                    row.lasting += 1;
                    summary.reopen_failures += 1;
                    failures.push(format!("{at}: lasting damage: {m}"));
                }
            }
            summary.detected += row.refused + row.reported + row.misreported;
            summary.wrong_answers += row.wrong;
            summary.losses += row.wrong + row.undetected;
        }
    }
    rows
}

/// A stable small hash of a label (for per-region seeds).
fn xxh(label: &str) -> u64 {
    label.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
}

fn table(rows: &BTreeMap<String, Row>) -> String {
    let mut out = format!(
        "{:<36} {:>5} {:>8} {:>5} {:>7} {:>8} {:>7} {:>5} {:>6} {:>7}\n",
        "base/kind/region",
        "files",
        "bytes",
        "flips",
        "refused",
        "reported",
        "misrep",
        "wrong",
        "undet",
        "lasting"
    );
    for (name, r) in rows {
        let gap = if r.bytes == 0 { "   <- GAP: no bytes in this base" } else { "" };
        let _ = writeln!(
            out,
            "{name:<36} {:>5} {:>8} {:>5} {:>7} {:>8} {:>7} {:>5} {:>6} {:>8} {:>7}{gap}",
            r.files,
            r.bytes,
            r.flips,
            r.refused,
            r.reported,
            r.misreported,
            r.wrong,
            r.undetected,
            r.harmless,
            r.lasting
        );
    }
    out
}

/// Runs the campaign over the regions `select` picks, prints its tables and checks it.
fn run_campaign(name: &str, select: impl Fn(&str, &str) -> bool) {
    let mut summary = Summary::new(name);
    let mut failures = Vec::new();
    let rows = campaign(&select, &mut summary, &mut failures);
    println!("{}", table(&rows));
    let covered: Vec<(&str, &str)> = EXPECTED
        .iter()
        .chain(EXPECTED_WAL)
        .filter(|(kind, region)| select(kind, region))
        .filter(|(kind, region)| {
            !rows.iter().any(|(n, r)| r.bytes > 0 && n.ends_with(&format!("/{kind}/{region}")))
        })
        .copied()
        .collect();
    println!("regions with no bytes in any base (gaps): {covered:?}");
    summary.finish();
    for f in failures.iter().take(40) {
        println!("FAIL {f}");
    }
    assert!(failures.is_empty(), "{} failures, first: {}", failures.len(), failures[0]);
}

#[test]
fn bit_flips_in_every_region_are_detected() {
    run_campaign("bit flips in every region of every file kind", |_, _| true);
}
