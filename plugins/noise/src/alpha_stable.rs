//! `alpha-stable`: full-batch gradient plus symmetric α-stable noise (the heavy-tailed model of
//! minibatch noise of Simsekli et al. 2019).
//!
//! ```text
//! g ← ∇G̃_full + c ⊙ S,   S ~ SαS(1) i.i.d.,   c = sqrt(v / 2)
//! ```
//! SαS(1) is the standard symmetric α-stable law, characteristic function
//! E[exp(i t S)] = exp(−|t|^α), α ∈ (0, 2]; c·S has characteristic function exp(−|c t|^α).
//! v is the matched variance exactly as in `gaussian-matched` (measured minibatch variance,
//! `variance`, `batch_size`, `variance_scale`).
//!
//! **Matching rule.** For α < 2 the variance is infinite, so the noise is matched through its
//! scale: c is the scale at which the α = 2 member, SαS(1) = N(0, 2), has variance v
//! (c² · 2 = v). Hence α = 2 reduces exactly to `gaussian-matched` (N(0, v)), and for every α
//! the noise has the same characteristic-function scale: |t| = 1/c is where
//! E[cos(t·noise)] = e⁻¹ for all α. The noise is symmetric, so the estimate is unbiased for
//! α > 1 (the mean exists and is 0) and median-unbiased for α ≤ 1.
//!
//! **Draw: Chambers–Mallows–Stuck** (1976; Weron 1996 form) from uniforms only:
//! U = π(u₁ − ½) ~ U(−π/2, π/2), W = −ln u₂ ~ Exp(1), with u₁, u₂ ~ U[ε, 1−ε] (ε = 1e-6,
//! keeping cos U > 0 and W > 0 also in f32: truncation on a set of probability ≤ 4·10⁻⁶):
//! ```text
//! S = sin(αU) / cos(U)^(1/α) · ( cos((1−α)U) / W )^((1−α)/α)
//! ```
//! α = 1 gives tan U (Cauchy); α = 2 gives 2 sin U · sqrt(W) ~ N(0, 2) (Box–Muller in polar form).

use ablate_sdk::prelude::*;

use crate::Matching;

/// Clamp of uniforms before logarithms / at the ends of (−π/2, π/2).
pub const UNIFORM_EPS: f64 = 1e-6;

pub struct AlphaStable {
    alpha: f64,
    matching: Matching,
}

/// Standard SαS(1) draws shaped like `like` (Chambers–Mallows–Stuck).
pub fn standard_sas<'o>(ops: Ops<'o>, like: &Tensor<'o>, alpha: f64) -> Tensor<'o> {
    let pi = std::f64::consts::PI;
    let u = ops.rand_like(like).clamp(UNIFORM_EPS, 1.0 - UNIFORM_EPS).affine(pi, -0.5 * pi);
    let w = -ops.rand_like(like).clamp(UNIFORM_EPS, 1.0 - UNIFORM_EPS).ln();
    if alpha == 2.0 {
        return u.sin() * w.sqrt() * 2.0;
    }
    if alpha == 1.0 {
        return u.sin() / u.cos();
    }
    let first = u.affine(alpha, 0.0).sin() * u.cos().powf(-1.0 / alpha);
    let second = (u.affine(1.0 - alpha, 0.0).cos() / w).powf((1.0 - alpha) / alpha);
    first * second
}

impl AlphaStable {
    pub fn alpha(&self) -> f64 {
        self.alpha
    }
}

impl Factory for AlphaStable {
    const NAME: &'static str = "alpha-stable";
    const DESCRIPTION: &'static str =
        "full-batch gradient + symmetric α-stable noise of matched scale (α = 2: Gaussian)";

    fn params() -> Vec<ParamSpec> {
        let mut specs = vec![ParamSpec::float(
            "alpha",
            1.5,
            "tail index α ∈ (0, 2]: 2 = Gaussian (= gaussian-matched), 1 = Cauchy; smaller is \
             heavier-tailed (below ~0.3 draws overflow easily)",
        )
        .range(1e-3, 2.0)];
        specs.extend(Matching::specs());
        specs
    }

    fn new(p: &Params) -> Result<Self, String> {
        let alpha = p.f64("alpha");
        if !(alpha > 0.0 && alpha <= 2.0) {
            return Err(format!("alpha must be in (0, 2], got {alpha}"));
        }
        Ok(Self { alpha, matching: Matching::from_params(p) })
    }
}

impl NoiseModel for AlphaStable {
    fn plan(&self, _config_batch: u64, _n: u64) -> GradientPlan {
        GradientPlan { gradient_batch: 0 }
    }

    fn transform<'o>(
        &mut self,
        ops: Ops<'o>,
        _ctx: &StepCtx,
        grad: &Tensor<'o>,
        stats: &NoiseView<'o>,
    ) -> Result<(), String> {
        let c = self.matching.target_variance(stats)?.affine(0.5, 0.0).sqrt();
        let noise = standard_sas(ops, grad, self.alpha) * c;
        grad.axpby(1.0, &noise, 1.0);
        Ok(())
    }
}
