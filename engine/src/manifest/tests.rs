//! The manifest on disk: writer and `load` round trips, damage (bit flips, mid-log
//! corruption, torn tails, foreign files) and the worked example of the format doc. Crash
//! tests are in `tests/crash.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use strata_vfs::{FaultAction, FaultFs, FaultRule, FileSystem, FsErrorKind, OpKind, OsFs, SimFs, When};

use super::format::{append_record, encode_current, encode_header, HEADER_LEN};
use super::*;
use crate::{Error, ErrorKind, Result, DAY_MICROS};

mod crash;

const DIR: &str = "/db";

fn dir() -> &'static Path {
    Path::new(DIR)
}

/// A disk whose `/db` exists durably.
fn new_sim() -> SimFs {
    let sim = SimFs::new();
    sim.create_dir(dir()).unwrap();
    sim.sync_dir(Path::new("/")).unwrap();
    sim
}

fn base_state() -> ManifestState {
    ManifestState { partition_width: DAY_MICROS, next_file_number: 2, ..ManifestState::default() }
}

fn table(number: u64, partition: i64) -> TableRecord {
    TableRecord {
        number,
        partition,
        sequence: number.is_multiple_of(2),
        file_bytes: 1000 + number,
        entries: 10 * number,
        min_ts: partition * 1000,
        max_ts: partition * 1000 + 999,
        min_seqno: number,
        max_seqno: number + 9,
        footer_checksum: number.wrapping_mul(0x9e37_79b9_7f4a_7c15),
    }
}

/// Edits that apply in order to `base_state()`: flushes, with a compaction every fourth
/// edit and a retention drop every fifth.
fn workload(n: u64) -> Vec<Edit> {
    (0..n)
        .map(|i| {
            let number = 2 + i;
            let partition = i64::try_from(i % 3).unwrap();
            let mut edit = Edit {
                persisted_seqno: Some(10 * (i + 1)),
                next_file_number: Some(number + 1),
                added: vec![table(number, partition)],
                watermarks: vec![(partition, i64::try_from(i * 1000).unwrap())],
                ..Edit::default()
            };
            if i % 4 == 3 {
                edit.removed = vec![number - 2];
            }
            if i % 5 == 4 {
                edit.dropped_partitions = vec![0];
            }
            edit
        })
        .collect()
}

/// `base` with `edits` applied.
fn fold(base: &ManifestState, edits: &[Edit]) -> ManifestState {
    let mut state = base.clone();
    for edit in edits {
        state.apply(edit).unwrap();
    }
    state
}

/// Manifest 1 with `base_state()` and `appends` edits of the workload; returns the offset
/// of every record and the end of the file.
fn write_manifest(fs: Arc<dyn FileSystem>, appends: u64) -> (ManifestWriter, Vec<u64>) {
    let mut writer = ManifestWriter::create(fs, dir(), 1, &base_state()).unwrap();
    let mut offsets = vec![HEADER_LEN as u64];
    for edit in workload(appends) {
        offsets.push(writer.file_bytes());
        writer.append(&edit).unwrap();
    }
    offsets.push(writer.file_bytes());
    (writer, offsets)
}

fn manifest_path(number: u64) -> PathBuf {
    dir().join(manifest_name(number))
}

fn current_path() -> PathBuf {
    dir().join(CURRENT_NAME)
}

/// The `Corruption` a load must fail with.
fn corruption(result: Result<Option<Loaded>>) -> (PathBuf, u64, String) {
    match result {
        Err(Error::Corruption { file, offset, reason }) => (file, offset, reason),
        other => panic!("expected Corruption, got {other:?}"),
    }
}

fn round_trip(fs: Arc<dyn FileSystem>, dir: &Path) {
    let mut writer = ManifestWriter::create(Arc::clone(&fs), dir, 7, &base_state()).unwrap();
    let edits = workload(9);
    for edit in &edits {
        writer.append(edit).unwrap();
    }
    let loaded = load(fs.as_ref(), dir).unwrap().unwrap();
    assert_eq!(loaded.state, fold(&base_state(), &edits));
    assert_eq!((loaded.manifest_number, loaded.edits, loaded.dropped_tail), (7, 10, None));
    assert_eq!(loaded.path, dir.join("MANIFEST-000007"));
    assert_eq!((writer.number(), writer.path()), (7, loaded.path.as_path()));
    assert_eq!(loaded.valid_bytes, writer.file_bytes());
    assert_eq!(writer.bytes_written(), writer.file_bytes() + 32);
    let names = fs.list(dir).unwrap();
    assert_eq!(names, vec!["CURRENT".to_string(), "MANIFEST-000007".to_string()], "no CURRENT.tmp left");
}

#[test]
fn appends_load_back_as_their_fold_on_a_simulated_disk() {
    round_trip(Arc::new(new_sim()), dir());
}

#[test]
fn appends_load_back_as_their_fold_on_the_os_file_system() {
    let temp = tempfile::tempdir().unwrap();
    round_trip(Arc::new(OsFs::new()), temp.path());
}

#[test]
fn a_directory_without_current_loads_as_none() {
    let sim = new_sim();
    assert!(load(&sim, dir()).unwrap().is_none());
    sim.create(&manifest_path(1)).unwrap();
    assert!(load(&sim, dir()).unwrap().is_none(), "a manifest that CURRENT does not name is ignored");
}

#[test]
fn a_second_manifest_replaces_the_first_and_leaves_it_to_the_caller() {
    let sim = new_sim();
    let (_first, _) = write_manifest(Arc::new(sim.clone()), 3);
    let state = fold(&base_state(), &workload(3));
    let second = ManifestWriter::create(Arc::new(sim.clone()), dir(), 9, &state).unwrap();
    let loaded = load(&sim, dir()).unwrap().unwrap();
    assert_eq!((loaded.manifest_number, loaded.edits, &loaded.state), (9, 1, &state));
    assert_eq!(loaded.valid_bytes, second.file_bytes());
    assert!(sim.contents(&manifest_path(1)).is_some(), "create does not remove the old manifest");
}

#[test]
fn create_refuses_a_taken_name_and_states_it_cannot_record() {
    let sim = new_sim();
    let fs: Arc<dyn FileSystem> = Arc::new(sim.clone());
    write_manifest(Arc::clone(&fs), 0);
    let err = ManifestWriter::create(Arc::clone(&fs), dir(), 1, &base_state()).unwrap_err();
    assert!(matches!(&err, Error::Io(e) if e.kind == FsErrorKind::AlreadyExists), "{err}");
    let no_width = ManifestState { partition_width: 0, ..base_state() };
    let mut past_next = base_state();
    past_next.tables.insert(2, table(2, 0));
    let mut wrong_key = base_state();
    wrong_key.tables.insert(1, table(0, 0));
    for state in [no_width, past_next, wrong_key] {
        let err = ManifestWriter::create(Arc::clone(&fs), dir(), 2, &state).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{state:?}: {err}");
    }
    assert!(sim.contents(&manifest_path(2)).is_none(), "refused before any I/O");
}

#[test]
fn create_replaces_a_stale_current_tmp() {
    let sim = new_sim();
    sim.create(&dir().join("CURRENT.tmp")).unwrap().append(b"left by a crash").unwrap();
    write_manifest(Arc::new(sim.clone()), 1);
    assert_eq!(load(&sim, dir()).unwrap().unwrap().edits, 2);
    assert!(sim.contents(&dir().join("CURRENT.tmp")).is_none());
}

#[test]
fn an_edit_that_does_not_apply_is_refused_before_it_is_written() {
    let sim = new_sim();
    let (mut writer, _) = write_manifest(Arc::new(sim.clone()), 2);
    let before = sim.contents(&manifest_path(1)).unwrap();
    let bad = Edit { removed: vec![999], ..Edit::default() };
    assert_eq!(writer.append(&bad).unwrap_err().kind(), ErrorKind::InvalidArgument);
    assert_eq!(sim.contents(&manifest_path(1)).unwrap(), before);
    assert_eq!(writer.file_bytes(), before.len() as u64);
    writer.append(&Edit { persisted_seqno: Some(100), ..Edit::default() }).unwrap();
    assert_eq!(load(&sim, dir()).unwrap().unwrap().state.persisted_seqno, 100);
}

#[test]
fn a_failed_append_poisons_the_writer() {
    for op in [OpKind::Append, OpKind::SyncData] {
        let faulty = Arc::new(FaultFs::new(Arc::new(new_sim()), 3));
        let (mut writer, _) = write_manifest(faulty.clone(), 1);
        faulty.add_rule(FaultRule::new(When::Always, FaultAction::Fail(FsErrorKind::Io)).on_op(op));
        let edits = workload(3);
        assert_eq!(writer.append(&edits[1]).unwrap_err().kind(), ErrorKind::Io);
        faulty.clear_rules();
        let err = writer.append(&edits[2]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Poisoned, "{op}: {err}");
        assert!(err.to_string().contains("injected fault"), "the cause is kept: {err}");
    }
}

#[test]
fn load_is_read_only_and_drops_a_torn_final_record() {
    let sim = new_sim();
    let (_writer, offsets) = write_manifest(Arc::new(sim.clone()), 2);
    let end = *offsets.last().unwrap();
    let mut record = Vec::new();
    append_record(&workload(3)[2], &mut record).unwrap();
    let file = sim.open(&manifest_path(1)).unwrap();
    for cut in 1..record.len() {
        file.append(&record[..cut]).unwrap();
        let paths = sim.paths();
        let contents = sim.contents(&manifest_path(1)).unwrap();
        let loaded = load(&sim, dir()).unwrap().unwrap();
        assert_eq!(loaded.state, fold(&base_state(), &workload(2)), "cut {cut}");
        assert_eq!((loaded.valid_bytes, loaded.dropped_tail), (end, Some((end, cut as u64))));
        assert_eq!((sim.paths(), sim.contents(&manifest_path(1)).unwrap()), (paths, contents));
        file.truncate(end).unwrap();
    }
    file.append(&record).unwrap();
    assert_eq!(load(&sim, dir()).unwrap().unwrap().state, fold(&base_state(), &workload(3)));
}

#[test]
fn every_bit_flip_of_current_is_corruption() {
    let sim = new_sim();
    write_manifest(Arc::new(sim.clone()), 1);
    for offset in 0..32 {
        for bit in 0..8 {
            sim.flip_bit(&current_path(), offset, bit).unwrap();
            let (file, _, reason) = corruption(load(&sim, dir()));
            assert_eq!(file, current_path(), "byte {offset} bit {bit}: {reason}");
            sim.flip_bit(&current_path(), offset, bit).unwrap();
        }
    }
    assert_eq!(load(&sim, dir()).unwrap().unwrap().edits, 2);
}

/// Three records: every flip, the final record's included, is corruption at the damaged
/// record's offset. Issue #7 item 3: a flip in the final record used to be taken for a torn
/// edit and the record dropped; after a clean close that removed the tables it added.
#[test]
fn every_bit_flip_of_a_manifest_is_corruption_at_the_damaged_record() {
    let sim = new_sim();
    let (_writer, offsets) = write_manifest(Arc::new(sim.clone()), 2);
    let end = offsets[3];
    let path = manifest_path(1);
    for offset in 0..end {
        for bit in 0..8 {
            sim.flip_bit(&path, offset, bit).unwrap();
            let context = format!("byte {offset} bit {bit}");
            let (file, at, reason) = corruption(load(&sim, dir()));
            let record = offsets.iter().copied().rfind(|&start| start <= offset);
            let expected = if offset < HEADER_LEN as u64 { at } else { record.unwrap() };
            assert_eq!((file, at), (path.clone(), expected), "{context}: {reason}");
            sim.flip_bit(&path, offset, bit).unwrap();
        }
    }
}

/// The torn shape a crash leaves in a final record that lies whole in the file stays torn:
/// its sector lost, it reads as zeros from where the synced bytes end.
#[test]
fn a_final_record_whose_sector_reads_as_zeros_is_a_torn_tail() {
    let sim = new_sim();
    let (_writer, offsets) = write_manifest(Arc::new(sim.clone()), 2);
    let (last, end) = (offsets[2], offsets[3]);
    assert!(end <= 512, "the records share one sector");
    sim.overwrite(&manifest_path(1), last, &vec![0u8; usize::try_from(end - last).unwrap()]).unwrap();
    let loaded = load(&sim, dir()).unwrap().unwrap();
    assert_eq!(loaded.state, fold(&base_state(), &workload(1)));
    assert_eq!(loaded.dropped_tail, Some((last, end - last)));
}

#[test]
fn damage_in_the_middle_of_the_log_is_corruption_at_the_damaged_record() {
    let sim = new_sim();
    let (_writer, offsets) = write_manifest(Arc::new(sim.clone()), 3);
    let second = offsets[1];
    // A bit of the body, then of the length: either way the record is refused, and the
    // valid record after it shows that this is no torn tail.
    for (offset, bit) in [(second + 12 + 3, 2), (second, 0), (second + 2, 7)] {
        sim.flip_bit(&manifest_path(1), offset, bit).unwrap();
        let (file, at, reason) = corruption(load(&sim, dir()));
        assert_eq!((file, at), (manifest_path(1), second), "{reason}");
        assert!(reason.contains("valid record follows"), "{reason}");
        sim.flip_bit(&manifest_path(1), offset, bit).unwrap();
    }
}

/// A database directory holding exactly this CURRENT and manifest 1.
fn disk_with(current: &[u8], manifest: &[u8]) -> SimFs {
    let sim = new_sim();
    sim.create(&current_path()).unwrap().append(current).unwrap();
    sim.create(&manifest_path(1)).unwrap().append(manifest).unwrap();
    sim
}

fn with_checksum(mut current: [u8; 32]) -> [u8; 32] {
    let checksum = xxhash_rust::xxh3::xxh3_64(&current[..24]);
    current[24..].copy_from_slice(&checksum.to_le_bytes());
    current
}

fn records(edits: &[Edit]) -> Vec<u8> {
    let mut bytes = encode_header().to_vec();
    for edit in edits {
        append_record(edit, &mut bytes).unwrap();
    }
    bytes
}

#[test]
fn load_refuses_a_damaged_or_foreign_current() {
    let manifest = records(&[base_state().snapshot_edit()]);
    let good = encode_current(1);
    // Version 2, the format before partition groups.
    let mut version = good;
    version[8] = 2;
    let mut reserved = good;
    reserved[13] = 1;
    let mut magic = good;
    magic[0] = b'X';
    let cases: [(&[u8], u64, &str); 6] = [
        (&good[..31], 0, "CURRENT is 31 bytes, expected 32"),
        (&[good.as_slice(), b"x"].concat(), 0, "CURRENT is 33 bytes"),
        (&with_checksum(magic), 0, "bad magic"),
        (&version, 24, "checksum mismatch"),
        (&with_checksum(version), 8, "unsupported version 2 (this build reads 3)"),
        (&with_checksum(reserved), 12, "reserved field"),
    ];
    for (current, offset, expected) in cases {
        let (file, at, reason) = corruption(load(&disk_with(current, &manifest), dir()));
        assert_eq!((file, at), (current_path(), offset), "{reason}");
        assert!(reason.contains(expected), "{reason}");
    }
    let (file, _, reason) = corruption(load(&disk_with(&encode_current(9), &manifest), dir()));
    assert_eq!((file, reason.as_str()), (current_path(), "names MANIFEST-000009, which is missing"));
}

#[test]
fn load_refuses_a_manifest_with_a_bad_header_or_no_usable_first_record() {
    let snapshot = base_state().snapshot_edit();
    let good = records(std::slice::from_ref(&snapshot));
    // Version 2, the format before partition groups.
    let mut version = good.clone();
    version[8] = 2;
    let mut magic = good.clone();
    magic[3] ^= 1;
    let no_width = records(&[Edit { partition_width: None, ..snapshot.clone() }]);
    let bad_apply = records(&[snapshot.clone(), Edit { removed: vec![5], ..Edit::default() }]);
    let torn_first = &good[..good.len() - 1];
    let cases: [(&[u8], u64, &str); 7] = [
        (&good[..15], 0, "shorter than the 16-byte header"),
        (&magic, 0, "bad magic"),
        (&version, 8, "unsupported version 2 (this build reads 3)"),
        (&good[..16], 16, "no valid record"),
        (torn_first, 16, "no valid record"),
        (&no_width, 16, "does not set the partition width"),
        (&bad_apply, good.len() as u64, "removes table 5"),
    ];
    for (manifest, offset, expected) in cases {
        let (file, at, reason) = corruption(load(&disk_with(&encode_current(1), manifest), dir()));
        assert_eq!((file, at), (manifest_path(1), offset), "{reason}");
        assert!(reason.contains(expected), "{reason}");
    }
}

/// The example of docs/format/manifest.md, as printed there.
const EXAMPLE_MANIFEST_HEX: &str = "\
53 54 52 41 54 4d 41 4e 03 00 00 00 00 00 00 00
1b 00 00 00 99 b1 22 9a 89 88 6b e5 01 00 60 d7
1d 14 00 00 00 02 00 00 00 00 00 00 00 00 03 02
00 00 00 00 00 00 00 6d 00 00 00 23 3c b7 ca 6a
1a dc 40 02 02 00 00 00 00 00 00 00 03 03 00 00
00 00 00 00 00 04 02 00 00 00 00 00 00 00 db 4c
00 00 00 00 00 00 01 d2 04 00 00 00 00 00 00 02
00 00 00 00 00 00 00 c0 fd 0e 18 24 0a 06 00 00
40 1e 18 24 0a 06 00 01 00 00 00 00 00 00 00 02
00 00 00 00 00 00 00 ef cd ab 89 67 45 23 01 06
db 4c 00 00 00 00 00 00 00 40 1e 18 24 0a 06 00
";
const EXAMPLE_CURRENT_HEX: &str = "\
53 54 52 41 54 43 55 52 03 00 00 00 00 00 00 00
01 00 00 00 00 00 00 00 79 9d ae 53 2a fa 8e 71
";

fn hex(bytes: &[u8]) -> String {
    let rows =
        bytes.chunks(16).map(|row| row.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(" "));
    rows.collect::<Vec<_>>().join("\n")
}

/// A new database (manifest 1, file number 1 taken by it) and the flush of table 2.
fn example_flush() -> Edit {
    Edit {
        persisted_seqno: Some(2),
        next_file_number: Some(3),
        added: vec![TableRecord {
            number: 2,
            partition: 19_675,
            sequence: true,
            file_bytes: 1234,
            entries: 2,
            min_ts: 1_699_999_999_000_000,
            max_ts: 1_700_000_000_000_000,
            min_seqno: 1,
            max_seqno: 2,
            footer_checksum: 0x0123_4567_89ab_cdef,
        }],
        watermarks: vec![(19_675, 1_700_000_000_000_000)],
        ..Edit::default()
    }
}

#[test]
fn the_worked_example_of_the_format_doc_is_what_the_writer_writes() {
    let sim = new_sim();
    let mut writer = ManifestWriter::create(Arc::new(sim.clone()), dir(), 1, &base_state()).unwrap();
    writer.append(&example_flush()).unwrap();
    let manifest = hex(&sim.contents(&manifest_path(1)).unwrap());
    let current = hex(&sim.contents(&current_path()).unwrap());
    if std::env::var_os("PRINT_EXAMPLE").is_some() {
        println!("{manifest}\n\n{current}");
    }
    assert_eq!(manifest, EXAMPLE_MANIFEST_HEX.trim(), "the manifest format changed: update the doc");
    assert_eq!(current, EXAMPLE_CURRENT_HEX.trim(), "the CURRENT format changed: update the doc");
}

/// Writes the seed corpus of the `manifest_decode` fuzz target when
/// `STRATA_WRITE_FUZZ_CORPUS` is set; always checks that the seeds decode cleanly.
#[test]
fn fuzz_seed_corpus() {
    let mut body = Vec::new();
    example_flush().encode(&mut body);
    let three = records(&[base_state().snapshot_edit(), workload(2)[0].clone(), workload(2)[1].clone()]);
    let mut torn = records(&[base_state().snapshot_edit(), example_flush()]);
    torn.truncate(torn.len() - 20);
    let seeds: [(&str, &[u8]); 4] = [
        ("edit_body", &body),
        ("manifest_three_records", &three),
        ("manifest_torn_tail", &torn),
        ("current", &encode_current(1)),
    ];
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/manifest_decode");
    let write = std::env::var_os("STRATA_WRITE_FUZZ_CORPUS").is_some();
    for (name, bytes) in seeds {
        fuzzing::decode_manifest(bytes);
        if write {
            std::fs::create_dir_all(&corpus).unwrap();
            std::fs::write(corpus.join(name), bytes).unwrap();
        }
    }
    assert!(super::format::parse_manifest(&torn).unwrap().dropped_tail.is_some());
}
