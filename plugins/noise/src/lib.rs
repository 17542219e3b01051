//! # Built-in gradient-noise models of ablate
//!
//! A noise model decides, each step, **which gradient estimate** the integrator sees
//! ([`NoiseModel::plan`]: the number of examples per gradient, 0 = the full training set) and
//! **how it is perturbed** ([`NoiseModel::transform`], in place on the flat gradient of the
//! per-example mean loss G̃ = mean NLL − (1/n)·log p(θ)).
//!
//! | name | gradient from | transform |
//! |---|---|---|
//! | `minibatch` | b = `batch_size` examples (0 = the configured `sampler.batch_size`) | none (unbiased) |
//! | `full-batch` | all n examples | none (no gradient noise) |
//! | `pretend-batch` | `batch_size` examples, epoch length from the configured batch | none |
//! | `gaussian-matched` | all n examples | + N(0, v), v the measured minibatch variance |
//! | `alpha-stable` | all n examples | + symmetric α-stable noise with v-matched scale |
//!
//! **Epochs and steps.** The host counts steps per epoch from the configured
//! `sampler.batch_size` B (⌊n / B⌋, like the reference's `steps_per_epoch`) whatever a plan
//! asks for; the plan changes only how many examples each gradient uses. The schedule (cycles,
//! temperature ramp, preconditioner re-estimation, members) is therefore identical across noise
//! models for one configuration.
//!
//! **Measured noise.** `gaussian-matched` and `alpha-stable` use the host's [`NoiseView`]:
//! `var_per_tensor` (default) or `var_elementwise`, the variance of a minibatch-mean gradient at
//! `stats.batch_size` (the configured batch), measured from the preconditioner batches of the
//! epoch. A `batch_size` parameter b > 0 rescales it to another batch by the 1/b law of a mean of
//! b i.i.d. per-example gradients: v_b = v · stats.batch_size / b (sampling without replacement
//! would add the factor (n−b)/(n−1); it is ignored, as b ≪ n).

use ablate_sdk::prelude::*;

pub mod alpha_stable;
pub mod full_batch;
pub mod gaussian_matched;
pub mod minibatch;
pub mod pretend_batch;

pub use alpha_stable::AlphaStable;
pub use full_batch::FullBatch;
pub use gaussian_matched::GaussianMatched;
pub use minibatch::Minibatch;
pub use pretend_batch::PretendBatch;

ablate_sdk::export_plugin! {
    priors: [],
    likelihoods: [],
    integrators: [],
    noise: [Minibatch, FullBatch, PretendBatch, GaussianMatched, AlphaStable],
}

/// Which measured variance a matched model injects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VarianceKind {
    /// `stats.var_per_tensor`: the mean variance of each parameter tensor, broadcast to its
    /// elements (the default; robust with few estimation batches).
    PerTensor,
    /// `stats.var_elementwise`: one variance per parameter (diagonal covariance).
    Elementwise,
}

/// The parameters shared by the matched noise models.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Matching {
    pub variance: VarianceKind,
    /// Target batch b (0 = the measured batch, no rescaling).
    pub batch_size: u64,
    /// Extra multiplier of the variance (1 = matched).
    pub variance_scale: f64,
}

impl Matching {
    pub fn specs() -> Vec<ParamSpec> {
        vec![
            ParamSpec::string(
                "variance",
                "per-tensor",
                &["per-tensor", "elementwise"],
                "which measured minibatch variance to match: per-tensor (stats.var_per_tensor, \
                 the mean over each parameter tensor) or elementwise (stats.var_elementwise)",
            ),
            ParamSpec::int(
                "batch_size",
                0,
                "batch b whose minibatch-mean gradient noise is imitated; 0 = the measured \
                 (configured) batch. Otherwise v_b = v·stats.batch_size/b",
            )
            .at_least(0.0),
            ParamSpec::float(
                "variance_scale",
                1.0,
                "multiplier of the injected variance (1 = matched; 0 = full-batch gradient)",
            )
            .at_least(0.0),
        ]
    }

    pub fn from_params(p: &Params) -> Self {
        Self {
            variance: match p.str("variance") {
                "elementwise" => VarianceKind::Elementwise,
                _ => VarianceKind::PerTensor,
            },
            batch_size: p.i64("batch_size").max(0) as u64,
            variance_scale: p.f64("variance_scale"),
        }
    }

    /// The factor multiplying the measured variance.
    pub fn factor(&self, measured_batch: u64) -> Result<f64, String> {
        let rescale = if self.batch_size == 0 || self.batch_size == measured_batch {
            1.0
        } else if measured_batch == 0 {
            return Err("no measured gradient noise yet (stats.batch_size = 0): cannot rescale it".to_owned());
        } else {
            measured_batch as f64 / self.batch_size as f64
        };
        Ok(rescale * self.variance_scale)
    }

    /// The variance v to match, flat like the gradient, times [`Self::factor`].
    pub fn target_variance<'o>(&self, stats: &NoiseView<'o>) -> Result<Tensor<'o>, String> {
        let v = match self.variance {
            VarianceKind::PerTensor => &stats.var_per_tensor,
            VarianceKind::Elementwise => &stats.var_elementwise,
        };
        // relu: a measured variance can be a rounding-negative tiny number.
        Ok(v.relu() * self.factor(stats.batch_size)?)
    }
}
