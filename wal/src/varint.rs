//! LEB128 varints and zigzag encoding, the integer codecs of a batch's operations.
//!
//! The SSTable crate has the same codecs for its block columns; the WAL does not depend on
//! it, and these few lines are not worth a crate of their own. Decoding never reads past the
//! slice and accepts only the shortest form of a value, so a byte string decodes to at most
//! one batch and a decoded batch re-encodes to exactly the bytes it came from.

/// Longest varint of a `u64`.
pub(crate) const MAX_LEN: usize = 10;

/// Appends `value` as a LEB128 varint (1 to 10 bytes).
pub(crate) fn put_u64(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push(value.to_le_bytes()[0] | 0x80);
        value >>= 7;
    }
    out.push(value.to_le_bytes()[0]);
}

/// Appends `value` zigzag-encoded, so that small negative numbers stay short.
pub(crate) fn put_i64(out: &mut Vec<u8>, value: i64) {
    put_u64(out, zigzag(value));
}

/// Maps signed to unsigned: 0, -1, 1, -2, ... to 0, 1, 2, 3, ...
pub(crate) fn zigzag(value: i64) -> u64 {
    ((value << 1) ^ (value >> 63)) as u64
}

/// Inverse of [`zigzag`].
pub(crate) fn unzigzag(value: u64) -> i64 {
    ((value >> 1) as i64) ^ -((value & 1) as i64)
}

/// Reads the varint at the front of `bytes`: its value and how many bytes it took.
pub(crate) fn read_u64(bytes: &[u8]) -> Result<(u64, usize), String> {
    let mut value = 0u64;
    for (i, &byte) in bytes.iter().take(MAX_LEN).enumerate() {
        if i == MAX_LEN - 1 && byte > 1 {
            return Err(format!("varint overflows 64 bits (10th byte {byte:#04x})"));
        }
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            // A final zero byte after others adds nothing: the shorter form exists, and
            // accepting both would let two encodings stand for one batch.
            if byte == 0 && i > 0 {
                return Err(format!("overlong varint: {} bytes for the value {value}", i + 1));
            }
            return Ok((value, i + 1));
        }
    }
    // Ten bytes always end the loop above (the tenth may only be 0 or 1), so fewer are left.
    Err(format!("varint cut short after {} bytes", bytes.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(value: u64) -> Vec<u8> {
        let mut out = Vec::new();
        put_u64(&mut out, value);
        out
    }

    #[test]
    fn values_round_trip_at_every_length_boundary() {
        for shift in 0..64 {
            for value in [(1u64 << shift) - 1, 1u64 << shift, (1u64 << shift) + 1, u64::MAX >> shift] {
                let bytes = encode(value);
                assert_eq!(read_u64(&bytes), Ok((value, bytes.len())), "{value}");
                assert!(bytes.len() <= MAX_LEN);
            }
        }
        for value in [0, 1, -1, 63, -64, 64, i64::MIN, i64::MAX] {
            assert_eq!(unzigzag(zigzag(value)), value);
        }
        assert_eq!(zigzag(-1), 1);
        assert_eq!(zigzag(i64::MIN), u64::MAX);
    }

    #[test]
    fn malformed_varints_are_refused() {
        let cases: [(&[u8], &str); 6] = [
            (&[], "cut short after 0 bytes"),
            (&[0x80, 0x80], "cut short after 2 bytes"),
            (&[0x80, 0x00], "overlong varint: 2 bytes"),
            (&[0xff; 9], "cut short after 9 bytes"),
            (&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02], "overflows 64 bits"),
            (&[0x80; 11], "overflows 64 bits"),
        ];
        for (bytes, want) in cases {
            let err = read_u64(bytes).unwrap_err();
            assert!(err.contains(want), "{bytes:02x?}: {err}");
        }
        let max = encode(u64::MAX);
        assert_eq!(max.len(), MAX_LEN);
        assert_eq!(read_u64(&max), Ok((u64::MAX, MAX_LEN)));
    }
}
