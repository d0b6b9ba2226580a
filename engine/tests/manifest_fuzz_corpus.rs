//! Replays the committed seed corpus of the manifest fuzz target
//! (`fuzz/corpus/manifest_decode`) and a stream of random and mutated inputs through the same
//! entry point, so that the manifest decoders are exercised on stable Rust in every CI run,
//! not only under cargo-fuzz.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::cast_possible_truncation)]

use std::path::Path;

use proptest::prelude::*;
use strata::manifest::fuzzing::decode_manifest;

fn corpus() -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/manifest_decode");
    let mut inputs: Vec<Vec<u8>> =
        std::fs::read_dir(&dir).unwrap().map(|entry| std::fs::read(entry.unwrap().path()).unwrap()).collect();
    inputs.sort();
    assert!(!inputs.is_empty(), "empty corpus in {}", dir.display());
    inputs
}

#[test]
fn seed_corpus_replays_cleanly() {
    for input in corpus() {
        decode_manifest(&input);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn mutated_corpus_inputs_never_panic(pick in any::<prop::sample::Index>(), at in any::<prop::sample::Index>(), byte: u8, cut: bool) {
        let inputs = corpus();
        let mut input = inputs[pick.index(inputs.len())].clone();
        let at = at.index(input.len());
        if cut { input.truncate(at) } else { input[at] = byte }
        decode_manifest(&input);
    }

    #[test]
    fn random_inputs_never_panic(input in proptest::collection::vec(any::<u8>(), 0..512)) {
        decode_manifest(&input);
    }
}
