//! Entry point of the `manifest_decode` fuzz target and of the test that replays its seed
//! corpus on stable Rust. Takes arbitrary bytes; never panics except through an `assert!`
//! on an invariant of what the decoders accept.

use std::path::Path;

use strata_vfs::{FileSystem, SimFs};

use super::edit::{Edit, ManifestState};
use super::format::{decode_current, encode_current, encode_header, parse_manifest, Parsed};
use super::log::{load, manifest_name, CURRENT_NAME};

/// Decodes `data` as an edit body, as a manifest file (as is, and after a valid header, so
/// that the fuzzer reaches the records without guessing the magic), as a CURRENT file, and
/// loads it from a simulated disk as the manifest CURRENT names.
pub fn decode_manifest(data: &[u8]) {
    if let Ok(edit) = Edit::decode(data) {
        let mut again = Vec::new();
        edit.encode(&mut again);
        assert_eq!(again, data, "a decoded edit must re-encode to the bytes it came from");
        let mut state = ManifestState::default();
        if state.apply(&edit).is_ok() {
            check_snapshot(&state);
        }
    }
    let parsed = parse_manifest(data);
    if let Ok(parsed) = &parsed {
        check_parsed(parsed, data.len());
    }
    let mut with_header = encode_header().to_vec();
    with_header.extend_from_slice(data);
    if let Ok(parsed) = parse_manifest(&with_header) {
        check_parsed(&parsed, with_header.len());
    }
    if let Ok(number) = decode_current(data) {
        assert_eq!(&encode_current(number)[..], data, "an accepted CURRENT must be canonical");
    }
    load_from_disk(data, parsed.ok());
}

fn check_snapshot(state: &ManifestState) {
    let mut rebuilt = ManifestState::default();
    let applied = rebuilt.apply(&state.snapshot_edit());
    assert!(applied.is_ok() && rebuilt == *state, "a snapshot edit must rebuild its state: {applied:?}");
}

fn check_parsed(parsed: &Parsed, len: usize) {
    let len = len as u64;
    assert!(parsed.edits >= 1 && parsed.state.partition_width != 0, "accepted a manifest without a width");
    match parsed.dropped_tail {
        Some((offset, bytes)) => {
            assert!(offset == parsed.valid_bytes && offset + bytes == len, "tail does not end the file")
        }
        None => assert_eq!(parsed.valid_bytes, len, "valid bytes stop before the end without a tail"),
    }
    check_snapshot(&parsed.state);
}

/// `load` of `data` as the current manifest must agree with the pure parse.
fn load_from_disk(data: &[u8], parsed: Option<Parsed>) {
    let fs = SimFs::new();
    let dir = Path::new("/db");
    let written = fs.create_dir(dir).and_then(|()| {
        fs.create(&dir.join(CURRENT_NAME))?.append(&encode_current(7))?;
        fs.create(&dir.join(manifest_name(7)))?.append(data)
    });
    if written.is_err() {
        return;
    }
    let loaded = load(&fs, dir);
    let agree = match (&loaded, &parsed) {
        (Ok(Some(loaded)), Some(parsed)) => {
            (&loaded.state, loaded.edits, loaded.dropped_tail)
                == (&parsed.state, parsed.edits, parsed.dropped_tail)
        }
        (Err(_), None) => true,
        _ => false,
    };
    assert!(
        agree,
        "load and parse disagree: {:?} vs {:?}",
        loaded.map(|l| l.map(|l| l.state)),
        parsed.map(|p| p.state)
    );
}
