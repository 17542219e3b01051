//! The curated likelihood of Aitchison (2021, "A statistical theory of cold posteriors in deep
//! neural networks", ICLR): `curated` with parameter S (`annotators`, integer ≥ 1).
//!
//! **Generative model of curation.** S annotators label an input x independently, each drawing
//! a label from the network's p(y|x, θ). If they all agree, the example enters the dataset with
//! that label (consensus); otherwise it is left out (no consensus). So
//!
//! ```text
//! P(Y = y    | x, θ) = p(y|x, θ)^S              (consensus on y)
//! P(Y = none | x, θ) = 1 − Σ_c p(c|x, θ)^S      (no consensus: not in the dataset)
//! ```
//! A curated dataset holds only consensus examples, so its log-likelihood is
//! `Σ_i S·log p(y_i|x_i, θ)`: the likelihood of a dataset in which each example was labelled S
//! times with the same label (an "effective dataset" S times larger), i.e. a likelihood
//! tempered by λ = S (T_lik = 1/S) with the prior untempered. The no-consensus outcomes are not
//! observed and do not enter; p(y|x)^S is not normalised over the labels (its missing mass is
//! the probability of no consensus), so this is the likelihood of the curated data, not of an
//! S-sharper classifier.
//!
//! **Here.** NLL = S · (batch mean softmax cross-entropy), computed as the `categorical`
//! likelihood's NLL times S; the effective n stays the number of training examples, so the step
//! size h = sqrt(ℓ/n) is the one of `categorical` and `curated` with S equals `tempered` with
//! `likelihood_temperature = 1/S` (and S = 1 equals `categorical` exactly). The model is clean
//! (no normalisation, no dropout, no augmentation). Predictions use the host's softmax, as the
//! paper does (it evaluates the network's p(y|x), not the consensus probability).

use ablate_sdk::prelude::*;

/// `curated`: the likelihood of labels agreed by S annotators, p(y|x)^S (see the module docs).
pub struct Curated {
    annotators: i64,
}

impl Curated {
    /// S, the number of annotators who agree on every label.
    pub fn annotators(&self) -> i64 {
        self.annotators
    }
}

impl Factory for Curated {
    const NAME: &'static str = "curated";
    const DESCRIPTION: &'static str =
        "dataset curation (Aitchison 2021): labels agreed by S annotators, NLL = S·(-log p(y|x))";

    fn params() -> Vec<ParamSpec> {
        vec![ParamSpec::int(
            "annotators",
            1,
            "S, the number of annotators who all agree on each label: log-likelihood S·log p(y|x) \
             (S = 1 is the categorical likelihood; Aitchison 2021)",
        )
        .range(1.0, 1000.0)]
    }

    fn new(p: &Params) -> Result<Self, String> {
        let annotators = p.i64("annotators");
        if annotators < 1 {
            return Err(format!("annotators must be an integer >= 1, got {annotators}"));
        }
        Ok(Self { annotators })
    }
}

impl Likelihood for Curated {
    fn model(&self) -> ModelToggles {
        ModelToggles { norm: NormKind::None, dropout: 0.0 }
    }

    fn effective_n(&self, examples: u64) -> f64 {
        examples as f64
    }

    fn augment<'o>(&mut self, _ops: Ops<'o>, _images: &Tensor<'o>) -> Result<Option<Tensor<'o>>, String> {
        Ok(None)
    }

    fn nll<'o>(&self, _ops: Ops<'o>, logits: &Tensor<'o>, labels: &Tensor<'o>) -> Result<Tensor<'o>, String> {
        let (ls, ys) = (logits.shape(), labels.shape());
        match (ls.as_slice(), ys.as_slice()) {
            ([m, c], [my]) if m == my && *m > 0 && *c > 0 => {}
            _ => return Err(format!("need logits (m, C) and labels (m) with m, C > 0, got {ls:?} and {ys:?}")),
        }
        // The same kernels as `categorical` (whose scale is -1/T_lik = -1): S = 1 is bitwise equal.
        Ok(logits.log_softmax(1).gather_rows(labels).mean().affine(-(self.annotators as f64), 0.0))
    }
}
