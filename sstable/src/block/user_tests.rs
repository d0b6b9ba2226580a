//! Proves [`DecodedBlock::decode_user`] equal to [`DecodedBlock::decode`] filtered to one user
//! on random blocks (both codecs, transposed or not, every timestamp mode, users at the u64
//! extremes), for present and absent users, and that damaged blocks never make it panic.
//! No env knobs: proptest's `PROPTEST_CASES` scales the random cases.
#![allow(clippy::cast_possible_truncation)]

use proptest::prelude::*;

use super::tests::{arb_entries, encode, encode_as, small_block, sorted, MODES};
use super::user::varints_span;
use super::*;

/// Builds a block with the given layout choices (`mode: None` lets the builder pick).
fn build(entries: &[Entry], compression: Compression, transpose: bool, mode: Option<TsMode>) -> Vec<u8> {
    let mut builder = BlockBuilder::new();
    builder.transpose = transpose;
    builder.force_ts = mode;
    entries.iter().for_each(|e| builder.add(e));
    builder.finish(compression).unwrap()
}

fn entries_of(block: &DecodedBlock) -> Vec<Entry> {
    (0..block.len()).map(|i| block.entry(i).unwrap()).collect()
}

/// Every user of `entries`, their neighbours (absent unless adjacent) and the u64 extremes.
fn probe_users(entries: &[Entry]) -> Vec<u64> {
    let mut users = vec![0, 1, u64::MAX - 1, u64::MAX, 1 << 63];
    for e in entries {
        users.extend([e.user, e.user.wrapping_sub(1), e.user.wrapping_add(1)]);
    }
    users.sort_unstable();
    users.dedup();
    users
}

/// If `decode` accepts `bytes`, `decode_user` must accept it too (it checks a subset) and give
/// its entries of `user`; otherwise it must return, whatever it returns.
fn check_agrees(bytes: &[u8], user: u64, what: &str) {
    let one = DecodedBlock::decode_user(bytes, user);
    if let Err(err) = &one {
        assert!(err.contains("byte") || err.contains("order"), "{what}: error without a place: {err}");
    }
    let Ok(full) = DecodedBlock::decode(bytes) else { return };
    let one = one.unwrap_or_else(|e| panic!("{what}: decode accepts, decode_user({user}) says {e}"));
    let want: Vec<Entry> = entries_of(&full).into_iter().filter(|e| e.user == user).collect();
    assert_eq!(entries_of(&one), want, "{what}: user {user}");
    assert_eq!(one.user_range(user), 0..want.len(), "{what}: user {user}");
    // The newest `keep` in `lo..=hi`, for bounds around the run's timestamps.
    let mut bounds = vec![i64::MIN, i64::MAX];
    bounds.extend(want.iter().flat_map(|e| [e.ts, e.ts.saturating_sub(1)]).step_by(3));
    for (i, &lo) in bounds.iter().enumerate() {
        let hi = bounds[(i * 7 + 1) % bounds.len()].max(lo);
        let in_range: Vec<Entry> = want.iter().filter(|e| lo <= e.ts && e.ts <= hi).cloned().collect();
        for keep in [0, 1, 2, 5, in_range.len(), usize::MAX] {
            let (newest, cut) = DecodedBlock::decode_user_newest(bytes, user, lo, hi, keep)
                .unwrap_or_else(|e| panic!("{what}: decode_user accepts, decode_user_newest says {e}"));
            let kept = &in_range[in_range.len().saturating_sub(keep)..];
            assert_eq!(entries_of(&newest), kept, "{what}: user {user} {lo}..={hi} keep {keep}");
            assert_eq!(cut, kept.len() < in_range.len(), "{what}: user {user} {lo}..={hi} keep {keep}");
        }
    }
}

/// `arb_entries` with, optionally, every value resized to one width (so transposable).
fn arb_block() -> impl Strategy<Value = (Vec<Entry>, Option<usize>, bool, Option<TsMode>)> {
    let width =
        prop_oneof![Just(None), Just(Some(1)), Just(Some(3)), Just(Some(8)), Just(Some(13)), Just(Some(64))];
    let dod = prop::sample::select(MODES.to_vec());
    (arb_entries(), width, any::<bool>(), dod).prop_map(|(mut entries, width, transpose, dod)| {
        if let Some(width) = width {
            for (i, e) in entries.iter_mut().enumerate() {
                let value: Vec<u8> =
                    (0..width).map(|j| (i * 131 + j * 7) as u8 & if j % 3 == 0 { 3 } else { 0xff }).collect();
                e.value = value.into();
            }
        }
        (entries, width, transpose, dod)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn decode_user_equals_filtered_decode((entries, width, transpose, dod) in arb_block()) {
        for compression in [Compression::None, Compression::Zstd(1)] {
            let bytes = build(&entries, compression, transpose, dod);
            let what = format!("{compression:?} width {width:?} transpose {transpose} ts {dod:?}");
            DecodedBlock::decode(&bytes).unwrap();
            for user in probe_users(&entries) {
                check_agrees(&bytes, user, &what);
            }
        }
    }

    #[test]
    fn damaged_blocks_never_panic(
        (entries, _, transpose, dod) in arb_block(),
        zstd: bool,
        at in any::<prop::sample::Index>(),
        mask in 1..=255u8,
        cut: bool,
        pick in any::<prop::sample::Index>(),
    ) {
        let compression = if zstd { Compression::Zstd(1) } else { Compression::None };
        let mut bytes = build(&entries, compression, transpose, dod);
        let at = at.index(bytes.len());
        if cut { bytes.truncate(at) } else { bytes[at] ^= mask }
        let users = probe_users(&entries);
        let user = users[pick.index(users.len())];
        check_agrees(&bytes, user, &format!("cut {cut} at {at} mask {mask:#04x}"));
    }
}

#[test]
fn every_flip_and_cut_of_a_small_block_is_handled() {
    let entries = small_block();
    let modes = [None, Some(TsMode::Rice)];
    for (compression, mode) in
        [Compression::None, Compression::Zstd(3)].into_iter().flat_map(|c| modes.map(|m| (c, m)))
    {
        let bytes = encode_as(&entries, compression, mode);
        for user in probe_users(&entries) {
            for cut in 0..bytes.len() {
                check_agrees(&bytes[..cut], user, &format!("{compression:?} {mode:?} cut at {cut}"));
            }
            for at in 0..bytes.len() {
                for mask in [0x01, 0x80, 0xff] {
                    let mut damaged = bytes.clone();
                    damaged[at] ^= mask;
                    check_agrees(
                        &damaged,
                        user,
                        &format!("{compression:?} {mode:?} flip {mask:#04x} at {at}"),
                    );
                }
            }
        }
    }
}

/// Users 10, 20, 30, 40 with 5, 12, 1, 6 entries: user 20's run is records 5..17, which spans
/// three 8-record groups; user 30's is a lone record inside one.
fn grouped_entries(width: usize) -> Vec<Entry> {
    let mut entries = Vec::new();
    for (user, count) in [(10u64, 5i64), (20, 12), (30, 1), (40, 6)] {
        for i in 0..count {
            let value: Vec<u8> =
                (0..width).map(|j| (user as usize * 3 + i as usize * 17 + j) as u8).collect();
            entries.push(Entry::put(user, 1_000 + i * 1_000_003, 50 - i as u64, value));
        }
    }
    sorted(entries)
}

#[test]
fn first_last_and_group_crossing_runs() {
    for width in [1, 8, 13, 64] {
        let entries = grouped_entries(width);
        for (compression, transpose) in
            [(Compression::None, true), (Compression::None, false), (Compression::Zstd(1), true)]
        {
            let bytes = build(&entries, compression, transpose, None);
            if compression == Compression::None {
                assert_eq!(bytes.get(HEADER_LEN).map(|f| f & FLAG_TRANSPOSED != 0), Some(transpose));
            }
            for (user, count) in [(10, 5), (20, 12), (30, 1), (40, 6), (15, 0), (9, 0), (41, 0)] {
                let what = format!("width {width} {compression:?} transpose {transpose}");
                check_agrees(&bytes, user, &what);
                assert_eq!(
                    DecodedBlock::decode_user(&bytes, user).unwrap().len(),
                    count,
                    "{what} user {user}"
                );
            }
        }
    }
}

#[test]
fn one_entry_and_empty_blocks() {
    let one = [Entry::put(u64::MAX, i64::MIN, u64::MAX, vec![1, 2, 3])];
    for compression in [Compression::None, Compression::Zstd(1)] {
        let bytes = encode(&one, compression);
        let block = DecodedBlock::decode_user(&bytes, u64::MAX).unwrap();
        assert_eq!(entries_of(&block), one);
        assert!(DecodedBlock::decode_user(&bytes, 0).unwrap().is_empty());
        let empty = encode(&[], compression);
        let block = DecodedBlock::decode_user(&empty, 7).unwrap();
        assert!(block.is_empty());
        assert_eq!((block.entry(0), block.user_range(7)), (None, 0..0));
    }
}

#[test]
fn a_run_out_of_order_is_refused() {
    let bytes = encode(&[Entry::put(1, 5, 1, vec![]), Entry::put(1, 4, 1, vec![])], Compression::None);
    let err = DecodedBlock::decode_user(&bytes, 1).unwrap_err();
    assert!(err.contains("order") && err.contains("user 1"), "{err}");
}

#[test]
fn varints_span_counts_terminators() {
    let mut next = crate::test_rng::xorshift(0x2545_f491_4f6c_dd1d);
    for len in 0..70usize {
        let bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        let ends: Vec<usize> = (0..len).filter(|&i| bytes[i] & 0x80 == 0).map(|i| i + 1).collect();
        assert_eq!(varints_span(&bytes, 0), Some(0));
        for count in 1..=ends.len() + 1 {
            assert_eq!(varints_span(&bytes, count), ends.get(count - 1).copied(), "len {len} count {count}");
        }
    }
}
