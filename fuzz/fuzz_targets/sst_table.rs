//! Fuzzes the SSTable reader: open, whole-table scan, point and per-user reads.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| strata_sstable::fuzzing::read_table(data));
