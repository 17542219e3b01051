//! Every built-in noise model passes the conformance suite on the test kit's f64 host
//! (`core/engine/tests/suite.rs` runs it on the libtorch host).
// Tests may unwrap (a panic is the failure report) and be long (one scenario per test).
#![allow(clippy::unwrap_used, clippy::too_many_lines)]

use ablate_plugin_noise::*;
use ablate_sdk::testkit::suite::{assert_all_pass, cpu_noise};

#[test]
fn every_builtin_noise_model_passes_the_suite() {
    for (name, checks) in [
        ("minibatch", cpu_noise::<Minibatch>("{}")),
        ("full-batch", cpu_noise::<FullBatch>("{}")),
        ("pretend-batch", cpu_noise::<PretendBatch>("{}")),
        ("gaussian-matched", cpu_noise::<GaussianMatched>("{}")),
        ("alpha-stable", cpu_noise::<AlphaStable>("{}")),
    ] {
        for c in &checks {
            eprintln!("{name}: {c}");
        }
        assert_all_pass(name, &checks);
        assert_eq!(checks.len(), 2, "{name}");
    }
}
