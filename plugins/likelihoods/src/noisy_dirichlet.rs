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
//!
//! **Step size.** This matches Kapoor et al.'s `NoisyDirichletLoss` term for term, but it is a
//! much sharper likelihood than the softmax: its curvature per logit is 1/σ_c², up to
//! 1/ln(1/(1+α_ε)+1) ≈ 1.45 for the true class (the softmax's is at most 1/4), and at α_ε = 0.01
//! the other logits are pulled to μ ≈ −6.9 with gradient ≈ 1.5 each. At the paper's lr 0.1
//! (β = 0.98) an MLP on MNIST therefore blows up in its first epoch and sits at chance with a
//! kinetic temperature 10³–10⁸ (the chain loop warns, or marks the chain diverged when it
//! overflows); lr 0.01 trains (MNIST 10k, MLP 784-100-100-10: 91% test accuracy after 4 epochs).
//! Kapoor et al. ran SGLD with step sizes 1e-7–1e-6 on the summed energy of 50k images with
//! momentum 0.9, i.e. an effective rate of 0.05–0.5 on the mean loss, against lr/(1 − β) = 5 at
//! lr 0.1, β = 0.98 here: use `sampler.lr` ≤ 0.01 with this likelihood.

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
