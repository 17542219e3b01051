//! The paper's sampler on a diagonal Gaussian target through the engine's chain loop:
//! per-coordinate variance / (T σ²), kinetic and configurational temperature ≈ T, and the
//! fraction of tensors inside their 99% kinetic band ≈ 0.99.
//!
//! Statistics: the chain starts from a stationary draw, the coordinates are independent under
//! the target and the integrator is elementwise, so the per-coordinate ratios rᵢ are independent
//! and their mean has standard error sd(rᵢ)/sqrt(d), whatever the autocorrelation. Kinetic and
//! configurational temperatures are averaged over epochs (one value per epoch, each a mean over
//! d = 1000 coordinates); their SE comes from the spread over epochs. Bounds are 4.5 SE (a false
//! alarm rate of ~1e-5 per check), plus the integrator's O(h²ω²) discretisation bias, which at
//! h·ω_max = 0.05 is below 0.2% and is neglected.
// Tests may unwrap (a panic is the failure report) and be long (one scenario per test).
#![allow(clippy::unwrap_used, clippy::too_many_lines)]

mod common;

use ablate_engine::chain::ChainSettings;
use common::*;
use tch::Kind;

const Z: f64 = 4.5;

fn check(temperature: f64, layerwise_mass: bool) {
    tch::manual_seed(7);
    // σ from 0.1 to 10 (two orders of magnitude) over d = 1000 coordinates in 10 tensors.
    let mut target = Gaussian::new(1000, 0.1, 10.0, 10, 1.0);
    // h = sqrt(lr/n) = 0.005 so h·ω_max = 0.05; β = 0.999 gives γ = 0.2, about critical damping
    // of the slowest coordinates (ω = 0.1).
    let settings =
        ChainSettings { lr: 2.5e-5, momentum_decay: 0.999, batch_size: 1, layerwise_mass, precond_batches: 2 };
    let (epochs, spe) = (24, 2000);
    let protocol = protocol(epochs, spe, temperature);
    let theta = target.stationary(temperature);
    let burn_in = 4 * spe;
    let mut rec = Recorder::new(burn_in, 20, spe, false);
    let out = chain(&mut target, &theta, "sym-euler", &protocol, &settings, &mut rec);
    assert_eq!(out.status, ablate_engine::ChainStatus::Done);

    let steps = (rec.sq.len() as u64 * spe) as f64;
    let total = rec.sq.iter().fold(rec.sq[0].zeros_like(), |a, b| a + b);
    let sq: Vec<f64> = Vec::<f64>::try_from(total).unwrap();
    let ratios: Vec<f64> =
        sq.iter().zip(&target.sigmas).map(|(s, sig)| s / steps / (temperature * sig * sig)).collect();
    let (mean, se) = mean_se(&ratios);
    eprintln!("T={temperature} mass={layerwise_mass}: variance ratio {mean:.4} ± {se:.4}");
    assert!((mean - 1.0).abs() < Z * se, "variance ratio {mean} ± {se} at T={temperature}");
    // Slow and fast halves separately: a σ-dependent bias cannot hide in the average.
    for half in [&ratios[..500], &ratios[500..]] {
        let (m, s) = mean_se(half);
        assert!((m - 1.0).abs() < Z * s, "half: {m} ± {s}");
    }

    let rows: Vec<_> = out.epochs.iter().skip(4).collect();
    let kin: Vec<f64> = rows.iter().map(|r| r.kinetic_temperature / temperature).collect();
    let (k, kse) = mean_se(&kin);
    eprintln!("  kinetic T / T = {k:.4} ± {kse:.4}");
    assert!((k - 1.0).abs() < Z * kse.max(1e-3), "kinetic {k} ± {kse}");
    let conf: Vec<f64> = rows.iter().map(|r| r.configurational_temperature / temperature).collect();
    let (c, cse) = mean_se(&conf);
    eprintln!("  configurational T / T = {c:.4} ± {cse:.4}");
    assert!((c - 1.0).abs() < Z * cse.max(1e-3), "configurational {c} ± {cse}");
    // In-band fraction: 10 tensors × 20 epochs of Bernoulli(0.99) indicators.
    let inside: f64 = rows.iter().map(|r| r.kinetic_in_band).sum::<f64>() / rows.len() as f64;
    let m = rows.len() as f64 * 10.0;
    let bound = 0.99 - Z * (0.99f64 * 0.01 / m).sqrt();
    eprintln!("  fraction of tensors in the 99% band {inside:.3} (bound {bound:.3})");
    assert!(inside >= bound, "in-band fraction {inside} < {bound}");
    let _ = Kind::Float;
}

#[test]
fn temperature_one_identity_mass() {
    check(1.0, false);
}

#[test]
fn temperature_one_layerwise_mass() {
    check(1.0, true);
}

#[test]
fn temperature_point_three_layerwise_mass() {
    check(0.3, true);
}

#[test]
fn temperature_point_zero_one_identity_mass() {
    check(0.01, false);
}

#[test]
fn temperature_point_zero_one_layerwise_mass() {
    check(0.01, true);
}

/// A step far beyond stability (h·ω_max = 50) makes θ overflow: the chain ends as diverged at
/// the step it happened, with its epochs so far, not as an error.
#[test]
fn an_unstable_step_size_is_reported_as_divergence() {
    tch::manual_seed(1);
    let mut target = Gaussian::new(100, 0.1, 10.0, 2, 1.0);
    let settings =
        ChainSettings { lr: 25.0, momentum_decay: 0.9, batch_size: 1, layerwise_mass: false, precond_batches: 1 };
    let protocol = protocol(5, 100, 1.0);
    let theta = target.stationary(1.0);
    let out = chain(&mut target, &theta, "sym-euler", &protocol, &settings, &mut ());
    match out.status {
        ablate_engine::ChainStatus::Diverged { step, message } => {
            assert!(step > 0 && step < 500, "step {step}");
            assert!(message.contains("NaN/Inf"), "{message}");
        }
        other => panic!("expected divergence, got {other:?}"),
    }
}
