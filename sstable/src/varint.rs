//! LEB128 varints and zigzag encoding, the integer codecs of the block columns.
//!
//! Decoding never reads past the slice and refuses a varint longer than 10 bytes or one
//! whose 10th byte overflows 64 bits, so damaged input is an error, never a wrapped value.

/// Appends `value` as a LEB128 varint (1 to 10 bytes).
pub fn put_u64(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push(value.to_le_bytes()[0] | 0x80);
        value >>= 7;
    }
    out.push(value.to_le_bytes()[0]);
}

/// Appends `value` zigzag-encoded, so that small negative numbers stay short.
pub fn put_i64(out: &mut Vec<u8>, value: i64) {
    put_u64(out, zigzag(value));
}

/// Maps signed to unsigned: 0, -1, 1, -2, ... to 0, 1, 2, 3, ...
pub fn zigzag(value: i64) -> u64 {
    ((value << 1) ^ (value >> 63)) as u64
}

/// Inverse of [`zigzag`].
pub fn unzigzag(value: u64) -> i64 {
    ((value >> 1) as i64) ^ -((value & 1) as i64)
}

/// A cursor over varint-encoded bytes.
#[derive(Clone, Debug)]
pub struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader at the start of `bytes`.
    pub fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes, pos: 0 }
    }

    /// Bytes consumed so far.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Bytes not yet consumed.
    pub fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    /// Reads a LEB128 varint.
    pub fn u64(&mut self) -> Result<u64, String> {
        let mut value: u64 = 0;
        for i in 0..10 {
            let Some(&byte) = self.bytes.get(self.pos) else {
                return Err(format!("varint cut short at byte {}", self.pos));
            };
            self.pos += 1;
            if i == 9 && byte > 1 {
                return Err(format!("varint overflows 64 bits at byte {}", self.pos - 1));
            }
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(format!("varint longer than 10 bytes at byte {}", self.pos))
    }

    /// Reads a zigzag varint.
    pub fn i64(&mut self) -> Result<i64, String> {
        self.u64().map(unzigzag)
    }

    /// Reads a varint that must fit `usize` and be at most `max`.
    pub fn len(&mut self, max: usize, what: &str) -> Result<usize, String> {
        let value = self.u64()?;
        match usize::try_from(value) {
            Ok(len) if len <= max => Ok(len),
            _ => Err(format!("{what} {value} over the limit of {max}")),
        }
    }

    /// Takes the next `n` bytes.
    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.remaining() < n {
            return Err(format!("needs {n} bytes at byte {}, {} left", self.pos, self.remaining()));
        }
        let slice = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(slice)
    }

    /// Takes one byte.
    pub fn byte(&mut self) -> Result<u8, String> {
        self.bytes(1).map(|b| b[0])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn round_trips(values in proptest::collection::vec(any::<i64>(), 0..50)) {
            let mut out = Vec::new();
            for &v in &values {
                put_i64(&mut out, v);
                put_u64(&mut out, v as u64);
            }
            let mut reader = Reader::new(&out);
            for &v in &values {
                prop_assert_eq!(reader.i64().unwrap(), v);
                prop_assert_eq!(reader.u64().unwrap(), v as u64);
            }
            prop_assert_eq!(reader.remaining(), 0);
        }
    }

    #[test]
    fn damaged_varints_are_refused() {
        assert!(Reader::new(&[0x80]).u64().is_err());
        assert!(Reader::new(&[0xff; 11]).u64().is_err());
        let mut overflow = vec![0xff; 9];
        overflow.push(0x02);
        assert!(Reader::new(&overflow).u64().is_err());
        let mut max = Vec::new();
        put_u64(&mut max, u64::MAX);
        assert_eq!(Reader::new(&max).u64().unwrap(), u64::MAX);
        assert_eq!(unzigzag(zigzag(i64::MIN)), i64::MIN);
        assert!(Reader::new(&[5]).len(4, "count").is_err());
    }
}
