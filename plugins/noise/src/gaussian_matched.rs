//! `gaussian-matched`: full-batch gradient plus Gaussian noise of the measured minibatch size.
//!
//! ```text
//! g ← ∇G̃_full + sqrt(v) ⊙ ξ,   ξ ~ N(0, I),
//! v = variance_scale · (stats.batch_size / b if batch_size = b > 0 else 1) · var
//! ```
//! where `var` is `stats.var_per_tensor` (default: the variance of a minibatch-mean gradient at
//! the configured batch, averaged within each parameter tensor) or `stats.var_elementwise`.
//! The result has mean ∇G̃_full (unbiased) and per-element variance v: the first two moments of
//! a minibatch gradient at the configured batch, but Gaussian and independent across elements
//! and steps. Comparing it with `minibatch` tests whether the *shape* (non-Gaussianity,
//! correlations) of minibatch noise matters; with `full-batch`, whether its size does.

use ablate_sdk::prelude::*;

use crate::Matching;

pub struct GaussianMatched {
    matching: Matching,
}

impl Factory for GaussianMatched {
    const NAME: &'static str = "gaussian-matched";
    const DESCRIPTION: &'static str = "full-batch gradient + Gaussian noise with the measured minibatch variance";

    fn params() -> Vec<ParamSpec> {
        Matching::specs()
    }

    fn new(p: &Params) -> Result<Self, String> {
        Ok(Self { matching: Matching::from_params(p) })
    }
}

impl NoiseModel for GaussianMatched {
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
        let sd = self.matching.target_variance(stats)?.sqrt();
        let noise = ops.randn_like(grad) * sd;
        grad.axpby(1.0, &noise, 1.0);
        Ok(())
    }
}
