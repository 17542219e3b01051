//! Every built-in integrator passes the conformance suite's Gaussian-target checks on the test
//! kit's f64 host (`core/engine/tests/suite.rs` runs them on the libtorch host).
// Tests may unwrap (a panic is the failure report) and be long (one scenario per test).
#![allow(clippy::unwrap_used, clippy::too_many_lines)]

use ablate_plugin_integrators::*;
use ablate_sdk::testkit::suite::{assert_all_pass, cpu_integrator};

#[test]
fn every_builtin_integrator_passes_the_suite() {
    for (name, checks) in [
        ("sym-euler", cpu_integrator::<NaiveSymplecticEulerMCMC>("{}")),
        ("sgld", cpu_integrator::<Sgld>("{}")),
        ("baoab", cpu_integrator::<Baoab>("{}")),
        ("obabo", cpu_integrator::<Obabo>("{}")),
        ("bbk", cpu_integrator::<Bbk>("{}")),
        ("spv", cpu_integrator::<StochasticPositionVerlet>("{}")),
        ("msgnht", cpu_integrator::<MultivariateNoseHoover>("{}")),
        ("hmc", cpu_integrator::<Hmc>("{}")),
    ] {
        for c in &checks {
            eprintln!("{name}: {c}");
        }
        assert_all_pass(name, &checks);
    }
}
