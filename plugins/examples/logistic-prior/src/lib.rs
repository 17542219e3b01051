//! A logistic prior on network weights: an example of an out-of-tree ablate plugin.
//!
//! p(x) = exp(−x/s) / (s·(1 + exp(−x/s))²), a symmetric prior with heavier tails than a
//! Gaussian of the same variance (Var = s²π²/3). In a stable form:
//!
//! log p(x) = −log s − |x|/s − 2·log(1 + exp(−|x|/s)).
//!
//! Samples by inverse CDF: x = s·log(u / (1 − u)), u ~ U(0, 1).

use ablate_sdk::prelude::*;

/// The logistic prior with scale `s`, on the tensors whose role is listed in `roles`.
pub struct Logistic {
    scale: f64,
    roles: Vec<String>,
}

impl Factory for Logistic {
    const NAME: &'static str = "logistic";
    const DESCRIPTION: &'static str = "logistic prior with scale s (variance s²π²/3) on weights and biases";

    fn params() -> Vec<ParamSpec> {
        vec![
            ParamSpec::float("scale", 1.0, "scale s of the logistic distribution").at_least(1e-12),
            ParamSpec::strings(
                "roles",
                &["weight", "bias"],
                &["weight", "bias", "norm"],
                "parameter roles the prior covers",
            ),
        ]
    }

    fn new(p: &Params) -> Result<Self, String> {
        Ok(Self { scale: p.f64("scale"), roles: p.strings("roles") })
    }
}

impl Logistic {
    fn covers(&self, info: &ParamInfo) -> bool {
        self.roles.iter().any(|r| r == info.role.as_str())
    }
}

impl Prior for Logistic {
    fn log_prob<'o>(&self, _ops: Ops<'o>, params: &[Tensor<'o>], infos: &[ParamInfo]) -> Result<Tensor<'o>, String> {
        let s = self.scale;
        let mut total: Option<Tensor<'o>> = None;
        for (theta, info) in params.iter().zip(infos) {
            // Uncovered tensors contribute 0 (kept in the graph so the gradient is defined).
            let term = if self.covers(info) {
                let a = theta.abs() / s;
                let per = -(&a) - (-(&a)).exp().ln_1p() * 2.0 - s.ln();
                per.sum()
            } else {
                (theta * 0.0).sum()
            };
            total = Some(match total {
                Some(t) => t + term,
                None => term,
            });
        }
        total.ok_or_else(|| "log_prob needs at least one parameter tensor".to_owned())
    }

    fn sample<'o>(&self, ops: Ops<'o>, info: &ParamInfo, like: &Tensor<'o>) -> Result<Option<Tensor<'o>>, String> {
        if !self.covers(info) {
            return Ok(None);
        }
        let u = ops.rand_like(like).clamp(1e-7, 1.0 - 1e-7);
        let one_minus = (&u * -1.0) + 1.0;
        Ok(Some((u / one_minus).ln() * self.scale))
    }
}

ablate_sdk::export_plugin! {
    priors: [Logistic],
    likelihoods: [],
    integrators: [],
    noise: [],
}
