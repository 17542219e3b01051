//! `laplace`: Laplace (double-exponential) prior with scale b.
//!
//! ```text
//! p(x) = exp(−|x|/b) / (2b),   log p(θ) = Σ_covered [ −|x|/b − ln(2b) ]
//! ```
//! Mean 0, variance 2b² (the reference's `LaplaceRegularizer(stddev)` uses b = stddev/√2).
//!
//! Draw by the inverse CDF: with u ~ U[ε, 1−ε] and v = u − ½,
//! `x = −b · sign(v) · ln(1 − 2|v|)`.

use ablate_sdk::prelude::*;

use crate::{grad_covered, numel, sum_covered, uniform_open, Roles};

pub struct Laplace {
    scale: f64,
    roles: Roles,
}

impl Factory for Laplace {
    const NAME: &'static str = "laplace";
    const DESCRIPTION: &'static str = "Laplace prior exp(−|x|/b)/(2b) (variance 2b²)";

    fn params() -> Vec<ParamSpec> {
        vec![ParamSpec::float("scale", 1.0, "scale b (standard deviation √2·b)").at_least(1e-12), Roles::spec()]
    }

    fn new(p: &Params) -> Result<Self, String> {
        Ok(Self { scale: p.f64("scale"), roles: Roles::from_params(p)? })
    }
}

impl Prior for Laplace {
    fn log_prob<'o>(&self, _ops: Ops<'o>, params: &[Tensor<'o>], infos: &[ParamInfo]) -> Result<Tensor<'o>, String> {
        let b = self.scale;
        sum_covered(&self.roles, params, infos, |x, _| {
            let m = numel(x);
            Ok(x.abs().sum().affine(-1.0 / b, -m * (2.0 * b).ln()))
        })
    }

    /// −sign(θ)/b (0 at θ = 0, autograd's subgradient of |θ| too).
    fn grad_log_prob<'o>(
        &self,
        ops: Ops<'o>,
        params: &[Tensor<'o>],
        infos: &[ParamInfo],
    ) -> Result<Option<Vec<Tensor<'o>>>, String> {
        let b = self.scale;
        grad_covered(&self.roles, ops, params, infos, |x, _| Ok(x.sign() * (-1.0 / b)))
    }

    fn sample<'o>(&self, ops: Ops<'o>, info: &ParamInfo, like: &Tensor<'o>) -> Result<Option<Tensor<'o>>, String> {
        if !self.roles.covers(info.role) {
            return Ok(None);
        }
        let v = uniform_open(ops, like).affine(1.0, -0.5);
        let magnitude = v.abs().affine(-2.0, 1.0).ln(); // ln(1 − 2|v|) ≤ 0
        Ok(Some(magnitude * v.sign() * (-self.scale)))
    }
}
