//! `minibatch`: the standard stochastic gradient (the paper's setting).
//!
//! The gradient is the mean over a minibatch of b examples drawn by the host's data order,
//! b = `batch_size` or, when it is 0 (default), the configured `sampler.batch_size`. It is an
//! unbiased estimate of the full-batch gradient; `transform` leaves it unchanged.
//!
//! With `batch_size` ≠ 0 and ≠ the configured batch this is the same dynamics as
//! `pretend-batch` (the host always counts steps per epoch from the configured batch); prefer
//! `pretend-batch` for the batch-size ablation, where that choice is its purpose.

use ablate_sdk::prelude::*;

pub struct Minibatch {
    batch_size: u64,
}

impl Factory for Minibatch {
    const NAME: &'static str = "minibatch";
    const DESCRIPTION: &'static str = "unbiased minibatch gradient of b examples (b = the configured batch by default)";

    fn params() -> Vec<ParamSpec> {
        vec![ParamSpec::int("batch_size", 0, "examples per gradient b; 0 = the configured sampler.batch_size")
            .at_least(0.0)]
    }

    fn new(p: &Params) -> Result<Self, String> {
        Ok(Self { batch_size: p.i64("batch_size").max(0) as u64 })
    }
}

impl NoiseModel for Minibatch {
    fn plan(&self, config_batch: u64, _n: u64) -> GradientPlan {
        GradientPlan { gradient_batch: if self.batch_size == 0 { config_batch } else { self.batch_size } }
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
