//! `__NAME__`: an isotropic Gaussian prior N(0, scale²) on every weight and bias.
//!
//! log p(θ) = Σ_{weights, biases} [ −x²/(2 scale²) − ln scale − ½ ln 2π ]
//!
//! Normalisation-layer parameters (role `norm`) get no prior (they contribute 0).

use ablate_sdk::prelude::*;

const HALF_LN_2PI: f64 = 0.918_938_533_204_672_8;

pub struct __TYPE__ {
    scale: f64,
}

impl __TYPE__ {
    fn covers(role: Role) -> bool {
        matches!(role, Role::Weight | Role::Bias)
    }
}

impl Factory for __TYPE__ {
    const NAME: &'static str = "__NAME__";
    const DESCRIPTION: &'static str = "isotropic Gaussian N(0, scale²) on weights and biases";

    fn params() -> Vec<ParamSpec> {
        vec![ParamSpec::float("scale", 1.0, "standard deviation of every element").at_least(1e-12)]
    }

    fn new(p: &Params) -> Result<Self, String> {
        Ok(Self { scale: p.f64("scale") })
    }
}

impl Prior for __TYPE__ {
    fn log_prob<'o>(
        &self,
        _ops: Ops<'o>,
        params: &[Tensor<'o>],
        infos: &[ParamInfo],
    ) -> Result<Tensor<'o>, String> {
        let first = params.first().ok_or("log_prob called with no parameter tensors")?;
        let s = self.scale;
        // Start from an exact zero attached to the parameters' graph, so the host can always
        // differentiate the result.
        let mut total = first.sum().affine(0.0, 0.0);
        for (x, info) in params.iter().zip(infos) {
            if !Self::covers(info.role) {
                continue;
            }
            // The tensor's own element count (with a leading chain dimension in batched runs),
            // not `info.numel` (one chain's), keeps log p a sum over chains.
            let m = x.shape().iter().product::<i64>() as f64;
            total = total + x.square().sum().affine(-0.5 / (s * s), -m * (s.ln() + HALF_LN_2PI));
        }
        Ok(total)
    }

    fn sample<'o>(
        &self,
        ops: Ops<'o>,
        info: &ParamInfo,
        like: &Tensor<'o>,
    ) -> Result<Option<Tensor<'o>>, String> {
        if !Self::covers(info.role) {
            return Ok(None);
        }
        // Randomness only from the host's seeded stream: runs stay reproducible.
        Ok(Some(ops.randn_like(like) * self.scale))
    }

    /// ∇ log p in closed form: −x/scale² on covered tensors, 0 elsewhere. Optional (delete it
    /// and the host differentiates `log_prob`), but faster; it must equal ∇ of `log_prob`,
    /// which `cargo test` (the suite) and the host at run start both check.
    fn grad_log_prob<'o>(
        &self,
        ops: Ops<'o>,
        params: &[Tensor<'o>],
        infos: &[ParamInfo],
    ) -> Result<Option<Vec<Tensor<'o>>>, String> {
        let s = self.scale;
        let grads = params
            .iter()
            .zip(infos)
            .map(|(x, info)| if Self::covers(info.role) { x * (-1.0 / (s * s)) } else { ops.zeros_like(x) })
            .collect();
        Ok(Some(grads))
    }
}

ablate_sdk::export_plugin! {
    priors: [__TYPE__],
    likelihoods: [],
    integrators: [],
    noise: [],
}
