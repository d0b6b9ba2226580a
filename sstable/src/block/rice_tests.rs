//! Pins the Rice timestamp mode's edges: one entry, single-entry runs (no deltas), `k = 0`,
//! deltas of 2^64 - 1 that only escapes can hold, the choice of `k`, and hand-made bodies
//! whose Rice section is damaged in each way the decoder must refuse. The random round
//! trips, `decode_user` agreement and damage of every mode are the proptests of `tests.rs`
//! and `user_tests.rs`. No env knobs.
#![allow(clippy::cast_possible_truncation)]

use super::rice::{choose_k, cost, ESCAPE, MAX_K};
use super::tests::{encode_as, sorted};
use super::*;
use crate::test_rng::xorshift;

fn entries_of(block: &DecodedBlock) -> Vec<Entry> {
    (0..block.len()).map(|i| block.entry(i).unwrap()).collect()
}

/// Round-trips `entries` in Rice mode, whole and user by user, both codecs.
fn check_rice(entries: &[Entry], what: &str) {
    for compression in [Compression::None, Compression::Zstd(1)] {
        let bytes = encode_as(entries, compression, Some(TsMode::Rice));
        let block = DecodedBlock::decode(&bytes).unwrap_or_else(|e| panic!("{what} {compression:?}: {e}"));
        assert_eq!(entries_of(&block), entries, "{what} {compression:?}");
        for user in entries.iter().map(|e| e.user).chain([2, u64::MAX - 2]) {
            let one = DecodedBlock::decode_user(&bytes, user).unwrap_or_else(|e| panic!("{what}: {e}"));
            let want: Vec<Entry> = entries.iter().filter(|e| e.user == user).cloned().collect();
            assert_eq!(entries_of(&one), want, "{what} {compression:?} user {user}");
        }
    }
}

#[test]
fn rice_edge_blocks_round_trip() {
    let put = |user, ts, seqno| Entry::put(user, ts, seqno, vec![seqno as u8; 3]);
    check_rice(&[put(u64::MAX, i64::MIN, 1)], "one entry");
    check_rice(
        &sorted((0..40).map(|i| put(i * 3 + 1, i as i64 * 1_000_003, 9)).collect()),
        "single-entry runs",
    );
    // Equal timestamps (seqnos descending) and steps of one: every delta 0 or 1, so k = 0.
    let flat = sorted((0..50).map(|i| put(7, i as i64 / 2, 100 - i)).collect());
    check_rice(&flat, "k = 0");
    let extremes = [i64::MIN, i64::MIN + 1, -1, 0, 1, i64::MAX - 1, i64::MAX];
    let wide = sorted(extremes.iter().flat_map(|&ts| [put(1, ts, 5), put(u64::MAX - 1, ts, 4)]).collect());
    check_rice(&wide, "deltas of 2^63 and more");
    // A Poisson clock with outliers of hours: most deltas coded plainly, a few escaped.
    let mut next = xorshift(0x5eed);
    let mut clock = 1_700_000_000_000_000i64;
    let mut mixed = Vec::new();
    for i in 0..300u64 {
        clock += if i % 37 == 0 { 3_600_000_000 + (next() % 1000) as i64 } else { (next() % 60_000) as i64 };
        mixed.push(put(1 + i / 100, clock, i));
    }
    check_rice(&sorted(mixed), "escapes among plain codes");
}

/// The deltas of `block` for [`choose_k`] tests: `count` geometric-like gaps of `mean`.
fn gaps(seed: u64, count: usize, mean: u64) -> Vec<u64> {
    let mut next = xorshift(seed);
    (0..count).map(|_| (next() % (2 * mean + 1)) / (1 + next() % 2)).collect()
}

#[test]
fn choose_k_is_within_a_fraction_of_a_percent_of_the_best() {
    let mut cases = vec![Vec::new(), vec![0; 10], vec![u64::MAX; 3], vec![1, u64::MAX, 1, 0]];
    for (seed, mean) in [(1, 1), (2, 30), (3, 30_000), (4, 1 << 40), (5, 1 << 62)] {
        cases.push(gaps(seed, 160, mean));
        let mut outliers = gaps(seed + 10, 160, mean);
        outliers[7] = u64::MAX;
        outliers[90] = 1 << 50;
        cases.push(outliers);
    }
    for deltas in cases {
        let (k, bytes) = choose_k(deltas.iter().copied(), deltas.len());
        assert!(k <= MAX_K);
        assert_eq!(bytes, cost(deltas.iter().copied(), deltas.len(), k));
        let best = (0..=MAX_K).map(|k| cost(deltas.iter().copied(), deltas.len(), k)).min().unwrap();
        assert!(bytes * 1000 <= best * 1005 + 1000, "k {k}: {bytes} bytes, best {best}: {deltas:?}");
    }
}

/// A raw block of user 9's entries (seqnos 5 and 4) whose Rice section is `k`, the escape
/// list `escapes` (with its count), `low` and `unary`, as the builder lays it out.
fn raw_block(k: u8, escapes: &[u8], low: &[u8], unary: &[u8]) -> Vec<u8> {
    let mut body = vec![FLAG_TS_RICE, 1, 9, 2, 0, k, 0];
    body.extend_from_slice(escapes);
    body.extend_from_slice(low);
    body.extend_from_slice(unary);
    // seqnos 5, 4; kinds: put x2; lengths: 0 x2; no values.
    body.extend_from_slice(&[5, 0, 1, 1, 1, 2, 1, 0, 2]);
    let mut block = vec![CODEC_NONE];
    block.extend_from_slice(&(body.len() as u32).to_le_bytes());
    block.extend_from_slice(&2u32.to_le_bytes());
    block.extend_from_slice(&body);
    block
}

#[test]
fn hand_made_rice_sections_decode_or_are_refused() {
    let ts_of = |bytes: &[u8]| -> Result<Vec<i64>, String> {
        let whole = DecodedBlock::decode(bytes).map(|b| b.ts)?;
        let one = DecodedBlock::decode_user(bytes, 9).map(|b| b.ts)?;
        assert_eq!(whole, one);
        Ok(whole)
    };
    assert_eq!(ts_of(&raw_block(0, &[0], &[], &[0b1])), Ok(vec![0, 0]));
    assert_eq!(ts_of(&raw_block(3, &[0], &[0b101], &[0b10])), Ok(vec![0, 13]));
    // An escape: 16 zero bits then a one, and an extra of 5 on delta 0.
    assert_eq!(ts_of(&raw_block(0, &[1, 0, 5], &[], &[0, 0, 1])), Ok(vec![0, i64::from(ESCAPE) + 5]));
    let refused = [
        ("k over the limit", raw_block(MAX_K + 1, &[0], &[0; 8], &[1])),
        ("unary code too long", raw_block(0, &[0], &[], &[0, 0, 0, 1])),
        ("unary cut short", raw_block(0, &[0], &[], &[])),
        ("a bit past the last code", raw_block(0, &[0], &[], &[0b11])),
        ("a low bit past the last delta", raw_block(3, &[0], &[0b1000_0101], &[0b1])),
        ("escape the unary code does not show", raw_block(0, &[1, 0, 5], &[], &[1])),
        ("escaped code without its escape", raw_block(0, &[0], &[], &[0, 0, 1])),
        ("escape past the last delta", raw_block(0, &[1, 1, 5], &[], &[1])),
        ("more escapes than deltas", raw_block(0, &[2, 0, 5, 0, 5], &[], &[0, 0, 1])),
        ("escape index past usize", {
            let mut escapes = vec![1];
            escapes.extend_from_slice(&[0xff; 9]);
            escapes.extend_from_slice(&[1, 5]);
            raw_block(0, &escapes, &[], &[0, 0, 1])
        }),
        ("quotient over 64 bits", raw_block(MAX_K, &[1, 0, 0x80, 0x08], &[0; 7], &[0, 0, 1])),
    ];
    for (what, bytes) in refused {
        assert!(DecodedBlock::decode(&bytes).is_err(), "{what}: decode accepts it");
        assert!(DecodedBlock::decode_user(&bytes, 9).is_err(), "{what}: decode_user accepts it");
    }
}

/// The builder picks Rice for a Poisson clock and keeps varint deltas where the Rice section's
/// fixed bytes cost more (two entries, one small delta).
#[test]
fn the_builder_picks_rice_where_it_is_smaller() {
    let mut next = xorshift(0x1234);
    let mut clock = 1_700_000_000_000_000i64;
    let poisson: Vec<Entry> = (0..160u64)
        .map(|i| {
            clock += 1 + (next() % 60_000) as i64;
            Entry::put(5 + i / 40, clock, i, vec![0; 8])
        })
        .collect();
    let flags = |entries: &[Entry]| encode_as(&sorted(entries.to_vec()), Compression::None, None)[HEADER_LEN];
    assert_eq!(TsMode::of(flags(&poisson)), Ok(TsMode::Rice));
    let two = [Entry::put(1, 10, 1, vec![]), Entry::put(1, 15, 2, vec![])];
    assert_eq!(TsMode::of(flags(&two)), Ok(TsMode::Delta));
}
