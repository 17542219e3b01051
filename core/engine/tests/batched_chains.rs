//! Batched chains through the engine's chain loop: K chains at different temperatures share
//! every step (θ [K, d], per-chain temperature tensor) and each must still sample its own
//! tempered target, as the single-chain tests in `gaussian_target.rs` require.
//!
//! Statistics as there: the chains start from stationary draws, coordinates are independent
//! and the integrators elementwise, so per-coordinate variance ratios are independent with
//! standard error sd/sqrt(d); bounds are 4.5 SE. A leak of one chain's temperature into another
//! (the bug this guards against) moves a ratio by a factor of 3 to 100 here.
// Tests may unwrap (a panic is the failure report) and be long (one scenario per test).
#![allow(clippy::unwrap_used, clippy::too_many_lines)]

mod common;

use ablate_engine::chain::ChainSettings;
use common::*;
use tch::{Kind, Tensor};

#[test]
fn sym_euler_chains_at_three_temperatures_each_sample_their_own() {
    check_batched_temperatures("sym-euler", &[1.0, 0.3, 0.01], true);
}

#[test]
fn baoab_chains_at_two_temperatures_each_sample_their_own() {
    check_batched_temperatures("baoab", &[0.1, 1.0], false);
}

/// Every other batchable integrator: its noise reaches each chain at that chain's own
/// temperature (bbk and msgnht scale their noise through other host paths than the O-step).
#[test]
fn every_batchable_integrator_samples_each_chains_own_temperature() {
    for integrator in ["sgld", "obabo", "bbk", "spv", "msgnht"] {
        check_batched_temperatures(integrator, &[1.0, 0.1], true);
    }
}

#[test]
fn a_metropolis_integrator_refuses_batched_chains() {
    let mut target = Gaussian::new(100, 1.0, 1.0, 1, 1.0);
    target.chains = 2;
    let settings =
        ChainSettings { lr: 1e-3, momentum_decay: 0.9, batch_size: 1, layerwise_mass: false, precond_batches: 2 };
    let protocols = vec![protocol(1, 10, 1.0), protocol(1, 10, 0.5)];
    let theta = Tensor::zeros([2, 100], (Kind::Float, tch::Device::Cpu));
    let mut integ = integrator("hmc", "{}");
    let mut noise = minibatch();
    let mut host = ablate_engine::host::TchHost::new();
    let err = ablate_engine::chain::run_chains(
        &mut target,
        &theta,
        &mut integ,
        &mut noise,
        &protocols,
        &settings,
        &mut host,
        &mut (),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("hmc") && err.contains("batched"), "{err}");
}
