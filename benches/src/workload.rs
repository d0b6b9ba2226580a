//! The standard behaviour workload of /work/shared/workload.md, generated deterministically
//! from a seed: which user, at what timestamp, with which 64-byte payload.
//!
//! Everything here is hand-written (RNG, Zipf sampler, exponential draws) so that the event
//! stream is a pure function of [`WorkloadConfig`] and cannot change under us when a
//! dependency changes its algorithms; peers and later runs must see the very same events.

use std::fmt;

/// First timestamp of the simulated clock, in microseconds.
pub const CLOCK_START_US: i64 = 1_700_000_000_000_000;
/// Bytes of the payload layout that carry fields; the rest is zero padding.
pub const PAYLOAD_FIELDS_LEN: usize = 36;
/// Bytes of key in a raw event (user u64 + timestamp i64), as the workload counts them.
pub const KEY_BYTES: usize = 16;

/// The parameters of the workload. [`WorkloadConfig::default`] is the standard workload.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct WorkloadConfig {
    /// Distinct users (Zipf ranks).
    pub users: u64,
    /// Zipf exponent of user popularity.
    pub zipf_s: f64,
    /// Mean step of the simulated clock, in microseconds.
    pub mean_step_us: f64,
    /// Fraction of events 0..`late_short_max_us` behind the clock (stream lag).
    pub late_short_fraction: f64,
    /// Largest lag of a short-late event, in microseconds.
    pub late_short_max_us: i64,
    /// Fraction of events 0..`late_long_max_us` behind the clock (replays, backfills).
    pub late_long_fraction: f64,
    /// Largest lag of a long-late event, in microseconds.
    pub late_long_max_us: i64,
    /// Seed of every random draw.
    pub seed: u64,
    /// Payload size in bytes. The layout's fields take the first 36 bytes; a smaller size
    /// keeps a prefix of them, a larger one pads with zeros.
    pub payload_bytes: usize,
}

impl Default for WorkloadConfig {
    fn default() -> Self {
        WorkloadConfig {
            users: 100_000,
            zipf_s: 1.0,
            mean_step_us: 30_000.0,
            late_short_fraction: 0.02,
            late_short_max_us: 60_000_000,
            late_long_fraction: 0.001,
            late_long_max_us: 48 * 3600 * 1_000_000,
            seed: 0x5747_5241_5441_0001,
            payload_bytes: 64,
        }
    }
}

impl WorkloadConfig {
    /// The standard workload with another seed.
    pub fn with_seed(seed: u64) -> Self {
        WorkloadConfig { seed, ..WorkloadConfig::default() }
    }

    /// Raw bytes of one event as the workload counts them: key plus payload.
    pub fn raw_event_bytes(&self) -> usize {
        KEY_BYTES + self.payload_bytes
    }
}

/// One generated event.
#[derive(Clone, PartialEq, Eq)]
pub struct Event {
    /// The user id (already scattered, never a rank).
    pub user: u64,
    /// Timestamp in microseconds.
    pub ts: i64,
    /// The payload, `payload_bytes` long.
    pub payload: Vec<u8>,
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event")
            .field("user", &self.user)
            .field("ts", &self.ts)
            .field("payload_len", &self.payload.len())
            .finish()
    }
}

/// The splitmix64 output function. It is a bijection of `u64` (an add of an odd constant,
/// then xor-shifts and multiplications by odd constants, each invertible), which is what
/// lets it map ranks to user ids without collisions.
pub fn mix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The user id of a Zipf rank (0 = most popular). Independent of the seed on purpose: the
/// query phases draw users from the same Zipf with their own seed and must land on the
/// same ids as the ingest did.
pub fn user_of_rank(rank: u64) -> u64 {
    mix64(rank)
}

/// xoshiro256** seeded through splitmix64: fast, good enough for workloads, and fixed.
#[derive(Clone, Debug)]
pub struct Rng {
    s: [u64; 4],
}

impl Rng {
    /// A generator whose whole stream is determined by `seed`.
    pub fn new(seed: u64) -> Self {
        let mut state = seed;
        let mut next = || {
            let out = mix64(state);
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            out
        };
        Rng { s: [next(), next(), next(), next()] }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let result = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        result
    }

    /// Uniform in `[0, 1)` with 53 bits of precision.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in `[0, n)` (`n > 0`; 0 for `n == 0`), by Lemire's multiply-shift. The bias
    /// is below `n / 2^64`, far under anything a benchmark can see.
    pub fn below(&mut self, n: u64) -> u64 {
        let wide = u128::from(self.next_u64()) * u128::from(n);
        // The high half of a u64 x u64 product always fits in a u64.
        #[allow(clippy::cast_possible_truncation)]
        let high = (wide >> 64) as u64;
        high
    }

    /// Exponential with the given mean.
    pub fn exponential(&mut self, mean: f64) -> f64 {
        // 1 - u is in (0, 1], so the logarithm is finite.
        -mean * (1.0 - self.next_f64()).ln()
    }
}

/// Zipf over ranks `0..n` by inversion of a precomputed CDF: 100k ranks make an 800 KB
/// table and a 17-step binary search, cheaper to get right than rejection-inversion.
#[derive(Clone, Debug)]
pub struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    /// Zipf(s) over `n` ranks; rank `k` (0-based) has weight `1 / (k + 1)^s`.
    pub fn new(n: u64, s: f64) -> Self {
        let mut cdf = Vec::with_capacity(usize::try_from(n).unwrap_or(0));
        let mut total = 0.0f64;
        for k in 0..n {
            total += 1.0 / ((k + 1) as f64).powf(s);
            cdf.push(total);
        }
        for value in &mut cdf {
            *value /= total;
        }
        Zipf { cdf }
    }

    /// A rank drawn from the distribution (0 when built with no rank).
    pub fn sample(&self, rng: &mut Rng) -> u64 {
        let u = rng.next_f64();
        let rank = self.cdf.partition_point(|&c| c <= u);
        // Rounding can leave the last CDF entry a hair under 1.0.
        rank.min(self.cdf.len().saturating_sub(1)) as u64
    }
}

/// Rounds a non-negative draw to whole microseconds or milliseconds.
// The draws are bounded far below i64::MAX (a capped dwell, a 30 ms mean step), so the
// conversion cannot truncate in practice, and `as` saturates if it ever did.
#[allow(clippy::cast_possible_truncation)]
fn round_i64(x: f64) -> i64 {
    x.round() as i64
}

/// The generator: an endless, deterministic stream of standard-workload events.
#[derive(Clone, Debug)]
pub struct Workload {
    config: WorkloadConfig,
    rng: Rng,
    zipf: Zipf,
    clock_us: i64,
}

impl Workload {
    /// A generator at the start of the stream of `config`.
    pub fn new(config: WorkloadConfig) -> Self {
        Workload {
            rng: Rng::new(config.seed),
            zipf: Zipf::new(config.users, config.zipf_s),
            clock_us: CLOCK_START_US,
            config,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &WorkloadConfig {
        &self.config
    }

    /// The simulated clock: the timestamp of the last on-time event.
    pub fn clock_us(&self) -> i64 {
        self.clock_us
    }

    /// Generates the next event, writing its payload into `payload` (cleared first, so a
    /// caller can reuse one buffer), and returns its `(user, ts)`.
    pub fn next_into(&mut self, payload: &mut Vec<u8>) -> (u64, i64) {
        let user = user_of_rank(self.zipf.sample(&mut self.rng));
        self.clock_us += round_i64(self.rng.exponential(self.config.mean_step_us));
        let lateness = self.rng.next_f64();
        let ts = if lateness < self.config.late_long_fraction {
            self.clock_us - self.lag(self.config.late_long_max_us)
        } else if lateness < self.config.late_long_fraction + self.config.late_short_fraction {
            self.clock_us - self.lag(self.config.late_short_max_us)
        } else {
            self.clock_us
        };
        self.payload_into(payload);
        (user, ts)
    }

    /// Generates the next event as an owned value.
    pub fn next_event(&mut self) -> Event {
        let mut payload = Vec::with_capacity(self.config.payload_bytes);
        let (user, ts) = self.next_into(&mut payload);
        Event { user, ts, payload }
    }

    fn lag(&mut self, max_us: i64) -> i64 {
        let bound = u64::try_from(max_us).unwrap_or(0).saturating_add(1);
        i64::try_from(self.rng.below(bound)).unwrap_or(max_us)
    }

    /// Builds the payload per the layout of workload.md (little endian throughout).
    fn payload_into(&mut self, payload: &mut Vec<u8>) {
        let rng = &mut self.rng;
        let mut fields = [0u8; PAYLOAD_FIELDS_LEN];
        fields[0..8].copy_from_slice(&rng.below(10_000_000).to_le_bytes());
        let action_draw = rng.below(100);
        let action: u8 = match action_draw {
            0..=69 => 0,  // view
            70..=89 => 1, // click
            // The six rarer kinds share the last 10%.
            _ => 2 + u8::try_from(rng.below(6)).unwrap_or(0),
        };
        fields[8] = action;
        let dwell_ms = round_i64(rng.exponential(8_000.0)).clamp(0, 600_000);
        let dwell_ms = u32::try_from(dwell_ms).unwrap_or(600_000);
        fields[9..13].copy_from_slice(&dwell_ms.to_le_bytes());
        fields[13..15].copy_from_slice(&small_u16(rng, 1_000).to_le_bytes());
        fields[15..17].copy_from_slice(&small_u16(rng, 50).to_le_bytes());
        fields[17] = small_u8(rng, 4);
        fields[18] = small_u8(rng, 50);
        fields[19] = small_u8(rng, 4);
        for i in 0..8 {
            let at = 20 + 2 * i;
            fields[at..at + 2].copy_from_slice(&small_u16(rng, 256).to_le_bytes());
        }
        payload.clear();
        let n = self.config.payload_bytes;
        payload.extend_from_slice(&fields[..n.min(PAYLOAD_FIELDS_LEN)]);
        payload.resize(n, 0);
    }
}

fn small_u16(rng: &mut Rng, n: u16) -> u16 {
    u16::try_from(rng.below(u64::from(n))).unwrap_or(0)
}

fn small_u8(rng: &mut Rng, n: u8) -> u8 {
    u8::try_from(rng.below(u64::from(n))).unwrap_or(0)
}

impl Iterator for Workload {
    type Item = Event;

    fn next(&mut self) -> Option<Event> {
        Some(self.next_event())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn same_seed_same_events_other_seed_other_events() {
        let a: Vec<Event> = Workload::new(WorkloadConfig::with_seed(7)).take(5_000).collect();
        let b: Vec<Event> = Workload::new(WorkloadConfig::with_seed(7)).take(5_000).collect();
        let c: Vec<Event> = Workload::new(WorkloadConfig::with_seed(8)).take(5_000).collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn stream_is_pinned() {
        // Guards against an accidental change of the generator: every benchmark figure in
        // the docs was measured on this very stream, and peers must see the same events.
        let mut w = Workload::new(WorkloadConfig::default());
        let first = w.next_event();
        assert_eq!(first.user, 13_432_527_470_776_545_160);
        assert_eq!(first.ts, 1_700_000_000_066_272);
        assert_eq!(
            first.payload[..36],
            [
                227, 224, 41, 0, 0, 0, 0, 0, 1, 200, 40, 0, 0, 140, 1, 25, 0, 2, 20, 3, 225, 0, 48, 0, 115,
                0, 2, 0, 98, 0, 147, 0, 126, 0, 218, 0
            ]
        );
        let digest = w.take(10_000).fold(0u64, |acc, e| {
            let payload = e.payload.iter().fold(0u64, |h, &b| mix64(h ^ u64::from(b)));
            mix64(acc ^ e.user ^ mix64(e.ts as u64) ^ payload)
        });
        assert_eq!(digest, 14_346_811_334_696_892_695);
    }

    #[test]
    fn payload_is_64_bytes_and_follows_the_layout() {
        let mut w = Workload::new(WorkloadConfig::default());
        for event in w.by_ref().take(10_000) {
            let p = &event.payload;
            assert_eq!(p.len(), 64);
            let item = u64::from_le_bytes(p[0..8].try_into().unwrap());
            assert!(item < 10_000_000);
            assert!(p[8] < 8);
            let dwell = u32::from_le_bytes(p[9..13].try_into().unwrap());
            assert!(dwell <= 600_000);
            assert!(u16::from_le_bytes([p[13], p[14]]) < 1_000);
            assert!(u16::from_le_bytes([p[15], p[16]]) < 50);
            assert!(p[17] < 4 && p[18] < 50 && p[19] < 4);
            for i in 0..8 {
                assert!(u16::from_le_bytes([p[20 + 2 * i], p[21 + 2 * i]]) < 256);
            }
            assert!(p[36..].iter().all(|&b| b == 0));
        }
    }

    #[test]
    fn action_mix_and_dwell_mean_are_roughly_right() {
        let events: Vec<Event> = Workload::new(WorkloadConfig::default()).take(100_000).collect();
        let views = events.iter().filter(|e| e.payload[8] == 0).count();
        let clicks = events.iter().filter(|e| e.payload[8] == 1).count();
        assert!((68_000..72_000).contains(&views), "{views}");
        assert!((19_000..21_000).contains(&clicks), "{clicks}");
        let dwell: f64 = events
            .iter()
            .map(|e| f64::from(u32::from_le_bytes(e.payload[9..13].try_into().unwrap())))
            .sum::<f64>()
            / events.len() as f64;
        assert!((7_700.0..8_300.0).contains(&dwell), "{dwell}");
    }

    #[test]
    fn late_fractions_and_clock_rate_are_roughly_right() {
        let mut w = Workload::new(WorkloadConfig::default());
        let n = 200_000;
        let (mut short, mut long) = (0u32, 0u32);
        let mut payload = Vec::new();
        for _ in 0..n {
            let (_, ts) = w.next_into(&mut payload);
            let lag = w.clock_us() - ts;
            assert!(lag >= 0);
            if lag > 60_000_000 {
                long += 1;
            } else if lag > 0 {
                short += 1;
            }
        }
        // 2% short-late (4,000 expected) and 0.1% long-late (200 expected); a long lag may
        // also fall under 60 s (rarely), which the bounds allow for.
        assert!((3_700..4_300).contains(&short), "short-late {short}");
        assert!((150..260).contains(&long), "long-late {long}");
        let mean_step = (w.clock_us() - CLOCK_START_US) as f64 / f64::from(n);
        assert!((29_000.0..31_000.0).contains(&mean_step), "{mean_step}");
    }

    #[test]
    fn user_ids_are_scattered_and_zipf_skewed() {
        let events: Vec<Event> = Workload::new(WorkloadConfig::default()).take(100_000).collect();
        let distinct: HashSet<u64> = events.iter().map(|e| e.user).collect();
        // Hot ids are not small numbers: they are spread over the whole u64 space.
        let small = distinct.iter().filter(|&&u| u < 1 << 40).count();
        assert!(small < 5, "{small} of {} ids are small", distinct.len());
        assert!(distinct.len() > 20_000 && distinct.len() <= 100_000);
        // Zipf(1) over 100k ranks: the top user has about 1/H(100k) = 8% of the events.
        let top = events.iter().filter(|e| e.user == user_of_rank(0)).count();
        assert!((7_000..9_500).contains(&top), "top user has {top}");
    }

    #[test]
    fn mix_is_injective_on_ranks() {
        let ids: HashSet<u64> = (0..100_000).map(user_of_rank).collect();
        assert_eq!(ids.len(), 100_000);
    }

    #[test]
    fn other_payload_sizes_keep_the_layout_prefix() {
        let cfg = |payload_bytes| WorkloadConfig { payload_bytes, ..WorkloadConfig::default() };
        let full = Workload::new(cfg(64)).next_event();
        let short = Workload::new(cfg(20)).next_event();
        let long = Workload::new(cfg(100)).next_event();
        assert_eq!(short.payload, full.payload[..20]);
        assert_eq!(long.payload[..64], full.payload[..]);
        assert_eq!(long.payload.len(), 100);
    }
}
