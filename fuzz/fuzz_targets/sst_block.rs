//! Fuzzes the SSTable data-block decoder.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| strata_sstable::fuzzing::decode_block(data));
