//! The noisy Dirichlet likelihood (Kapoor et al. 2022, "On uncertainty, tempering, and data
//! augmentation in Bayesian classification"; the Gaussian approximation of Milios et al. 2018).
//!
//! The one-hot target of each example is turned into Dirichlet concentrations
//! α_c = 1[c = y] + α_ε (α_ε = `dirichlet_noise`, "label noise" that makes the model accept
//! less-than-certain labels). A Dirichlet(α) vector is a normalised vector of independent
//! Gamma(α_c, 1) variables, and each Gamma is approximated by a log-normal with the same mean
//! and variance:
//!
//! ```text
//! σ_c² = ln(1/α_c + 1),   μ_c = ln α_c − σ_c²/2
//! ```
//! The network's logits f_c(x) are the means of these log-Gamma variables, so the likelihood is
//! a heteroscedastic Gaussian regression of the logits onto the transformed targets:
//!
//! ```text
//! −log p(y | x, θ) = Σ_c [ (f_c − μ_c)² / (2σ_c²) + ½ ln(2π σ_c²) ]
//! NLL = (1/m) Σ_i −log p(y_i | x_i, θ) / T_lik
//! ```
//! (constant included, so the NLL is a proper Gaussian log density of the transformed targets).
//! Since α_c takes only two values (1 + α_ε for the true class, α_ε otherwise), μ and 1/(2σ²)
//! are affine in the one-hot matrix and cost two kernels. Predictions use the host's softmax of
//! the logits, as in Kapoor et al. (the logits are log-Gamma means, so softmax(f) is the
//! normalised geometric mean of the Gammas).

use ablate_sdk::prelude::*;

/// The two target values and the per-example log normaliser for C classes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Targets {
    /// μ for the true class and for the others.
    pub mu_true: f64,
    pub mu_other: f64,
    /// σ² for the true class and for the others.
    pub var_true: f64,
    pub var_other: f64,
    /// Σ_c ½ ln(2π σ_c²) of one example.
    pub log_norm: f64,
}

impl Targets {
    pub fn new(noise: f64, classes: i64) -> Self {
        let lognormal = |alpha: f64| {
            let var = (1.0 / alpha).ln_1p();
            (alpha.ln() - 0.5 * var, var)
        };
        let (mu_true, var_true) = lognormal(1.0 + noise);
        let (mu_other, var_other) = lognormal(noise);
        let two_pi = 2.0 * std::f64::consts::PI;
        let log_norm = 0.5 * (two_pi * var_true).ln() + 0.5 * (classes - 1) as f64 * (two_pi * var_other).ln();
        Self { mu_true, mu_other, var_true, var_other, log_norm }
    }

    /// Σ_i Σ_c (f_ic − μ_ic)² / (2σ_ic²) over the batch (0-d).
    pub fn weighted_square_sum<'o>(
        &self,
        ops: Ops<'o>,
        logits: &Tensor<'o>,
        labels: &Tensor<'o>,
        classes: i64,
    ) -> Tensor<'o> {
        let one_hot = ops.one_hot(labels, classes);
        let mu = one_hot.affine(self.mu_true - self.mu_other, self.mu_other);
        let (k_true, k_other) = (0.5 / self.var_true, 0.5 / self.var_other);
        let weight = one_hot.affine(k_true - k_other, k_other);
        ((logits - mu).square() * weight).sum()
    }
}
