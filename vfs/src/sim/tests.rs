//! Tests of the simulated disk: durability of data and names, crash modes, locks.
use proptest::prelude::*;

use super::*;
use crate::read_all;

fn p(path: &str) -> PathBuf {
    PathBuf::from(path)
}

/// A disk with a durable, empty `/db`.
fn disk() -> SimFs {
    let fs = SimFs::new();
    fs.create_dir(&p("/db")).unwrap();
    fs.sync_dir(&p("/")).unwrap();
    fs
}

/// Creates `/db/<name>` with `data` synced and its name durable.
fn durable_file(fs: &SimFs, name: &str, data: &[u8]) -> Box<dyn File> {
    let f = fs.create(&p("/db").join(name)).unwrap();
    f.append(data).unwrap();
    f.sync_data().unwrap();
    fs.sync_dir(&p("/db")).unwrap();
    f
}

#[test]
fn unsynced_append_is_lost_and_synced_append_kept() {
    let fs = disk();
    let f = durable_file(&fs, "a", b"kept");
    f.append(b" lost").unwrap();
    assert_eq!(fs.contents(&p("/db/a")).unwrap(), b"kept lost");
    assert_eq!(fs.durable_contents(&p("/db/a")).unwrap(), b"kept");
    fs.crash(CrashMode::DurableOnly);
    assert_eq!(fs.contents(&p("/db/a")).unwrap(), b"kept");
    let f = fs.open(&p("/db/a")).unwrap();
    assert_eq!(read_all(f.as_ref()).unwrap(), b"kept");
    f.append(b"!").unwrap();
    f.sync_data().unwrap();
    fs.crash(CrashMode::DurableOnly);
    assert_eq!(fs.contents(&p("/db/a")).unwrap(), b"kept!");
}

#[test]
fn created_file_vanishes_without_dir_sync_even_if_data_synced() {
    let fs = disk();
    let f = fs.create(&p("/db/new")).unwrap();
    f.append(b"data").unwrap();
    f.sync_data().unwrap();
    assert_eq!(fs.durable_contents(&p("/db/new")), None);
    fs.crash(CrashMode::DurableOnly);
    assert_eq!(fs.contents(&p("/db/new")), None);
    assert!(fs.list(&p("/db")).unwrap().is_empty());
}

#[test]
fn rename_is_durable_only_after_sync_dir() {
    let fs = disk();
    durable_file(&fs, "x.tmp", b"x");
    fs.rename(&p("/db/x.tmp"), &p("/db/x")).unwrap();
    assert_eq!(fs.paths(), vec![p("/db/x")]);
    fs.crash(CrashMode::DurableOnly);
    assert_eq!(fs.paths(), vec![p("/db/x.tmp")], "the old name comes back");

    fs.rename(&p("/db/x.tmp"), &p("/db/x")).unwrap();
    fs.sync_dir(&p("/db")).unwrap();
    fs.crash(CrashMode::DurableOnly);
    assert_eq!(fs.paths(), vec![p("/db/x")]);
    assert_eq!(fs.contents(&p("/db/x")).unwrap(), b"x");
}

#[test]
fn rename_replaces_target_and_between_dirs_needs_both_synced() {
    let fs = disk();
    fs.create_dir(&p("/other")).unwrap();
    fs.sync_dir(&p("/")).unwrap();
    durable_file(&fs, "a", b"new");
    durable_file(&fs, "b", b"old");
    fs.rename(&p("/db/a"), &p("/db/b")).unwrap();
    assert_eq!(fs.contents(&p("/db/b")).unwrap(), b"new");
    assert_eq!(fs.open(&p("/db/a")).unwrap_err().kind, FsErrorKind::NotFound);
    fs.sync_dir(&p("/db")).unwrap();

    fs.rename(&p("/db/b"), &p("/other/b")).unwrap();
    fs.sync_dir(&p("/other")).unwrap();
    assert_eq!(fs.durable_contents(&p("/other/b")).unwrap(), b"new");
    assert_eq!(fs.durable_contents(&p("/db/b")).unwrap(), b"new", "source dir not synced yet");
    fs.sync_dir(&p("/db")).unwrap();
    fs.crash(CrashMode::DurableOnly);
    assert_eq!(fs.paths(), vec![p("/other/b")]);
    let err = fs.rename(&p("/db/missing"), &p("/db/c")).unwrap_err();
    assert_eq!(err.kind, FsErrorKind::NotFound);
    let err = fs.rename(&p("/other/b"), &p("/nodir/c")).unwrap_err();
    assert_eq!(err.kind, FsErrorKind::NotFound);
}

#[test]
fn remove_is_durable_only_after_sync_dir() {
    let fs = disk();
    durable_file(&fs, "gone", b"bytes");
    fs.remove(&p("/db/gone")).unwrap();
    assert!(fs.paths().is_empty());
    assert_eq!(fs.remove(&p("/db/gone")).unwrap_err().kind, FsErrorKind::NotFound);
    fs.crash(CrashMode::DurableOnly);
    assert_eq!(fs.contents(&p("/db/gone")).unwrap(), b"bytes", "remove was not synced");
    fs.remove(&p("/db/gone")).unwrap();
    fs.sync_dir(&p("/db")).unwrap();
    fs.crash(CrashMode::DurableOnly);
    assert!(fs.paths().is_empty());
}

#[test]
fn removed_file_keeps_working_through_open_handle() {
    let fs = disk();
    let f = durable_file(&fs, "f", b"abc");
    fs.remove(&p("/db/f")).unwrap();
    f.append(b"def").unwrap();
    assert_eq!(read_all(f.as_ref()).unwrap(), b"abcdef");
    fs.create(&p("/db/f")).unwrap();
    assert_eq!(fs.contents(&p("/db/f")).unwrap(), b"");
    assert_eq!(f.len().unwrap(), 6);
}

#[test]
fn torn_tail_keeps_a_prefix_of_the_unsynced_bytes() {
    let written: Vec<u8> = (0..200u8).collect();
    let mut middle = 0;
    for seed in 0..200 {
        let fs = disk();
        let f = durable_file(&fs, "log", &written[..50]);
        f.append(&written[50..]).unwrap();
        fs.crash(CrashMode::TornTail { seed });
        let after = fs.contents(&p("/db/log")).unwrap();
        assert!((50..=200).contains(&after.len()), "seed {seed}: {} bytes", after.len());
        assert_eq!(after[..], written[..after.len()], "seed {seed}");
        if after.len() > 50 && after.len() < 200 {
            middle += 1;
        }
    }
    assert!(middle > 100, "only {middle} seeds tore in the middle");
}

#[test]
fn torn_tail_is_reproducible_and_keeps_durable_bytes_after_unsynced_truncate() {
    let run = |seed| {
        let fs = disk();
        let f = durable_file(&fs, "log", b"0123456789");
        f.append(&[7; 300]).unwrap();
        fs.crash(CrashMode::TornTail { seed });
        fs.contents(&p("/db/log")).unwrap()
    };
    assert_eq!(run(42), run(42));
    let fs = disk();
    let f = durable_file(&fs, "log", b"0123456789");
    f.truncate(3).unwrap();
    fs.crash(CrashMode::TornTail { seed: 1 });
    assert_eq!(fs.contents(&p("/db/log")).unwrap(), b"0123456789");
}

#[test]
fn garbage_tail_keeps_durable_bytes_as_prefix() {
    let mut grew = 0;
    for seed in 0..50 {
        let fs = disk();
        let f = durable_file(&fs, "log", b"durable");
        f.append(b"unsynced").unwrap();
        durable_file(&fs, "clean", b"synced");
        fs.crash(CrashMode::GarbageTail { seed });
        let after = fs.contents(&p("/db/log")).unwrap();
        assert!(after.starts_with(b"durable") && after.len() <= 7 + 4096, "seed {seed}");
        grew += usize::from(after.len() > 7);
        assert_eq!(fs.contents(&p("/db/clean")).unwrap(), b"synced", "no unsynced appends");
    }
    assert!(grew > 40, "only {grew} seeds added garbage");
}

#[test]
fn handles_are_stale_after_crash() {
    let fs = disk();
    let f = durable_file(&fs, "f", b"abc");
    fs.crash(CrashMode::DurableOnly);
    let mut buf = [0u8; 1];
    let errors = [
        f.append(b"x").unwrap_err(),
        f.read_at(0, &mut buf).unwrap_err(),
        f.len().unwrap_err(),
        f.sync_data().unwrap_err(),
        f.truncate(0).unwrap_err(),
    ];
    assert!(errors.iter().all(|e| e.kind == FsErrorKind::StaleHandle), "{errors:?}");
    drop(f);
    assert_eq!(fs.contents(&p("/db/f")).unwrap(), b"abc", "dropping a stale handle is harmless");
}

#[test]
fn lock_is_exclusive_until_drop_or_crash() {
    let fs = disk();
    let guard = fs.lock(&p("/db/LOCK")).unwrap();
    assert_eq!(fs.paths(), vec![p("/db/LOCK")], "the lock file is created");
    let err = fs.lock(&p("/db/LOCK")).unwrap_err();
    assert_eq!(err.kind, FsErrorKind::Locked);
    assert!(err.to_string().contains("another owner"), "{err}");
    fs.lock(&p("/db/OTHER")).unwrap();
    drop(guard);
    let guard = fs.lock(&p("/db/LOCK")).unwrap();
    fs.sync_dir(&p("/db")).unwrap();
    fs.crash(CrashMode::DurableOnly);
    let _after = fs.lock(&p("/db/LOCK")).unwrap();
    drop(guard);
    assert_eq!(fs.lock(&p("/db/LOCK")).unwrap_err().kind, FsErrorKind::Locked, "stale guard");
    assert_eq!(fs.lock(&p("/nodir/LOCK")).unwrap_err().kind, FsErrorKind::NotFound);
}

#[test]
fn flip_bit_changes_current_and_durable_bytes() {
    let fs = disk();
    let f = durable_file(&fs, "f", &[0u8; 4]);
    f.append(&[0u8; 2]).unwrap();
    fs.flip_bit(&p("/db/f"), 1, 3).unwrap();
    fs.flip_bit(&p("/db/f"), 5, 0).unwrap();
    assert_eq!(fs.contents(&p("/db/f")).unwrap(), [0, 8, 0, 0, 0, 1]);
    assert_eq!(fs.durable_contents(&p("/db/f")).unwrap(), [0, 8, 0, 0]);
    f.sync_data().unwrap();
    assert_eq!(fs.durable_contents(&p("/db/f")).unwrap(), [0, 8, 0, 0, 0, 1]);
    let eof = fs.flip_bit(&p("/db/f"), 6, 0).unwrap_err();
    assert_eq!(eof.kind, FsErrorKind::UnexpectedEof);
    assert_eq!(fs.flip_bit(&p("/db/no"), 0, 0).unwrap_err().kind, FsErrorKind::NotFound);
    assert!(fs.flip_bit(&p("/db/f"), 0, 8).is_err());
}

#[test]
fn list_is_sorted_with_dirs_and_errors_are_typed() {
    let fs = disk();
    fs.create(&p("/db/b")).unwrap();
    fs.create_dir(&p("/db/c/deep")).unwrap();
    fs.create(&p("/db/a")).unwrap();
    fs.create(&p("/db/c/inner")).unwrap();
    assert_eq!(fs.list(&p("/db")).unwrap(), ["a", "b", "c"]);
    assert_eq!(fs.list(&p("/db/c")).unwrap(), ["deep", "inner"]);
    assert_eq!(fs.list(&p("/")).unwrap(), ["db"]);
    assert_eq!(fs.list(&p("/nope")).unwrap_err().kind, FsErrorKind::NotFound);
    assert_eq!(fs.create(&p("/db/a")).unwrap_err().kind, FsErrorKind::AlreadyExists);
    assert_eq!(fs.create(&p("/nope/a")).unwrap_err().kind, FsErrorKind::NotFound);
    assert_eq!(fs.open(&p("/db/zz")).unwrap_err().kind, FsErrorKind::NotFound);
    fs.create_dir(&p("/db/c")).unwrap();
    assert_eq!(fs.paths(), [p("/db/a"), p("/db/b"), p("/db/c/inner")]);
}

#[test]
fn read_past_end_is_unexpected_eof_naming_offset_and_length() {
    let fs = disk();
    let f = durable_file(&fs, "f", b"abcdef");
    let mut buf = [0u8; 4];
    f.read_at(2, &mut buf).unwrap();
    assert_eq!(&buf, b"cdef");
    let err = f.read_at(3, &mut buf).unwrap_err();
    assert_eq!(err.kind, FsErrorKind::UnexpectedEof);
    assert!(err.detail().contains("offset 3") && err.detail().contains("4 bytes"), "{err}");
    f.truncate(8).unwrap();
    f.read_at(4, &mut buf).unwrap();
    assert_eq!(&buf, b"ef\0\0", "growing truncate fills with zeros");
}

#[test]
fn nested_dir_vanishes_with_its_files_unless_its_parent_was_synced() {
    let fs = disk();
    fs.create_dir(&p("/db/a/b")).unwrap();
    let f = fs.create(&p("/db/a/b/f")).unwrap();
    f.append(b"x").unwrap();
    f.sync_data().unwrap();
    fs.sync_dir(&p("/db/a/b")).unwrap();
    fs.sync_dir(&p("/db/a")).unwrap();
    assert_eq!(fs.durable_contents(&p("/db/a/b/f")), None, "/db/a is not durable in /db");
    fs.crash(CrashMode::DurableOnly);
    assert!(fs.paths().is_empty());
    assert_eq!(fs.list(&p("/db/a")).unwrap_err().kind, FsErrorKind::NotFound);

    fs.create_dir(&p("/db/a/b")).unwrap();
    durable_file(&fs, "a/b/f", b"y");
    fs.sync_dir(&p("/db/a/b")).unwrap();
    fs.sync_dir(&p("/db/a")).unwrap();
    fs.sync_dir(&p("/db")).unwrap();
    fs.crash(CrashMode::DurableOnly);
    assert_eq!(fs.contents(&p("/db/a/b/f")).unwrap(), b"y");
}

#[derive(Clone, Debug)]
enum Op {
    Append(Vec<u8>),
    Sync,
    Truncate(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => prop::collection::vec(any::<u8>(), 0..40).prop_map(Op::Append),
        1 => Just(Op::Sync),
        1 => (0usize..100).prop_map(Op::Truncate),
    ]
}

proptest! {
    #[test]
    fn crash_keeps_exactly_the_synced_bytes(ops in prop::collection::vec(op(), 0..40)) {
        let fs = disk();
        let f = durable_file(&fs, "f", b"");
        let (mut current, mut durable) = (Vec::new(), Vec::new());
        for op in ops {
            match op {
                Op::Append(data) => {
                    f.append(&data).unwrap();
                    current.extend_from_slice(&data);
                }
                Op::Sync => {
                    f.sync_data().unwrap();
                    durable.clone_from(&current);
                }
                Op::Truncate(n) => {
                    let len = n % (current.len() + 8);
                    f.truncate(len as u64).unwrap();
                    current.resize(len, 0);
                }
            }
            prop_assert_eq!(fs.contents(&p("/db/f")).unwrap(), current.clone());
        }
        prop_assert_eq!(fs.durable_contents(&p("/db/f")).unwrap(), durable.clone());
        fs.crash(CrashMode::DurableOnly);
        prop_assert_eq!(fs.contents(&p("/db/f")).unwrap(), durable);
    }
}

#[test]
fn vectored_append_is_one_concatenated_append() {
    let fs = SimFs::new();
    let path = Path::new("/v");
    let file = fs.create(path).unwrap();
    file.append_vectored(&[b"ab", b"", b"cde"]).unwrap();
    assert_eq!(fs.contents(path).unwrap(), b"abcde");
    file.sync_data().unwrap();
    file.append_vectored(&[b"x", b"y"]).unwrap();
    fs.sync_dir(Path::new("/")).unwrap();
    fs.crash(CrashMode::DurableOnly);
    assert_eq!(fs.contents(path).unwrap(), b"abcde");
}

#[test]
fn reorder_keeps_synced_bytes_and_any_subset_of_unsynced_pages_with_zero_holes() {
    let fs = disk();
    let f = durable_file(&fs, "a", &[1u8; 100]);
    let tail: Vec<u8> = (0..3 * PAGE_BYTES).map(|i| u8::try_from(i % 251).unwrap() + 2).collect();
    f.append(&tail).unwrap();
    let current = fs.contents(&p("/db/a")).unwrap();
    let (mut holes, mut short) = (0, 0);
    for seed in 0..64 {
        let image = fs.crash_image(CrashMode::Reorder { seed });
        let got = image.contents(&p("/db/a")).unwrap();
        assert_eq!(got[..100], [1u8; 100], "seed {seed}: synced bytes changed");
        assert!(got.len() <= current.len());
        // The file ends at a page boundary or at the current end.
        assert!(
            got.len() == 100 || got.len().is_multiple_of(PAGE_BYTES) || got.len() == current.len(),
            "{}",
            got.len()
        );
        let mut start = 100;
        while start < got.len() {
            let end = ((start / PAGE_BYTES + 1) * PAGE_BYTES).min(got.len());
            if got[start..end] != current[start..end] {
                // A lost page: zeros.
                assert!(got[start..end].iter().all(|b| *b == 0), "seed {seed}: page at {start} is neither");
                holes += 1;
            }
            start = end;
        }
        if got.len() < current.len() {
            short += 1;
        }
        // The disk itself is untouched.
        assert_eq!(fs.contents(&p("/db/a")).unwrap(), current);
    }
    assert!(holes > 0 && short > 0, "64 seeds gave no hole ({holes}) or no lost end ({short})");
    // Same seed, same image.
    let a = fs.crash_image(CrashMode::Reorder { seed: 5 }).contents(&p("/db/a"));
    assert_eq!(a, fs.crash_image(CrashMode::Reorder { seed: 5 }).contents(&p("/db/a")));
}

#[test]
fn reorder_takes_each_unsynced_name_change_independently() {
    let fs = disk();
    durable_file(&fs, "old", b"old");
    drop(fs.create(&p("/db/new")).unwrap());
    fs.remove(&p("/db/old")).unwrap();
    let mut seen = std::collections::BTreeSet::new();
    for seed in 0..64 {
        let image = fs.crash_image(CrashMode::Reorder { seed });
        seen.insert(image.list(&p("/db")).unwrap());
    }
    let expected: std::collections::BTreeSet<Vec<String>> =
        [vec![], vec!["new"], vec!["new", "old"], vec!["old"]]
            .into_iter()
            .map(|names| names.into_iter().map(String::from).collect())
            .collect();
    assert_eq!(seen, expected);
    // After a directory sync there is nothing left to reorder.
    fs.sync_dir(&p("/db")).unwrap();
    let image = fs.crash_image(CrashMode::Reorder { seed: 1 });
    assert_eq!(image.list(&p("/db")).unwrap(), vec!["new".to_string()]);
}

#[test]
fn is_synced_follows_sync_data_whatever_the_name() {
    let fs = disk();
    let f = fs.create(&p("/db/a.tmp")).unwrap();
    assert!(fs.is_synced(&p("/db/a.tmp")), "an empty file has nothing unsynced");
    f.append(b"x").unwrap();
    assert!(!fs.is_synced(&p("/db/a.tmp")));
    f.sync_data().unwrap();
    assert!(fs.is_synced(&p("/db/a.tmp")));
    fs.rename(&p("/db/a.tmp"), &p("/db/a")).unwrap();
    assert!(fs.is_synced(&p("/db/a")));
    assert!(!fs.is_synced(&p("/db/none")));
}

#[test]
fn crash_image_is_a_separate_disk_and_leaves_the_original_running() {
    let fs = disk();
    let f = durable_file(&fs, "a", b"kept");
    f.append(b" unsynced").unwrap();
    let image = fs.crash_image(CrashMode::DurableOnly);
    assert_eq!(image.contents(&p("/db/a")).unwrap(), b"kept");
    // The original's handle still works, and the image does not see its writes.
    f.append(b"!").unwrap();
    assert_eq!(fs.contents(&p("/db/a")).unwrap(), b"kept unsynced!");
    let g = image.open(&p("/db/a")).unwrap();
    g.append(b"?").unwrap();
    assert_eq!(image.contents(&p("/db/a")).unwrap(), b"kept?");
    assert_eq!(fs.contents(&p("/db/a")).unwrap(), b"kept unsynced!");
}

#[test]
fn overwrite_changes_current_and_durable_bytes_within_the_file() {
    let fs = disk();
    let f = durable_file(&fs, "a", b"abcdef");
    f.append(b"gh").unwrap();
    fs.overwrite(&p("/db/a"), 4, b"XYZ").unwrap();
    assert_eq!(fs.contents(&p("/db/a")).unwrap(), b"abcdXYZh");
    assert_eq!(fs.durable_contents(&p("/db/a")).unwrap(), b"abcdXY");
    let err = fs.overwrite(&p("/db/a"), 7, b"too long").unwrap_err();
    assert_eq!(err.kind, FsErrorKind::UnexpectedEof);
    assert_eq!(fs.overwrite(&p("/db/none"), 0, b"x").unwrap_err().kind, FsErrorKind::NotFound);
}
