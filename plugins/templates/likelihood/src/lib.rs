//! `__NAME__`: the categorical (softmax) likelihood of a clean model: no normalisation layers,
//! no dropout, no augmentation, n = number of training examples.
//!
//! NLL of a batch = −(1/m) Σᵢ log softmax(logitsᵢ)[yᵢ].

use ablate_sdk::prelude::*;

pub struct __TYPE__ {
    dropout: f64,
}

impl Factory for __TYPE__ {
    const NAME: &'static str = "__NAME__";
    const DESCRIPTION: &'static str = "categorical softmax likelihood of a clean model (example plugin)";

    fn params() -> Vec<ParamSpec> {
        vec![ParamSpec::float("dropout", 0.0, "dropout rate of the host model (0 = none)").range(0.0, 0.95)]
    }

    fn new(p: &Params) -> Result<Self, String> {
        Ok(Self { dropout: p.f64("dropout") })
    }
}

impl Likelihood for __TYPE__ {
    fn model(&self) -> ModelToggles {
        ModelToggles { norm: NormKind::None, dropout: self.dropout }
    }

    fn effective_n(&self, examples: u64) -> f64 {
        examples as f64
    }

    fn augment<'o>(&mut self, _ops: Ops<'o>, _images: &Tensor<'o>) -> Result<Option<Tensor<'o>>, String> {
        Ok(None)
    }

    fn nll<'o>(&self, _ops: Ops<'o>, logits: &Tensor<'o>, labels: &Tensor<'o>) -> Result<Tensor<'o>, String> {
        let (ls, ys) = (logits.shape(), labels.shape());
        if ls.len() != 2 || ys.len() != 1 || ls[0] != ys[0] {
            return Err(format!("expected logits (m, classes) and labels (m), got {ls:?} and {ys:?}"));
        }
        Ok(logits.log_softmax(1).gather_rows(labels).mean().affine(-1.0, 0.0))
    }
}

ablate_sdk::export_plugin! {
    priors: [],
    likelihoods: [__TYPE__],
    integrators: [],
    noise: [],
}
