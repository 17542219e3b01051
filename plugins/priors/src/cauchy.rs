//! `cauchy`: Cauchy prior with scale s (Student-t with ν = 1; the reference's
//! `CauchyRegularizer`, which its default factory puts on biases).
//!
//! ```text
//! p(x) = 1 / (π s (1 + (x/s)²)),   log p(θ) = Σ_covered [ −ln(π s) − ln(1 + (x/s)²) ]
//! ```
//! Draw by the inverse CDF: `x = s · tan(π (u − ½))`, u ~ U[ε, 1−ε], computed as sin/cos.
//! Quartiles ±s, median 0; no mean or variance.

use ablate_sdk::prelude::*;

use crate::{grad_covered, numel, sum_covered, uniform_open, Roles};

pub struct Cauchy {
    scale: f64,
    roles: Roles,
}

impl Factory for Cauchy {
    const NAME: &'static str = "cauchy";
    const DESCRIPTION: &'static str = "Cauchy prior 1/(π s (1 + (x/s)²)) (heavy tails)";

    fn params() -> Vec<ParamSpec> {
        vec![ParamSpec::float("scale", 1.0, "scale s (the quartiles are ±s)").at_least(1e-12), Roles::spec()]
    }

    fn new(p: &Params) -> Result<Self, String> {
        Ok(Self { scale: p.f64("scale"), roles: Roles::from_params(p)? })
    }
}

impl Prior for Cauchy {
    fn log_prob<'o>(&self, _ops: Ops<'o>, params: &[Tensor<'o>], infos: &[ParamInfo]) -> Result<Tensor<'o>, String> {
        let s = self.scale;
        sum_covered(&self.roles, params, infos, |x, _| {
            let m = numel(x);
            Ok(x.square().affine(1.0 / (s * s), 0.0).ln_1p().sum().affine(-1.0, -m * (std::f64::consts::PI * s).ln()))
        })
    }

    /// −2θ / (s² + θ²).
    fn grad_log_prob<'o>(
        &self,
        ops: Ops<'o>,
        params: &[Tensor<'o>],
        infos: &[ParamInfo],
    ) -> Result<Option<Vec<Tensor<'o>>>, String> {
        let s = self.scale;
        grad_covered(&self.roles, ops, params, infos, |x, _| Ok(x * -2.0 / x.square().affine(1.0, s * s)))
    }

    fn sample<'o>(&self, ops: Ops<'o>, info: &ParamInfo, like: &Tensor<'o>) -> Result<Option<Tensor<'o>>, String> {
        if !self.roles.covers(info.role) {
            return Ok(None);
        }
        let pi = std::f64::consts::PI;
        let angle = uniform_open(ops, like).affine(pi, -0.5 * pi);
        Ok(Some(angle.sin() / angle.cos() * self.scale))
    }
}
