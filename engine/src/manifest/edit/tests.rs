//! Edit encoding and the fold of edits: round trips, hostile bytes, and `apply` against a
//! model written the simplest way (clone, change step by step, give up at the first error).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use proptest::prelude::*;

use super::*;

fn table(number: u64, partition: i64) -> TableRecord {
    TableRecord {
        number,
        partition,
        sequence: true,
        file_bytes: 4096,
        entries: 10,
        min_ts: partition * 100,
        max_ts: partition * 100 + 99,
        min_seqno: 1,
        max_seqno: 10,
        footer_checksum: 0x0123_4567_89ab_cdef,
    }
}

fn encoded(edit: &Edit) -> Vec<u8> {
    let mut out = Vec::new();
    edit.encode(&mut out);
    out
}

/// Tables with numbers and partitions from small ranges, so that edits collide.
fn arb_table(numbers: u64) -> impl Strategy<Value = TableRecord> {
    let ids = (0..numbers, -3i64..3, any::<bool>());
    (ids, any::<(u64, u64, i64, i64, u64, u64, u64)>()).prop_map(|((number, partition, sequence), stats)| {
        let (file_bytes, entries, min_ts, max_ts, min_seqno, max_seqno, footer_checksum) = stats;
        TableRecord {
            number,
            partition,
            sequence,
            file_bytes,
            entries,
            min_ts,
            max_ts,
            min_seqno,
            max_seqno,
            footer_checksum,
        }
    })
}

fn list<S: Strategy>(element: S) -> proptest::collection::VecStrategy<S> {
    proptest::collection::vec(element, 0..4)
}

/// Edits whose values come from small ranges (so `apply` meets every error) or, with
/// `wide`, from the whole range of each type.
fn arb_edit(numbers: u64, wide: bool) -> impl Strategy<Value = Edit> {
    let counter = if wide { 0..u64::MAX } else { 0..numbers + 4 };
    let scalars = (
        proptest::option::of(prop_oneof![Just(0u64), Just(7), Just(8), counter.clone()]),
        proptest::option::of(counter.clone()),
        proptest::option::of(counter),
    );
    let lists = (
        list(arb_table(numbers)),
        list(0..numbers),
        list((-3i64..3, -5i64..5)),
        list(-3i64..3),
        list((-3i64..3, -2i64..4)),
    );
    (scalars, lists).prop_map(|((partition_width, persisted_seqno, next_file_number), lists)| {
        let (added, removed, watermarks, dropped_partitions, groups) = lists;
        Edit {
            partition_width,
            persisted_seqno,
            next_file_number,
            added,
            removed,
            watermarks,
            dropped_partitions,
            newest_event_ts: (persisted_seqno.unwrap_or(0) % 3 == 1).then_some(-7),
            groups,
        }
    })
}

/// `apply` as the doc states it, with no care for speed or for leaving `state` unchanged.
fn model_apply(state: &ManifestState, edit: &Edit) -> Option<ManifestState> {
    let mut s = state.clone();
    if let Some(width) = edit.partition_width {
        if width == 0 || (s.partition_width != 0 && s.partition_width != width) {
            return None;
        }
        s.partition_width = width;
    }
    for partition in &edit.dropped_partitions {
        s.watermarks.remove(partition);
        s.groups.remove(partition);
    }
    for &(start, end) in &edit.groups {
        if start >= end || s.groups.iter().any(|(&a, &b)| a < end && start < b) {
            return None;
        }
        s.groups.insert(start, end);
        let inside: Vec<(i64, i64)> =
            s.watermarks.iter().filter(|(p, _)| (start..end).contains(*p)).map(|(&p, &t)| (p, t)).collect();
        for (p, _) in &inside {
            s.watermarks.remove(p);
        }
        if let Some(mark) = inside.iter().map(|&(_, t)| t).max() {
            s.watermarks.insert(start, mark);
        }
    }
    for number in &edit.removed {
        s.tables.remove(number)?;
    }
    let next = edit.next_file_number.unwrap_or(s.next_file_number);
    for table in &edit.added {
        if table.number >= next || s.tables.insert(table.number, table.clone()).is_some() {
            return None;
        }
    }
    for &(partition, ts) in &edit.watermarks {
        let group = s.groups.iter().find(|(&a, &b)| (a..b).contains(&partition));
        let partition = group.map_or(partition, |(&a, _)| a);
        let old = s.watermarks.get(&partition).copied().unwrap_or(ts);
        s.watermarks.insert(partition, old.max(ts));
    }
    if edit.persisted_seqno.is_some_and(|seqno| seqno < s.persisted_seqno)
        || edit.next_file_number.is_some_and(|n| n < s.next_file_number)
    {
        return None;
    }
    s.persisted_seqno = edit.persisted_seqno.unwrap_or(s.persisted_seqno);
    s.next_file_number = next;
    if let Some(ts) = edit.newest_event_ts {
        s.newest_event_ts = Some(s.newest_event_ts.unwrap_or(i64::MIN).max(ts));
    }
    Some(s)
}

/// `edit` bent to apply to `state`, so that the model is also compared on long runs of
/// successful edits.
fn fixed(state: &ManifestState, mut edit: Edit) -> Edit {
    if state.partition_width != 0 || edit.partition_width == Some(0) {
        edit.partition_width = Some(state.partition_width).filter(|&width| width != 0);
    }
    edit.persisted_seqno = edit.persisted_seqno.map(|seqno| seqno.max(state.persisted_seqno));
    edit.next_file_number = edit.next_file_number.map(|next| next.max(state.next_file_number));
    let mut removed = BTreeSet::new();
    edit.removed.retain(|number| state.tables.contains_key(number) && removed.insert(*number));
    let mut added = BTreeSet::new();
    edit.added.retain(|table| {
        let present = state.tables.contains_key(&table.number) && !removed.contains(&table.number);
        !present && added.insert(table.number)
    });
    let mut groups = state.groups.clone();
    for partition in &edit.dropped_partitions {
        groups.remove(partition);
    }
    edit.groups.retain(|&(start, end)| {
        let free = start < end && !groups.iter().any(|(&a, &b)| a < end && start < b);
        if free {
            groups.insert(start, end);
        }
        free
    });
    if let Some(&top) = added.last() {
        let next = edit.next_file_number.unwrap_or(state.next_file_number);
        edit.next_file_number = Some(next.max(top + 1));
    }
    edit
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn edits_round_trip_through_their_encoding(edit in arb_edit(1 << 40, true)) {
        let bytes = encoded(&edit);
        let decoded = Edit::decode(&bytes).unwrap();
        prop_assert_eq!(&decoded, &edit);
        prop_assert_eq!(encoded(&decoded), bytes);
    }

    #[test]
    fn random_bytes_never_panic_and_accepted_bytes_re_encode(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        if let Ok(edit) = Edit::decode(&bytes) {
            prop_assert_eq!(encoded(&edit), bytes);
        }
    }

    #[test]
    fn mutated_edits_never_panic(edit in arb_edit(8, true), at in any::<prop::sample::Index>(), byte: u8, cut: bool) {
        let mut bytes = encoded(&edit);
        if !bytes.is_empty() {
            let at = at.index(bytes.len());
            if cut { bytes.truncate(at) } else { bytes[at] = byte }
        }
        if let Ok(edit) = Edit::decode(&bytes) {
            prop_assert_eq!(encoded(&edit), bytes);
        }
    }

    #[test]
    fn apply_matches_the_model(edits in proptest::collection::vec((arb_edit(8, false), any::<bool>()), 1..12)) {
        let mut state = ManifestState::default();
        for (edit, fix) in edits {
            let edit = if fix { fixed(&state, edit) } else { edit };
            let before = state.clone();
            match (state.apply(&edit), model_apply(&before, &edit)) {
                (Ok(()), Some(model)) => prop_assert_eq!(&state, &model),
                (Err(_), None) => prop_assert_eq!(&state, &before, "an Err must leave the state unchanged"),
                (real, model) => prop_assert!(false, "apply {:?} but the model {:?} for {:?}", real, model, edit),
            }
        }
    }
    #[test]
    fn a_snapshot_edit_rebuilds_its_state(edits in proptest::collection::vec(arb_edit(8, false), 1..12)) {
        let mut state = ManifestState::default();
        for edit in &edits {
            let _ = state.apply(edit);
        }
        let snapshot = state.snapshot_edit();
        let mut rebuilt = ManifestState::default();
        rebuilt.apply(&snapshot).unwrap();
        prop_assert_eq!(&rebuilt, &state);
        prop_assert_eq!(Edit::decode(&encoded(&snapshot)).unwrap(), snapshot);
    }
}

#[test]
fn the_empty_edit_is_the_empty_body() {
    assert_eq!(encoded(&Edit::default()), Vec::<u8>::new());
    assert_eq!(Edit::decode(&[]).unwrap(), Edit::default());
}

#[test]
fn decode_refuses_unknown_repeated_and_disordered_tags() {
    let width = [1u8, 8, 0, 0, 0, 0, 0, 0, 0];
    let seqno = [2u8, 1, 0, 0, 0, 0, 0, 0, 0];
    let removed = [5u8, 3, 0, 0, 0, 0, 0, 0, 0];
    let unknown = Edit::decode(&[0]).unwrap_err();
    assert!(unknown.contains("unknown tag 0"), "{unknown}");
    assert!(Edit::decode(&[10, 0, 0, 0, 0, 0, 0, 0, 0]).unwrap_err().contains("unknown tag 10"));
    let group = [[9u8].as_slice(), &8i64.to_le_bytes(), &16i64.to_le_bytes()].concat();
    assert_eq!(Edit::decode(&group).unwrap().groups, vec![(8, 16)]);
    let newest = [8u8, 1, 0, 0, 0, 0, 0, 0, 0];
    assert_eq!(Edit::decode(&newest).unwrap().newest_event_ts, Some(1));
    let twice = Edit::decode(&[newest, newest].concat()).unwrap_err();
    assert!(twice.contains("scalar tag 8 repeated at byte 9"), "{twice}");
    let twice = Edit::decode(&[width, width].concat()).unwrap_err();
    assert!(twice.contains("scalar tag 1 repeated at byte 9"), "{twice}");
    let backwards = Edit::decode(&[seqno, width].concat()).unwrap_err();
    assert!(backwards.contains("tag 1 at byte 9 after tag 2"), "{backwards}");
    // A list field may repeat.
    let edit = Edit::decode(&[width, seqno, removed, removed].concat()).unwrap();
    assert_eq!(edit.removed, vec![3, 3]);
    assert_eq!((edit.partition_width, edit.persisted_seqno), (Some(8), Some(1)));
}

#[test]
fn decode_refuses_cut_fields_and_a_bad_sequence_flag() {
    let edit = Edit { added: vec![table(1, 0)], ..Edit::default() };
    let bytes = encoded(&edit);
    // Tag, then 8 + 8 + 1 + 7 * 8 bytes: docs/format/manifest.md, tag 04.
    assert_eq!(bytes.len(), 74);
    assert_eq!(bytes[66..], 0x0123_4567_89ab_cdef_u64.to_le_bytes(), "footer_checksum ends the field");
    for cut in 1..bytes.len() {
        let err = Edit::decode(&bytes[..cut]).unwrap_err();
        assert!(err.contains("cut short"), "cut at {cut}: {err}");
    }
    let mut bad_flag = bytes.clone();
    bad_flag[17] = 2;
    let err = Edit::decode(&bad_flag).unwrap_err();
    assert!(err.contains("sequence flag 2"), "{err}");
}

#[test]
fn apply_refuses_each_inconsistency_and_changes_nothing() {
    let mut state = ManifestState::default();
    let first = Edit {
        partition_width: Some(100),
        persisted_seqno: Some(5),
        next_file_number: Some(3),
        added: vec![table(1, 0), table(2, 0)],
        ..Edit::default()
    };
    state.apply(&first).unwrap();
    let cases = [
        (Edit { partition_width: Some(200), ..Edit::default() }, "partition width from 100 to 200"),
        (Edit { partition_width: Some(0), ..Edit::default() }, "partition width 0"),
        (Edit { persisted_seqno: Some(4), ..Edit::default() }, "persisted seqno goes back from 5 to 4"),
        (Edit { next_file_number: Some(2), ..Edit::default() }, "next file number goes back from 3 to 2"),
        (Edit { removed: vec![7], ..Edit::default() }, "removes table 7"),
        (Edit { removed: vec![1, 1], ..Edit::default() }, "removes table 1"),
        (Edit { added: vec![table(2, 0)], ..Edit::default() }, "adds table 2, which is already"),
        (Edit { added: vec![table(3, 0)], ..Edit::default() }, "not below the next file number 3"),
        (
            Edit { added: vec![table(5, 0)], next_file_number: Some(5), ..Edit::default() },
            "adds table 5, not below the next file number 5",
        ),
    ];
    for (edit, expected) in cases {
        let before = state.clone();
        let err = state.apply(&edit).unwrap_err();
        assert!(err.contains(expected), "{edit:?}: {err}");
        assert_eq!(state, before);
    }
}

#[test]
fn apply_follows_the_documented_order_inside_one_edit() {
    let mut state = ManifestState::default();
    let first = Edit {
        partition_width: Some(100),
        next_file_number: Some(10),
        added: vec![table(1, 0)],
        watermarks: vec![(0, 50), (1, 70)],
        ..Edit::default()
    };
    state.apply(&first).unwrap();
    // Same width again is no change; removing then re-adding a number is allowed; an added
    // table may use the next_file_number this edit sets; a dropped partition's watermark
    // starts afresh; another watermark only moves forward.
    let second = Edit {
        partition_width: Some(100),
        next_file_number: Some(12),
        removed: vec![1],
        added: vec![table(1, 1), table(11, 1)],
        watermarks: vec![(0, 10), (1, 60)],
        dropped_partitions: vec![0],
        ..Edit::default()
    };
    state.apply(&second).unwrap();
    assert_eq!(state.tables.keys().copied().collect::<Vec<_>>(), vec![1, 11]);
    assert_eq!(state.tables[&1].partition, 1);
    assert_eq!(state.watermarks, BTreeMap::from([(0, 10), (1, 70)]));
    assert_eq!((state.partition_width, state.next_file_number), (100, 12));
}

#[test]
fn the_snapshot_of_the_default_state_leaves_the_width_unset() {
    let snapshot = ManifestState::default().snapshot_edit();
    assert_eq!(snapshot.partition_width, None);
    let mut rebuilt = ManifestState::default();
    rebuilt.apply(&snapshot).unwrap();
    assert_eq!(rebuilt, ManifestState::default());
}

/// A group folds its partitions' watermarks under its first partition, and a later
/// watermark of one of its partitions (a flush that began before the group was made)
/// lands there too; dropping the first partition ends the group.
#[test]
fn watermarks_follow_groups() {
    let mut state = ManifestState::default();
    let marks = Edit {
        partition_width: Some(100),
        watermarks: vec![(8, 850), (9, 990), (12, 1_210)],
        ..Edit::default()
    };
    state.apply(&marks).unwrap();
    state.apply(&Edit { groups: vec![(8, 12)], ..Edit::default() }).unwrap();
    assert_eq!(state.watermarks, [(8, 990), (12, 1_210)].into_iter().collect());
    state.apply(&Edit { watermarks: vec![(10, 1_050)], ..Edit::default() }).unwrap();
    assert_eq!(state.watermarks.get(&8), Some(&1_050));
    assert_eq!((state.grouped(11), state.grouped(12), state.grouped(7)), (8, 12, 7));
    let overlap = state.apply(&Edit { groups: vec![(11, 13)], ..Edit::default() }).unwrap_err();
    assert!(overlap.contains("overlaps group 8..12"), "{overlap}");
    assert!(state.apply(&Edit { groups: vec![(13, 13)], ..Edit::default() }).unwrap_err().contains("empty"));
    state.apply(&Edit { dropped_partitions: vec![8], ..Edit::default() }).unwrap();
    assert!(state.groups.is_empty() && !state.watermarks.contains_key(&8));
}
