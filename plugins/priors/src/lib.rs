//! # Built-in priors of ablate
//!
//! Every prior here is a product of independent, identical one-dimensional densities over the
//! elements of the parameter tensors it covers:
//!
//! ```text
//! log p(θ) = Σ_{tensors t covered} Σ_{elements x of t} log p_t(x)
//! ```
//!
//! with **all normalising constants included** (so `log_prob` is a proper log density and can be
//! compared across priors and scales; constants do not change the gradient).
//!
//! | name | parameters | density of one element |
//! |---|---|---|
//! | `gaussian` | `scale` σ = 1 | N(0, σ²) |
//! | `he-gaussian` | `scale` s = 1 | N(0, σ²), σ = s·sqrt(2 / fan_in) per tensor |
//! | `laplace` | `scale` b = 1 | (1/2b)·exp(−\|x\|/b) |
//! | `student-t` | `df` ν = 3, `scale` s = 1 | Student-t with ν degrees of freedom, scale s |
//! | `cauchy` | `scale` s = 1 | 1 / (π s (1 + (x/s)²)) |
//! | `spike-slab` | `scale_spike` 0.001, `scale_slab` 0.4, `mass_spike` 0.5 | π N(0,s₁²) + (1−π) N(0,s₂²) |
//! | `flat` | — | improper constant: log p = 0, no draws |
//!
//! `correlated-normal` (`scale` σ = 1, `lengthscale` ℓ = 1, `jitter` 1e-4) is not a product over
//! elements: each convolution kernel's positions are jointly Gaussian with covariance
//! σ²·exp(−d²/(2ℓ²)) (independent over channel pairs; other tensors N(0, σ²)); see
//! [`correlated_normal`].
//!
//! The other exception is `empirical-bayes` (`min_scale` 0.01, no draws): N(0, σ̂²) per tensor with
//! σ̂² = mean(x²) re-estimated from the current parameters at every evaluation, which is not a
//! fixed (nor a proper) prior; see [`empirical_bayes`].
//!
//! **Roles.** Every proper prior has a `roles` parameter (a list among `weight`, `bias`, `norm`;
//! default `["weight", "bias"]`, which is the reference's `GaussianPriorFactory`: conv/dense
//! kernels and biases, while batch-norm / FRN scales and shifts get no prior). A tensor whose
//! role is not listed contributes 0 to `log_prob` (an improper flat prior on it) and `sample`
//! returns `None` for it (the host keeps its initial value).
//!
//! **Sampling** uses only the host's seeded streams: `randn_like` (standard normal) and
//! `rand_like` (uniform on [0, 1)), transformed by exact methods documented on each prior.
//! Uniforms are clamped to [ε, 1−ε] with ε = 1e-6 before a logarithm or a tangent, so that a draw
//! is never infinite (also on f32 devices); this truncates the law only on a set of probability
//! ≤ 2·10⁻⁶ (symmetrically, so no bias in location).
//!
//! **Output of `log_prob`.** A 0-d tensor attached to the autograd graph of the parameters. If no
//! tensor is covered (or for `flat`), it is `0·Σθ₀`: an exact zero whose gradient is zero, so
//! the host can differentiate every prior the same way. `log_prob` with no tensors at all is an
//! error.

use ablate_sdk::prelude::*;

pub mod cauchy;
pub mod correlated_normal;
pub mod empirical_bayes;
pub mod flat;
pub mod gaussian;
pub mod he_gaussian;
pub mod laplace;
pub mod spike_slab;
pub mod student_t;

pub use cauchy::Cauchy;
pub use correlated_normal::CorrelatedNormal;
pub use empirical_bayes::EmpiricalBayes;
pub use flat::Flat;
pub use gaussian::Gaussian;
pub use he_gaussian::HeGaussian;
pub use laplace::Laplace;
pub use spike_slab::SpikeSlab;
pub use student_t::StudentT;

ablate_sdk::export_plugin! {
    priors: [Gaussian, HeGaussian, Laplace, StudentT, Cauchy, SpikeSlab, Flat, EmpiricalBayes, CorrelatedNormal],
    likelihoods: [],
    integrators: [],
    noise: [],
}

pub use ablate_sdk::math::HALF_LN_2PI;

/// Clamp for uniforms before a logarithm or tangent (see the crate docs).
pub const UNIFORM_EPS: f64 = 1e-6;

/// The parameter roles a prior covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Roles(Vec<Role>);

impl Roles {
    pub const CHOICES: &'static [&'static str] = &["weight", "bias", "norm"];

    /// The `roles` parameter, default `["weight", "bias"]`.
    pub fn spec() -> ParamSpec {
        ParamSpec::strings(
            "roles",
            &["weight", "bias"],
            Self::CHOICES,
            "parameter roles this prior covers (weight, bias, norm); tensors of other roles \
             contribute 0 to log p (flat) and are not sampled. Default: weights and biases, as \
             the reference's GaussianPriorFactory (batch-norm/FRN parameters get no prior)",
        )
    }

    pub fn from_params(p: &Params) -> Result<Self, String> {
        let mut roles = Vec::new();
        for s in p.strings("roles") {
            let role = match s.as_str() {
                "weight" => Role::Weight,
                "bias" => Role::Bias,
                "norm" => Role::Norm,
                other => return Err(format!("unknown role `{other}`")),
            };
            if !roles.contains(&role) {
                roles.push(role);
            }
        }
        Ok(Self(roles))
    }

    pub fn all() -> Self {
        Self(vec![Role::Weight, Role::Bias, Role::Norm])
    }

    pub fn covers(&self, role: Role) -> bool {
        self.0.contains(&role)
    }
}

/// Number of elements of a tensor (1 for a 0-d tensor).
pub fn numel(t: &Tensor) -> f64 {
    t.shape().iter().product::<i64>() as f64
}

/// An exact zero attached to the graph of `params[0]` (zero gradient).
pub fn attached_zero<'o>(params: &[Tensor<'o>]) -> Result<Tensor<'o>, String> {
    let first = params.first().ok_or_else(|| "log_prob called with no parameter tensors".to_owned())?;
    Ok(first.sum().affine(0.0, 0.0))
}

/// ∇ log p per tensor: `per_tensor(x, info)` for covered tensors, zeros for the others.
pub fn grad_covered<'o>(
    roles: &Roles,
    ops: Ops<'o>,
    params: &[Tensor<'o>],
    infos: &[ParamInfo],
    mut per_tensor: impl FnMut(&Tensor<'o>, &ParamInfo) -> Result<Tensor<'o>, String>,
) -> Result<Option<Vec<Tensor<'o>>>, String> {
    if params.len() != infos.len() {
        return Err(format!("{} parameter tensors but {} descriptions", params.len(), infos.len()));
    }
    let grads = params
        .iter()
        .zip(infos)
        .map(|(x, info)| if roles.covers(info.role) { per_tensor(x, info) } else { Ok(ops.zeros_like(x)) })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some(grads))
}

/// Σ over covered tensors of `per_tensor(x, info)` (each a 0-d log density of the whole tensor).
pub fn sum_covered<'o>(
    roles: &Roles,
    params: &[Tensor<'o>],
    infos: &[ParamInfo],
    mut per_tensor: impl FnMut(&Tensor<'o>, &ParamInfo) -> Result<Tensor<'o>, String>,
) -> Result<Tensor<'o>, String> {
    if params.len() != infos.len() {
        return Err(format!("{} parameter tensors but {} descriptions", params.len(), infos.len()));
    }
    let mut acc: Option<Tensor<'o>> = None;
    for (x, info) in params.iter().zip(infos) {
        if !roles.covers(info.role) {
            continue;
        }
        let lp = per_tensor(x, info)?;
        acc = Some(match acc {
            None => lp,
            Some(a) => a + lp,
        });
    }
    match acc {
        Some(a) => Ok(a),
        None => attached_zero(params),
    }
}

pub use ablate_sdk::math::ln_gamma;

/// Uniform draws on [ε, 1−ε] shaped like `like`.
pub fn uniform_open<'o>(ops: Ops<'o>, like: &Tensor<'o>) -> Tensor<'o> {
    ops.rand_like(like).clamp(UNIFORM_EPS, 1.0 - UNIFORM_EPS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ln_gamma_matches_known_values() {
        let pi = std::f64::consts::PI;
        let cases = [
            (1.0, 0.0),
            (2.0, 0.0),
            (0.5, 0.5 * pi.ln()),
            (1.5, (0.5 * pi.sqrt()).ln()),
            (5.0, 24f64.ln()),
            (10.0, 362_880f64.ln()),
            (0.1, 2.252_712_651_734_206),
            (0.25, 1.288_022_524_698_077_5),
        ];
        for (x, want) in cases {
            let got = ln_gamma(x);
            assert!((got - want).abs() < 1e-12, "lnΓ({x}) = {got}, want {want}");
        }
    }
}
