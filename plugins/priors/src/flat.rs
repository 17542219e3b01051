//! `flat`: the improper flat prior p(θ) ∝ 1 (the reference's `FlatPriorFactory`).
//!
//! `log_prob` is exactly 0 (as `0·Σθ₀`, attached to the graph so its gradient is a zero tensor);
//! `sample` returns `None` for every tensor (an improper prior has no draws; the host keeps the
//! initial values). With this prior the posterior is the (tempered) likelihood alone.

use ablate_sdk::prelude::*;

use crate::attached_zero;

pub struct Flat;

impl Factory for Flat {
    const NAME: &'static str = "flat";
    const DESCRIPTION: &'static str = "improper flat prior: log p = 0, no prior draws";

    fn params() -> Vec<ParamSpec> {
        Vec::new()
    }

    fn new(_p: &Params) -> Result<Self, String> {
        Ok(Self)
    }
}

impl Prior for Flat {
    fn log_prob<'o>(&self, _ops: Ops<'o>, params: &[Tensor<'o>], infos: &[ParamInfo]) -> Result<Tensor<'o>, String> {
        if params.len() != infos.len() {
            return Err(format!("{} parameter tensors but {} descriptions", params.len(), infos.len()));
        }
        attached_zero(params)
    }

    fn sample<'o>(&self, _ops: Ops<'o>, _info: &ParamInfo, _like: &Tensor<'o>) -> Result<Option<Tensor<'o>>, String> {
        Ok(None)
    }

    /// Precision 0 everywhere (the limit σ → ∞): ∇ log p = 0, and the host skips the prior.
    fn isotropic_precision(&self, infos: &[ParamInfo]) -> Result<Option<Vec<f64>>, String> {
        Ok(Some(vec![0.0; infos.len()]))
    }
}
