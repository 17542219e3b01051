//! Sampler diagnostics per epoch (as the paper's reference code computes them).
//!
//! - Kinetic temperature per parameter tensor, T̂_K = (1/d_t) Σ m⊙M⁻¹m, and overall; at
//!   equilibrium d_t·T̂_K/T ~ χ²_{d_t}, so each tensor has a central 99% band
//!   [T·χ²_{0.005}/d_t, T·χ²_{0.995}/d_t]; the fraction of tensors inside should be ≈ 0.99.
//! - Configurational temperature T̂_C = (1/d) Σ θ·∇U(θ) = (n/d) Σ θ·ḡ, with ḡ the mean
//!   gradient of the per-example loss over the preconditioner batches (prior included).

use serde::{Deserialize, Serialize};

use crate::chi2;

/// Level of the per-tensor kinetic band (the reference's `hpd_level`).
pub const BAND_LEVEL: f64 = 0.99;

pub use ablate_records::TensorKinetic;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Kinetic {
    pub overall: f64,
    /// Fraction of tensors inside their band (NaN when the target temperature is 0).
    pub in_band_fraction: f64,
    pub per_tensor: Vec<TensorKinetic>,
}

/// Kinetic temperatures from per-tensor sums of m⊙M⁻¹m at target temperature `target`.
pub fn kinetic(names: &[String], dofs: &[i64], sums: &[f64], target: f64) -> Kinetic {
    let per_tensor: Vec<TensorKinetic> = names
        .iter()
        .zip(dofs)
        .zip(sums)
        .map(|((name, &dof), &sum)| {
            let temperature = sum / dof as f64;
            let band = if target > 0.0 { chi2::kinetic_band(dof as f64, target, BAND_LEVEL) } else { (0.0, 0.0) };
            TensorKinetic {
                name: name.clone(),
                dof,
                temperature,
                band,
                inside: band.0 <= temperature && temperature <= band.1,
            }
        })
        .collect();
    let total_dof: i64 = dofs.iter().sum();
    let overall = sums.iter().sum::<f64>() / total_dof as f64;
    let in_band_fraction = if target > 0.0 {
        per_tensor.iter().filter(|t| t.inside).count() as f64 / per_tensor.len().max(1) as f64
    } else {
        f64::NAN
    };
    Kinetic { overall, in_band_fraction, per_tensor }
}
