//! `he-gaussian`: fan-in scaled Gaussian (He et al. 2015; the reference's `HeNormalRegularizer`).
//!
//! Each covered tensor t gets its own standard deviation
//! ```text
//! σ_t = scale · sqrt(2 / fan_in_t)
//! log p(θ) = Σ_t Σ_{x ∈ t} [ −x²/(2σ_t²) − ln σ_t − ½ ln(2π) ]
//! ```
//! `fan_in` comes from the host's [`ParamInfo`] (Keras convention: input channels × receptive
//! field; for a bias, the host reports the fan-in of its layer). A covered tensor with
//! `fan_in ≤ 0` is an error.
//!
//! Draw: `σ_t·ξ`, ξ ~ N(0, 1).

use ablate_sdk::prelude::*;

use crate::gaussian::gaussian_log_prob;
use crate::{grad_covered, sum_covered, Roles};

pub struct HeGaussian {
    scale: f64,
    roles: Roles,
}

impl HeGaussian {
    /// σ of one tensor.
    pub fn sigma(&self, info: &ParamInfo) -> Result<f64, String> {
        if info.fan_in <= 0 {
            return Err(format!(
                "tensor `{}` has fan_in {}; he-gaussian needs a positive fan-in",
                info.name, info.fan_in
            ));
        }
        Ok(self.scale * (2.0 / info.fan_in as f64).sqrt())
    }
}

impl Factory for HeGaussian {
    const NAME: &'static str = "he-gaussian";
    const DESCRIPTION: &'static str = "He-scaled Gaussian N(0, σ²) with σ = scale·sqrt(2/fan_in) per tensor";

    fn params() -> Vec<ParamSpec> {
        vec![ParamSpec::float("scale", 1.0, "multiplier s of σ = s·sqrt(2/fan_in)").at_least(1e-12), Roles::spec()]
    }

    fn new(p: &Params) -> Result<Self, String> {
        Ok(Self { scale: p.f64("scale"), roles: Roles::from_params(p)? })
    }
}

impl Prior for HeGaussian {
    fn log_prob<'o>(&self, _ops: Ops<'o>, params: &[Tensor<'o>], infos: &[ParamInfo]) -> Result<Tensor<'o>, String> {
        sum_covered(&self.roles, params, infos, |x, info| Ok(gaussian_log_prob(x, self.sigma(info)?)))
    }

    /// −θ/σ² with the tensor's own σ.
    fn grad_log_prob<'o>(
        &self,
        ops: Ops<'o>,
        params: &[Tensor<'o>],
        infos: &[ParamInfo],
    ) -> Result<Option<Vec<Tensor<'o>>>, String> {
        grad_covered(&self.roles, ops, params, infos, |x, info| {
            let s = self.sigma(info)?;
            Ok(x * (-1.0 / (s * s)))
        })
    }

    fn isotropic_precision(&self, infos: &[ParamInfo]) -> Result<Option<Vec<f64>>, String> {
        let precision = |info: &ParamInfo| -> Result<f64, String> {
            if !self.roles.covers(info.role) {
                return Ok(0.0);
            }
            let s = self.sigma(info)?;
            Ok(1.0 / (s * s))
        };
        infos.iter().map(precision).collect::<Result<Vec<_>, _>>().map(Some)
    }

    fn sample<'o>(&self, ops: Ops<'o>, info: &ParamInfo, like: &Tensor<'o>) -> Result<Option<Tensor<'o>>, String> {
        if !self.roles.covers(info.role) {
            return Ok(None);
        }
        Ok(Some(ops.randn_like(like) * self.sigma(info)?))
    }
}
