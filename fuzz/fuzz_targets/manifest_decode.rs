//! Fuzzes the manifest's decoders: edit body, manifest log, CURRENT, and `load` of them.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| strata::manifest::fuzzing::decode_manifest(data));
