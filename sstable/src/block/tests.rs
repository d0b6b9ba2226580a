// The workload generator narrows draws it has already bounded.
#![allow(clippy::cast_possible_truncation)]

use std::time::Instant;

use proptest::prelude::*;

use super::bits::*;
use super::*;
use crate::table_order;

pub(super) fn encode(entries: &[Entry], compression: Compression) -> Vec<u8> {
    encode_as(entries, compression, None)
}

/// [`encode`] with the timestamp mode forced (`None` lets the builder pick).
pub(super) fn encode_as(entries: &[Entry], compression: Compression, mode: Option<TsMode>) -> Vec<u8> {
    let mut builder = BlockBuilder::new();
    builder.force_ts = mode;
    entries.iter().for_each(|e| builder.add(e));
    let bytes = builder.finish(compression).unwrap();
    if let (Some(mode), Compression::None) = (mode, compression) {
        assert_eq!(bytes.get(HEADER_LEN).map(|f| TsMode::of(*f).unwrap()), Some(mode));
    }
    bytes
}

/// Every timestamp mode forced, and the builder's pick.
pub(super) const MODES: [Option<TsMode>; 4] =
    [None, Some(TsMode::Delta), Some(TsMode::Dod), Some(TsMode::Rice)];

pub(super) fn sorted(mut entries: Vec<Entry>) -> Vec<Entry> {
    entries.sort_by(table_order);
    entries.dedup_by_key(|e| (e.user, e.ts, e.seqno));
    entries
}

fn arb_user() -> impl Strategy<Value = u64> {
    prop_oneof![Just(0), Just(u64::MAX), 0..4u64, u64::MAX - 3..=u64::MAX, any::<u64>()]
}

fn arb_ts() -> impl Strategy<Value = i64> {
    prop_oneof![
        Just(i64::MIN),
        Just(-1),
        Just(0),
        Just(i64::MAX),
        -3..3i64,
        any::<i64>(),
        1_700_000_000_000_000..1_700_000_000_100_000i64,
    ]
}

/// Entries in table order; with `fixed`, every value is 8 bytes long (puts and range deletes).
pub(super) fn arb_entries() -> impl Strategy<Value = Vec<Entry>> {
    let raw = (arb_user(), arb_ts(), prop_oneof![0..4u64, any::<u64>()], 0..3u8, arb_ts(), any::<Vec<u8>>());
    (proptest::collection::vec(raw, 0..120), any::<bool>()).prop_map(|(raw, fixed)| {
        let entries = raw.into_iter().map(|(user, ts, seqno, kind, last, mut value)| match (kind, fixed) {
            (0, _) | (1, true) => {
                value.resize(if fixed { 8 } else { value.len() % 20 }, 7);
                Entry::put(user, ts, seqno, value)
            }
            (1, false) => Entry::delete(user, ts, seqno),
            _ => Entry::range_delete(user, ts, last, seqno),
        });
        sorted(entries.collect())
    })
}

fn check_lookups(block: &DecodedBlock, entries: &[Entry], user: u64, ts: i64) {
    let first = entries
        .iter()
        .position(|e| e.user == user)
        .unwrap_or_else(|| entries.partition_point(|e| e.user < user));
    let count = entries.iter().filter(|e| e.user == user).count();
    assert_eq!(block.user_range(user), first..first + count, "user_range({user})");
    let lower = entries.partition_point(|e| (e.user, e.ts) < (user, ts));
    assert_eq!(block.lower_bound(user, ts), lower, "lower_bound({user}, {ts})");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]
    #[test]
    fn round_trips(entries in arb_entries()) {
        for (compression, mode) in [Compression::None, Compression::Zstd(3)].into_iter()
            .flat_map(|c| MODES.map(|mode| (c, mode)))
        {
            let block = DecodedBlock::decode(&encode_as(&entries, compression, mode)).unwrap();
            prop_assert_eq!(block.len(), entries.len());
            for (i, entry) in entries.iter().enumerate() {
                prop_assert_eq!(block.entry(i), Some(entry.clone()));
                prop_assert_eq!(block.user(i), Some(entry.user));
                prop_assert_eq!(block.ts(i), Some(entry.ts));
            }
            prop_assert_eq!(block.entry(entries.len()), None);
            for e in &entries {
                for (user, ts) in [(e.user, e.ts), (e.user.wrapping_add(1), e.ts), (e.user, e.ts.wrapping_add(1))] {
                    check_lookups(&block, &entries, user, ts);
                }
            }
            for (user, ts) in [(0, i64::MIN), (u64::MAX, i64::MAX), (7, 0)] {
                check_lookups(&block, &entries, user, ts);
            }
        }
    }
}

#[test]
fn edge_values_round_trip_in_every_ts_mode() {
    let entries = sorted(vec![
        Entry::put(0, i64::MIN, u64::MAX, vec![1; 3]),
        Entry::put(0, i64::MIN, 0, vec![2; 3]),
        Entry::put(0, -1, 5, vec![3; 3]),
        Entry::put(0, 0, 5, vec![4; 3]),
        Entry::put(0, i64::MAX, 1, vec![5; 3]),
        Entry::put(u64::MAX, i64::MIN, 1, vec![6; 3]),
        Entry::put(u64::MAX, i64::MAX, 1, vec![7; 3]),
    ]);
    for mode in MODES {
        let bytes = encode_as(&entries, Compression::None, mode);
        let block = DecodedBlock::decode(&bytes).unwrap();
        let decoded: Vec<Entry> = (0..block.len()).filter_map(|i| block.entry(i)).collect();
        assert_eq!(decoded, entries);
    }
}

#[test]
fn builder_resets_and_empty_blocks_decode() {
    let mut builder = BlockBuilder::default();
    builder.add(&Entry::put(1, 2, 3, vec![9; 64]));
    assert_eq!((builder.len(), builder.raw_size()), (1, ENTRY_OVERHEAD + 64));
    builder.finish(Compression::Zstd(1)).unwrap();
    assert!(builder.is_empty());
    assert_eq!(builder.raw_size(), 0);
    let empty = DecodedBlock::decode(&builder.finish(Compression::Zstd(1)).unwrap()).unwrap();
    assert!(empty.is_empty());
    assert_eq!(empty.user_range(5), 0..0);
    assert_eq!(empty.lower_bound(5, 5), 0);
    assert_eq!(empty.entry(0), None);
}

pub(super) fn small_block() -> Vec<Entry> {
    let mut entries = Vec::new();
    for user in [3u64, 90, 1 << 40] {
        for i in 0..8i64 {
            entries.push(Entry::put(user, 1_000 + i * 37, 100 - i as u64, vec![i as u8; 16]));
        }
        entries.push(Entry::delete(user, 5_000, 7));
        entries.push(Entry::range_delete(user, 6_000, 9_000, 8));
    }
    sorted(entries)
}

#[test]
fn flips_never_panic_and_truncations_fail() {
    let modes = [None, Some(TsMode::Rice)];
    for (compression, mode) in
        [Compression::None, Compression::Zstd(3)].into_iter().flat_map(|c| modes.map(|m| (c, m)))
    {
        let bytes = encode_as(&small_block(), compression, mode);
        for cut in 0..bytes.len() {
            assert!(DecodedBlock::decode(&bytes[..cut]).is_err(), "{compression:?} {mode:?} cut at {cut}");
        }
        for at in 0..bytes.len() {
            for mask in [0x01, 0x80, 0xff] {
                let mut damaged = bytes.clone();
                damaged[at] ^= mask;
                if let Ok(block) = DecodedBlock::decode(&damaged) {
                    assert!(block.mem_size() < 64 * bytes.len() + 4096, "{mode:?} flip at {at}");
                }
            }
        }
    }
}

#[test]
fn hostile_headers_are_refused() {
    let good = encode(&small_block(), Compression::Zstd(3));
    let with_header = |codec: u8, body_len: u32, count: u32| {
        let mut bytes = vec![codec];
        bytes.extend_from_slice(&body_len.to_le_bytes());
        bytes.extend_from_slice(&count.to_le_bytes());
        bytes.extend_from_slice(&good[HEADER_LEN..]);
        bytes
    };
    let body_len = u32::from_le_bytes(good[1..5].try_into().unwrap());
    for (codec, len, count) in [
        (1, u32::MAX, 10),
        (1, (MAX_BLOCK_UNCOMPRESSED + 1) as u32, 10),
        (1, MAX_BLOCK_UNCOMPRESSED as u32, 10),
        (1, body_len, u32::MAX),
        (1, body_len, body_len),
        (1, body_len - 1, 30),
        (2, body_len, 30),
        (0, body_len, 30),
    ] {
        let err = DecodedBlock::decode(&with_header(codec, len, count)).unwrap_err();
        assert!(!err.is_empty());
    }
    let mut trailing = good.clone();
    trailing.push(0);
    assert!(DecodedBlock::decode(&trailing).is_err());
}

#[test]
fn out_of_order_entries_are_refused() {
    let pairs = [
        (Entry::put(1, 5, 1, vec![]), Entry::put(1, 4, 1, vec![])),
        (Entry::put(1, 5, 1, vec![]), Entry::put(1, 5, 2, vec![])),
        (Entry::put(1, 5, 1, vec![]), Entry::put(1, 5, 1, vec![])),
        (Entry::put(2, 5, 1, vec![]), Entry::put(1, 6, 1, vec![])),
        (Entry::put(1, i64::MAX, 1, vec![]), Entry::put(1, i64::MIN, 1, vec![])),
    ];
    for (a, b) in pairs {
        let err = DecodedBlock::decode(&encode(&[a, b], Compression::None)).unwrap_err();
        assert!(err.contains("order"), "{err}");
    }
}

/// A splitmix64 stream: a deterministic generator for the workload.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix(self.0)
    }
    fn unit(&mut self) -> f64 {
        ((self.next() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn exp(&mut self, mean: f64) -> f64 {
        -mean * self.unit().ln()
    }
}

/// The bijective 64-bit mix that scatters user ranks over the id space.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Zipf(1) ranks by inverse CDF.
struct Zipf(Vec<f64>);

impl Zipf {
    fn new(n: usize) -> Zipf {
        let mut acc = 0.0;
        let mut cdf: Vec<f64> = (1..=n)
            .map(|r| {
                acc += 1.0 / r as f64;
                acc
            })
            .collect();
        cdf.iter_mut().for_each(|c| *c /= acc);
        Zipf(cdf)
    }
    fn rank(&self, rng: &mut Rng) -> u64 {
        let u = rng.unit();
        self.0.partition_point(|&c| c < u).min(self.0.len() - 1) as u64 + 1
    }
}

/// The standard workload's keys, `count` events from `users` Zipf users, as `(user, ts, seqno)`
/// with seqnos in arrival order.
fn workload_keys(count: usize, users: usize, seed: u64) -> Vec<(u64, i64, u64)> {
    let (zipf, mut rng) = (Zipf::new(users), Rng(seed));
    let mut clock = 1_700_000_000_000_000i64;
    (1..=count as u64)
        .map(|seqno| {
            clock += rng.exp(30_000.0).round() as i64;
            let lag = match rng.below(1000) {
                0 => rng.below(48 * 3_600_000_000),
                1..=20 => rng.below(60_000_000),
                _ => 0,
            };
            (mix(zipf.rank(&mut rng)), clock - lag as i64, seqno)
        })
        .collect()
}

/// A 64-byte payload with workload.md's field layout and distributions.
fn payload(rng: &mut Rng) -> Vec<u8> {
    let mut p = Vec::with_capacity(64);
    p.extend_from_slice(&rng.below(10_000_000).to_le_bytes());
    let action = match rng.below(10) {
        0..=6 => 0,
        7 | 8 => 1,
        _ => 2 + rng.below(6) as u8,
    };
    p.push(action);
    p.extend_from_slice(&(rng.exp(8_000.0).round().min(600_000.0) as u32).to_le_bytes());
    p.extend_from_slice(&(rng.below(1_000) as u16).to_le_bytes());
    p.extend_from_slice(&(rng.below(50) as u16).to_le_bytes());
    p.extend_from_slice(&[rng.below(4) as u8, rng.below(50) as u8, rng.below(4) as u8]);
    for _ in 0..8 {
        p.extend_from_slice(&(rng.below(256) as u16).to_le_bytes());
    }
    p.resize(64, 0);
    p
}

fn to_entries(mut keys: Vec<(u64, i64, u64)>, zero_seqnos: bool, seed: u64) -> Vec<Entry> {
    let mut rng = Rng(seed);
    keys.sort_unstable_by_key(|&(user, ts, seqno)| (user, ts, std::cmp::Reverse(seqno)));
    let entries = keys.into_iter().map(|(user, ts, seqno)| {
        Entry::put(user, ts, if zero_seqnos { 0 } else { seqno }, payload(&mut rng))
    });
    sorted(entries.collect())
}

/// Bytes per event of `entries` cut into blocks of `block_bytes` raw bytes.
fn bytes_per_event(
    entries: &[Entry],
    block_bytes: usize,
    compression: Compression,
    tweak: (bool, Option<TsMode>),
) -> f64 {
    let mut builder = BlockBuilder::new();
    (builder.transpose, builder.force_ts) = tweak;
    let mut total = 0;
    for entry in entries {
        builder.add(entry);
        if builder.raw_size() >= block_bytes {
            total += builder.finish(compression).unwrap().len();
        }
    }
    total += builder.finish(compression).unwrap().len();
    total as f64 / entries.len() as f64
}

/// Slices of a simulated one-day table (the default partition) of the standard workload:
/// 100,000 users, 2.88 M events a day; slices start at random entries, so they weigh users by
/// their events as the whole table does.
fn day_table_slices() -> Vec<(u64, i64, u64)> {
    let mut keys = workload_keys(2_880_000, 100_000, 42);
    keys.sort_unstable_by_key(|&(user, ts, seqno)| (user, ts, std::cmp::Reverse(seqno)));
    let mut rng = Rng(7);
    let mut picked = Vec::new();
    for _ in 0..20 {
        let start = rng.below(keys.len() as u64 - 2_000) as usize;
        picked.extend_from_slice(&keys[start..start + 2_000]);
    }
    picked.sort_unstable();
    picked.dedup();
    picked
}

fn report(name: &str, entries: &[Entry]) -> f64 {
    let mut at_level3 = 0.0;
    for level in [1, 3, 9, 19] {
        let plain = bytes_per_event(entries, 32 << 10, Compression::Zstd(level), (true, None));
        let flat = bytes_per_event(entries, 32 << 10, Compression::Zstd(level), (false, None));
        let dod = bytes_per_event(entries, 32 << 10, Compression::Zstd(level), (true, Some(TsMode::Dod)));
        let delta = bytes_per_event(entries, 32 << 10, Compression::Zstd(level), (true, Some(TsMode::Delta)));
        println!(
            "{name}: zstd {level}: {plain:.2} B/event transposed, {flat:.2} concatenated, \
             {dod:.2} ts dod, {delta:.2} ts varint deltas"
        );
        if level == 3 {
            at_level3 = plain;
        }
    }
    let raw = bytes_per_event(entries, 32 << 10, Compression::None, (true, None));
    let big = bytes_per_event(entries, 64 << 10, Compression::Zstd(3), (true, None));
    let bigger = bytes_per_event(entries, 128 << 10, Compression::Zstd(3), (true, None));
    println!(
        "{name}: uncompressed body {raw:.2} B/event; zstd 3 with 64 KiB blocks {big:.2}, 128 KiB {bigger:.2}"
    );
    at_level3
}

#[test]
fn standard_workload_size() {
    let small = to_entries(workload_keys(20_000, 10_000, 1), false, 2);
    report("20k events, 10k users", &small);
    let day = day_table_slices();
    let day_entries = to_entries(day.clone(), false, 3);
    let with_seqnos = report("day table, arrival seqnos", &day_entries);
    let without = report("day table, zero seqnos", &to_entries(day, true, 3));
    // Regression guards, not the goal: issue 3 wants <= 20 for the blocks; with bit-transposed
    // payloads and Rice-coded timestamps this layout measures about 23.35 (arrival seqnos) and
    // 20.96 (zeroed seqnos), 0.53 and 0.55 below varint deltas.
    assert!(with_seqnos <= 23.8, "{with_seqnos:.2} bytes/event");
    assert!(without <= 21.4, "{without:.2} bytes/event");
}

#[test]
fn decode_time() {
    let entries = to_entries(workload_keys(20_000, 10_000, 1), false, 2);
    let mut builder = BlockBuilder::new();
    let mut blocks = Vec::new();
    for entry in &entries {
        builder.add(entry);
        if builder.raw_size() >= 32 << 10 {
            blocks.push(builder.finish(Compression::Zstd(3)).unwrap());
        }
    }
    let start = Instant::now();
    let mut decoded = 0;
    for block in blocks.iter().cycle().take(2_000) {
        decoded += DecodedBlock::decode(block).unwrap().len();
    }
    let per_block = start.elapsed() / 2_000;
    println!("decode: {per_block:?} per block of {} entries", decoded / 2_000);
}

#[test]
fn bit_transposition_round_trips() {
    let mut rng = Rng(5);
    for x in (0..1000).map(|_| rng.next()) {
        let mut naive = 0u64;
        for (k, b) in (0..8).flat_map(|k| (0..8).map(move |b| (k, b))) {
            naive |= ((x >> (8 * k + b)) & 1) << (8 * b + k);
        }
        assert_eq!(transpose8(x), naive);
    }
    let mut rows: [u64; 8] = std::array::from_fn(|_| rng.next());
    let before = rows;
    transpose_bytes(&mut rows);
    for (r, c) in (0..8).flat_map(|r| (0..8).map(move |c| (r, c))) {
        assert_eq!(before[r].to_le_bytes()[c], rows[c].to_le_bytes()[r]);
    }
    for (width, n) in [(1, 2), (3, 7), (8, 8), (64, 9), (5, 100), (17, 33), (64, 369)] {
        let values: Vec<u8> = (0..width * n).map(|_| rng.next() as u8).collect();
        let mut planes = vec![0xee];
        bitshuffle(&values, width, &mut planes);
        let mut r = Reader::new(&planes[1..]);
        assert_eq!(read_planes(&mut r, width, n).unwrap(), values);
        assert_eq!(r.remaining(), 0);
        // Every range, short ones through the column-by-column path, longer through tiles.
        for start in 0..=n.min(40) {
            for end in (start..=n).filter(|end| end - start <= 20 || *end == n) {
                let mut r = Reader::new(&planes[1..]);
                // Filled with garbage first: every byte must be written.
                let mut got = vec![0xa5; (end - start) * width];
                read_planes_range(&mut r, width, n, start..end, &mut got).unwrap();
                assert_eq!(got, values[start * width..end * width], "width {width} n {n} {start}..{end}");
                assert_eq!(r.remaining(), 0);
                let mut r = Reader::new(&planes[1..]);
                let mut short = vec![0; (end - start) * width + 1];
                assert!(read_planes_range(&mut r, width, n, start..end, &mut short).is_err());
            }
        }
    }
}

#[test]
fn run_len_gallops_to_the_end_of_every_run() {
    for len in 0..40usize {
        for run in 0..=len {
            for at in 0..=(len - run) {
                // `at` smaller users, `run` copies of 5, then larger users.
                let users: Vec<u64> = (0..len)
                    .map(|i| {
                        if i < at {
                            1
                        } else if i < at + run {
                            5
                        } else {
                            9
                        }
                    })
                    .collect();
                let start = users.partition_point(|&u| u < 5);
                let want = users.iter().filter(|&&u| u == 5).count();
                assert_eq!(super::run_len(&users[start..], 5), want, "len {len} run {run} at {at}");
            }
        }
    }
}

#[test]
fn lower_bound_u64_matches_partition_point() {
    let mut next = crate::test_rng::xorshift(0x9e37_79b9_7f4a_7c15);
    for len in [0usize, 1, 2, 15, 16, 17, 50, 400, 1000] {
        for shape in 0..4 {
            let mut values: Vec<u64> = (0..len)
                .map(|i| match shape {
                    0 => next(),     // spread over u64
                    1 => next() % 8, // long runs
                    2 => {
                        if i < len / 2 {
                            i as u64
                        } else {
                            u64::MAX - (len - i) as u64
                        }
                    } // skewed
                    _ => (i as u64) * 3, // dense
                })
                .collect();
            values.sort_unstable();
            let mut targets: Vec<u64> = values.clone();
            targets.extend([0, 1, u64::MAX, u64::MAX - 1, next(), next()]);
            targets.extend(values.iter().map(|v| v.wrapping_add(1)));
            for t in targets {
                let want = values.partition_point(|&v| v < t);
                assert_eq!(super::lower_bound_u64(&values, t), want, "len {len} shape {shape} target {t}");
            }
        }
    }
}
