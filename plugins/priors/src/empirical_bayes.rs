//! `empirical-bayes`: a Gaussian N(0, σ̂²) per parameter tensor whose variance is re-estimated
//! from the current parameters at every evaluation. **Not a proper prior.**
//!
//! The plugin interface has no schedule hook, so the re-estimation happens inside `log_prob`
//! (every step): for each covered tensor x with m elements (per chain when the host stacks K
//! chains along a leading dimension),
//!
//! ```text
//! σ̂² = max(mean(x²), min_scale²)          (the maximum-likelihood variance of N(0, σ²))
//! log p(x) = −Σ x²/(2σ̂²) − (m/2) ln σ̂² − (m/2) ln 2π,   σ̂² held constant (stop-gradient)
//! ∇ log p(x) = −x/σ̂²
//! ```
//! σ̂² is copied outside autograd (stop-gradient), so the gradient is that of a Gaussian with a
//! fixed variance equal to the current estimate. Because σ̂² = mean(x²) maximises log p over σ²,
//! this is also the derivative of the value itself where the floor is inactive (envelope
//! theorem): the value is the profile log-likelihood −(m/2)(1 + ln 2πσ̂²), i.e. p(x) ∝ ‖x‖^(−m)
//! per tensor, which is not normalisable (improper), and its scale follows the parameters
//! instead of being fixed before the data. Hence "not a proper prior": there is nothing to draw
//! from, so `sample` returns `None` (as `flat` does: the host keeps the initial values, and
//! the prior predictive check has no draws). "Per layer" here means per parameter tensor: a
//! layer's weight and bias get their own σ̂².
//!
//! **Batched chains.** The engine passes each tensor as [K, ...shape] with the unstacked
//! description, and σ̂² is estimated per chain, so log p is a sum over chains (tested).
//!
//! `min_scale` floors σ̂ (default 0.01) so that a tensor at zero (biases at initialisation) does
//! not get an infinitely narrow prior; the floor still pins zero-initialised biases near zero,
//! so `roles: ["weight"]` is a sensible choice.

use ablate_sdk::prelude::*;

use crate::{grad_covered, numel, sum_covered, Roles, HALF_LN_2PI};

pub struct EmpiricalBayes {
    min_scale: f64,
    roles: Roles,
}

impl EmpiricalBayes {
    /// σ̂² of `x` (per chain when `x` has one more dimension than `info.shape`), floored and
    /// detached from autograd; shaped to broadcast against `x`.
    fn variance<'o>(&self, ops: Ops<'o>, x: &Tensor<'o>, info: &ParamInfo) -> Result<Tensor<'o>, String> {
        let dims = x.shape().len();
        let own = info.shape.len();
        let sq = x.square();
        let v = if dims == own {
            sq.mean()
        } else if dims == own + 1 {
            let mut v = sq;
            for d in (1..dims).rev() {
                v = v.mean_dim(d as i64, true);
            }
            v
        } else {
            return Err(format!(
                "empirical-bayes: tensor `{}` has shape {:?}, expected {:?} or one leading chain dimension",
                info.name,
                x.shape(),
                info.shape.as_slice()
            ));
        };
        let floored = v.clamp(self.min_scale * self.min_scale, f64::INFINITY);
        let constant = ops.full_like(&floored, 0.0);
        constant.set(&floored);
        Ok(constant)
    }
}

impl Factory for EmpiricalBayes {
    const NAME: &'static str = "empirical-bayes";
    const DESCRIPTION: &'static str =
        "Gaussian with per-tensor variance re-estimated from the current parameters each step (not a proper prior)";

    fn params() -> Vec<ParamSpec> {
        vec![ParamSpec::float("min_scale", 0.01, "floor of the estimated σ̂").at_least(1e-12), Roles::spec()]
    }

    fn new(p: &Params) -> Result<Self, String> {
        Ok(Self { min_scale: p.f64("min_scale"), roles: Roles::from_params(p)? })
    }
}

impl Prior for EmpiricalBayes {
    fn log_prob<'o>(&self, ops: Ops<'o>, params: &[Tensor<'o>], infos: &[ParamInfo]) -> Result<Tensor<'o>, String> {
        sum_covered(&self.roles, params, infos, |x, info| {
            let v = self.variance(ops, x, info)?;
            let m_chain = info.shape.iter().product::<i64>() as f64;
            let quad = (x.square() * v.recip()).sum().affine(-0.5, 0.0);
            let norm = v.ln().sum().affine(-0.5 * m_chain, -numel(x) * HALF_LN_2PI);
            Ok(quad + norm)
        })
    }

    /// −x/σ̂² with σ̂² held constant.
    fn grad_log_prob<'o>(
        &self,
        ops: Ops<'o>,
        params: &[Tensor<'o>],
        infos: &[ParamInfo],
    ) -> Result<Option<Vec<Tensor<'o>>>, String> {
        grad_covered(&self.roles, ops, params, infos, |x, info| {
            let v = self.variance(ops, x, info)?;
            Ok((x * v.recip()).affine(-1.0, 0.0))
        })
    }

    /// No draws: an improper prior that depends on the parameters has no distribution to draw from.
    fn sample<'o>(&self, _ops: Ops<'o>, _info: &ParamInfo, _like: &Tensor<'o>) -> Result<Option<Tensor<'o>>, String> {
        Ok(None)
    }
}
