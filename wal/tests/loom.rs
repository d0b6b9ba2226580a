//! Loom model of the group-commit handoff (leader election, coalescing, the durability
//! notification). Run with:
//!
//! ```text
//! RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=3 cargo test -p strata-wal --release --test loom
//! ```
//!
//! Checked in every interleaving: each caller returns only after its record was written,
//! and a `sync = true` caller only after an fsync covered it; seqnos are written in order
//! with no gap or duplicate; a failed group fails its callers and every later one.
#![cfg(loom)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::cast_possible_truncation)]

use loom::sync::{Arc, Mutex};
use loom::thread;
use strata_wal::loom_model::{Model, Recorder};

fn check_returned(recorder: &Mutex<Recorder>, seqno: u64, sync: bool) {
    let rec = recorder.lock().unwrap();
    let position = rec.written.iter().position(|&s| s == seqno);
    let position = position.unwrap_or_else(|| panic!("seqno {seqno} acknowledged before it was written"));
    if sync {
        assert!(position < rec.synced, "seqno {seqno} acknowledged as synced before the fsync covered it");
    }
}

#[test]
fn every_caller_returns_only_once_durable_as_asked() {
    loom::model(|| {
        let recorder = Arc::new(Mutex::new(Recorder::default()));
        let model = Arc::new(Model::new(recorder.clone()));
        let handles: Vec<_> = [true, false, true]
            .into_iter()
            .map(|sync| {
                let model = model.clone();
                let recorder = recorder.clone();
                thread::spawn(move || {
                    let seqno = model.append(sync).unwrap();
                    check_returned(&recorder, seqno, sync);
                    seqno
                })
            })
            .collect();
        let mut seqnos: Vec<u64> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        seqnos.sort_unstable();
        assert_eq!(seqnos, vec![1, 2, 3]);
        let rec = recorder.lock().unwrap();
        assert_eq!(rec.written, vec![1, 2, 3], "records written out of seqno order");
        assert!(rec.groups <= 3);
    });
}

#[test]
fn a_failed_group_fails_its_callers_and_all_later_ones() {
    loom::model(|| {
        let recorder = Arc::new(Mutex::new(Recorder { fail_group: Some(0), ..Recorder::default() }));
        let model = Arc::new(Model::new(recorder.clone()));
        let handles: Vec<_> = [true, true]
            .into_iter()
            .map(|sync| {
                let model = model.clone();
                thread::spawn(move || model.append(sync))
            })
            .collect();
        let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        // The first group failed: whoever was in it failed, and nothing after it succeeds,
        // so no result is Ok at all.
        assert!(results.iter().all(|r| r.is_err()), "{results:?}");
        assert!(model.append(false).is_err(), "poisoned log accepted a write");
        assert!(recorder.lock().unwrap().written.is_empty());
    });
}

/// Repeated sync appends reach the gathering path (a leader waiting for the members of the
/// previous sync group): it must neither lose nor reorder a record, nor hang.
#[test]
fn gathering_sync_leaders_keep_every_record_in_order() {
    loom::model(|| {
        let recorder = Arc::new(Mutex::new(Recorder::default()));
        let model = Arc::new(Model::new(recorder.clone()));
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let model = model.clone();
                let recorder = recorder.clone();
                thread::spawn(move || {
                    for _ in 0..2 {
                        let seqno = model.append(true).unwrap();
                        check_returned(&recorder, seqno, true);
                    }
                })
            })
            .collect();
        for handle in handles {
            handle.join().unwrap();
        }
        let rec = recorder.lock().unwrap();
        assert_eq!(rec.written, vec![1, 2, 3, 4], "records lost or written out of order");
        assert_eq!(rec.synced, 4);
    });
}
