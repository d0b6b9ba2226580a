//! Fuzzes WAL recovery over an arbitrary segment file, in strict and point-in-time modes.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| strata_wal::fuzzing::recover_bytes(data));
