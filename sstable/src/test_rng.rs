//! A seeded xorshift64 for the crate's tests: reproducible inputs without a dependency.

/// The generator started at `seed` (not 0, which it never leaves): each call gives the
/// next value.
pub(crate) fn xorshift(mut x: u64) -> impl FnMut() -> u64 {
    move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    }
}
