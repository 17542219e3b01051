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

const Z: f64 = 4.5;

fn check(integrator: &str, temperatures: &[f64], layerwise_mass: bool) {
    tch::manual_seed(11);
    let k = temperatures.len();
    let mut target = Gaussian::new(1000, 0.1, 10.0, 10, 1.0);
    target.chains = k;
    let settings =
        ChainSettings { lr: 2.5e-5, momentum_decay: 0.999, batch_size: 1, layerwise_mass, precond_batches: 2 };
    let (epochs, spe) = (16, 2000);
    let protocols: Vec<_> = temperatures.iter().map(|&t| protocol(epochs, spe, t)).collect();
    let theta = Tensor::stack(&temperatures.iter().map(|&t| target.stationary(t)).collect::<Vec<_>>(), 0);
    let burn_in = 4 * spe;
    let mut rec = Recorder::new(burn_in, 12, spe, false);
    let outs = chains(&mut target, &theta, integrator, &protocols, &settings, &mut rec);
    assert_eq!(outs.len(), k);

    let steps = (rec.sq.len() as u64 * spe) as f64;
    let total = rec.sq.iter().fold(rec.sq[0].zeros_like(), |a, b| a + b);
    for (j, (&t, out)) in temperatures.iter().zip(&outs).enumerate() {
        assert_eq!(out.status, ablate_engine::ChainStatus::Done);
        let sq: Vec<f64> = Vec::<f64>::try_from(total.get(j as i64)).unwrap();
        let ratios: Vec<f64> = sq.iter().zip(&target.sigmas).map(|(s, sig)| s / steps / (t * sig * sig)).collect();
        let (mean, se) = mean_se(&ratios);
        eprintln!("{integrator} chain {j} T={t}: variance ratio {mean:.4} ± {se:.4}");
        assert!((mean - 1.0).abs() < Z * se, "chain {j} at T={t}: variance ratio {mean} ± {se}");
        let kin: Vec<f64> = out.epochs.iter().skip(4).map(|r| r.kinetic_temperature / t).collect();
        let (kt, kse) = mean_se(&kin);
        eprintln!("  kinetic T / T = {kt:.4} ± {kse:.4}");
        assert!((kt - 1.0).abs() < Z * kse.max(1e-3), "chain {j}: kinetic {kt} ± {kse}");
        assert_eq!(out.theta.size(), vec![1000]);
        // Each chain reports its own temperature.
        assert!(out.epochs.iter().all(|r| r.temperature == t));
    }
    let _ = Kind::Float;
}

#[test]
fn sym_euler_chains_at_three_temperatures_each_sample_their_own() {
    check("sym-euler", &[1.0, 0.3, 0.01], true);
}

#[test]
fn baoab_chains_at_two_temperatures_each_sample_their_own() {
    check("baoab", &[0.1, 1.0], false);
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
