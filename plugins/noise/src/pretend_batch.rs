//! `pretend-batch`: the reference's `--pretend_batch_size` batch-size ablation.
//!
//! In `train.py`, real minibatches have `--batch_size` examples while every epoch/cycle length
//! is computed with `--pretend_batch_size`: `steps_per_epoch = n_orig // pretend_batch_size`.
//! Here the roles map as follows:
//!
//! - the **configured** `sampler.batch_size` B plays `--pretend_batch_size`: the host takes
//!   ⌊n/B⌋ steps per epoch, so the cycle length, temperature ramp, sampling points, step size
//!   h = sqrt(ℓ/n) and the total number of SDE steps are those of a run at batch B;
//! - this plugin's `batch_size` b plays `--batch_size`: each gradient is the mean over b examples
//!   (an unbiased estimate whose noise variance scales like 1/b).
//!
//! So varying b with B fixed changes only the gradient noise, never the number of steps or the
//! schedule; with b = B it is exactly `minibatch`. (One "epoch" then visits b·⌊n/B⌋ examples, not
//! n.) The host's preconditioner/noise statistics keep using the configured batch B.

use ablate_sdk::prelude::*;

pub struct PretendBatch {
    batch_size: u64,
}

impl Factory for PretendBatch {
    const NAME: &'static str = "pretend-batch";
    const DESCRIPTION: &'static str = "gradients from `batch_size` examples, steps per epoch from the configured batch";

    fn params() -> Vec<ParamSpec> {
        vec![ParamSpec::int(
            "batch_size",
            128,
            "examples per gradient b (the reference's --batch_size; the configured \
             sampler.batch_size acts as --pretend_batch_size)",
        )
        .at_least(1.0)]
    }

    fn new(p: &Params) -> Result<Self, String> {
        Ok(Self { batch_size: p.i64("batch_size").max(1) as u64 })
    }
}

impl NoiseModel for PretendBatch {
    fn plan(&self, _config_batch: u64, _n: u64) -> GradientPlan {
        GradientPlan { gradient_batch: self.batch_size }
    }

    fn transform<'o>(
        &mut self,
        _ops: Ops<'o>,
        _ctx: &StepCtx,
        _grad: &Tensor<'o>,
        _stats: &NoiseView<'o>,
    ) -> Result<(), String> {
        Ok(())
    }
}
