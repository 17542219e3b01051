//! The GPU's update code, checked for temperature on the CPU in every test run.
//!
//! Off the CPU (and on the CPU with `ABLATE_UNFUSED=1`) the sampler's updates are not the fused
//! one-pass loops of `ablate_engine::fused` but composed libtorch kernels: the O-step as
//! `mul_` + `addcmul` + the shim's `addcmul_scaled` with per-chain temperature tensors, θ updates
//! through the shim's `add_scaled`. A noise-scale or temperature mistake in that form would
//! only show on a GPU, where no test runs. This binary switches the fused loops off before its
//! first update (the switch is read once per process, so it needs a binary of its own) and asks
//! the same questions as `suite.rs` and `batched_chains.rs`: every built-in integrator and
//! noise model passes the conformance suite's checks (its integrator checks sample a Gaussian
//! target at several temperatures), and batched chains at different temperatures each sample
//! their own tempered target. The statistics and bounds are those tests'.
// Tests may unwrap (a panic is the failure report) and be long (one scenario per test).
#![allow(clippy::unwrap_used, clippy::too_many_lines)]

mod common;

use ablate_engine::suite_host::run_suite;
use ablate_plugin_host::{Registry, SearchPath};
use ablate_sdk::testkit::suite::Check;
use ablate_sdk::FactorKind;
use common::check_batched_temperatures;
use tch::Device;

/// Switch the fused CPU loops off for this process, and prove that it took.
fn composed_updates() {
    // SAFETY: every test of this binary sets the same value before its first update; nothing
    // reads the environment concurrently in a way that could observe a torn write.
    unsafe { std::env::set_var("ABLATE_UNFUSED", "1") };
    assert!(!ablate_engine::fused::enabled(), "the fused loops were read as on before this test switched them off");
}

#[test]
fn every_builtin_integrator_and_noise_model_passes_the_suite_through_the_composed_updates() {
    composed_updates();
    let registry = Registry::load(&SearchPath::standard(&[])).unwrap();
    let mut failures = Vec::new();
    let mut checked = 0;
    for f in registry.factories().filter(|f| matches!(f.kind, FactorKind::Integrator | FactorKind::Noise)) {
        let checks = run_suite(&registry, f, Device::Cpu);
        let label = format!("{} {}", f.kind.as_str(), f.name);
        for c in &checks {
            eprintln!("{label}: {c}");
        }
        if checks.iter().any(Check::failed) || checks.is_empty() {
            failures.push(label);
        }
        checked += 1;
    }
    assert!(checked >= 2, "no built-in integrators or noise models found next to the test binary");
    assert!(failures.is_empty(), "failing the suite with the composed updates: {failures:?}");
}

#[test]
fn batched_sym_euler_chains_at_three_temperatures_through_the_composed_updates() {
    composed_updates();
    check_batched_temperatures("sym-euler", &[1.0, 0.3, 0.01], true);
}

#[test]
fn batched_baoab_chains_at_two_temperatures_through_the_composed_updates() {
    composed_updates();
    check_batched_temperatures("baoab", &[0.1, 1.0], false);
}

#[test]
fn batched_bbk_and_msgnht_chains_through_the_composed_updates() {
    composed_updates();
    // Their noise goes through other host paths than the O-step (temperature tensors scaled and
    // subtracted), so they are checked here too.
    for integrator in ["bbk", "msgnht"] {
        check_batched_temperatures(integrator, &[1.0, 0.1], true);
    }
}
