//! Fuzzes the WAL's decoders: segment header, record framing, batch body.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| strata_wal::fuzzing::decode_bytes(data));
