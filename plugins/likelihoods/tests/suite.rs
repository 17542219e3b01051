//! Every built-in likelihood passes the conformance suite on the test kit's f64 host
//! (`core/engine/tests/suite.rs` runs it on the libtorch host).
// Tests may unwrap (a panic is the failure report) and be long (one scenario per test).
#![allow(clippy::unwrap_used, clippy::too_many_lines)]

use ablate_plugin_likelihoods::*;
use ablate_sdk::testkit::suite::{assert_all_pass, cpu_likelihood};

#[test]
fn every_builtin_likelihood_passes_the_suite() {
    for (name, checks) in [
        ("categorical", cpu_likelihood::<Categorical>("{}")),
        ("batch-norm", cpu_likelihood::<BatchNorm>("{}")),
        ("frn", cpu_likelihood::<Frn>("{}")),
        ("dropout", cpu_likelihood::<Dropout>("{}")),
        ("augmented", cpu_likelihood::<Augmented>("{}")),
        ("tempered", cpu_likelihood::<Tempered>("{}")),
        ("noisy-dirichlet", cpu_likelihood::<NoisyDirichlet>("{}")),
        ("curated", cpu_likelihood::<Curated>("{}")),
        ("curated S=3", cpu_likelihood::<Curated>(r#"{"annotators": 3}"#)),
    ] {
        for c in &checks {
            eprintln!("{name}: {c}");
        }
        assert_all_pass(name, &checks);
        assert_eq!(checks.len(), 5, "{name}");
    }
}
