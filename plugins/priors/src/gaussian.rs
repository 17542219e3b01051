//! `gaussian`: isotropic N(0, σ²) on every covered element (the paper's N(0, I) with σ = 1).
//!
//! ```text
//! log p(θ) = Σ_covered [ −x²/(2σ²) − ln σ − ½ ln(2π) ]
//! ```
//! Per tensor with m elements: `−Σx²/(2σ²) − m (ln σ + ½ ln 2π)`.
//!
//! Draw: `σ·ξ` with ξ ~ N(0, 1) from `randn_like`.

use ablate_sdk::prelude::*;

use crate::{grad_covered, numel, sum_covered, Roles, HALF_LN_2PI};

pub struct Gaussian {
    scale: f64,
    roles: Roles,
}

impl Gaussian {
    pub fn scale(&self) -> f64 {
        self.scale
    }
}

/// log density of a whole tensor under N(0, σ²) elementwise.
pub(crate) fn gaussian_log_prob<'o>(x: &Tensor<'o>, sigma: f64) -> Tensor<'o> {
    let m = numel(x);
    x.square().sum().affine(-0.5 / (sigma * sigma), -m * (sigma.ln() + HALF_LN_2PI))
}

impl Factory for Gaussian {
    const NAME: &'static str = "gaussian";
    const DESCRIPTION: &'static str =
        "isotropic Gaussian N(0, scale²) on the covered tensors (the paper's N(0, I) prior)";

    fn params() -> Vec<ParamSpec> {
        vec![ParamSpec::float("scale", 1.0, "standard deviation σ of every element").at_least(1e-12), Roles::spec()]
    }

    fn new(p: &Params) -> Result<Self, String> {
        Ok(Self { scale: p.f64("scale"), roles: Roles::from_params(p)? })
    }
}

impl Prior for Gaussian {
    fn log_prob<'o>(&self, _ops: Ops<'o>, params: &[Tensor<'o>], infos: &[ParamInfo]) -> Result<Tensor<'o>, String> {
        sum_covered(&self.roles, params, infos, |x, _| Ok(gaussian_log_prob(x, self.scale)))
    }

    /// −θ/σ².
    fn grad_log_prob<'o>(
        &self,
        ops: Ops<'o>,
        params: &[Tensor<'o>],
        infos: &[ParamInfo],
    ) -> Result<Option<Vec<Tensor<'o>>>, String> {
        let c = -1.0 / (self.scale * self.scale);
        grad_covered(&self.roles, ops, params, infos, |x, _| Ok(x * c))
    }

    fn isotropic_precision(&self, infos: &[ParamInfo]) -> Result<Option<Vec<f64>>, String> {
        let precision = 1.0 / (self.scale * self.scale);
        Ok(Some(infos.iter().map(|info| if self.roles.covers(info.role) { precision } else { 0.0 }).collect()))
    }

    fn sample<'o>(&self, ops: Ops<'o>, info: &ParamInfo, like: &Tensor<'o>) -> Result<Option<Tensor<'o>>, String> {
        if !self.roles.covers(info.role) {
            return Ok(None);
        }
        Ok(Some(ops.randn_like(like) * self.scale))
    }
}
