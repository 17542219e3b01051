//! `__NAME__`: the standard minibatch gradient, b examples per step.
//!
//! `batch_size` = 0 (default) uses the configured `sampler.batch_size`. The gradient is left as
//! the host computed it; a noise model that perturbs it would do so in `transform` with the
//! host's random stream (`ops.randn_like`) and the measured minibatch noise in `stats`.

use ablate_sdk::prelude::*;

pub struct __TYPE__ {
    batch_size: u64,
}

impl Factory for __TYPE__ {
    const NAME: &'static str = "__NAME__";
    const DESCRIPTION: &'static str = "minibatch gradient of b examples (example plugin)";

    fn params() -> Vec<ParamSpec> {
        vec![ParamSpec::int("batch_size", 0, "examples per gradient; 0 = the configured sampler.batch_size").at_least(0.0)]
    }

    fn new(p: &Params) -> Result<Self, String> {
        Ok(Self { batch_size: p.i64("batch_size").max(0) as u64 })
    }
}

impl NoiseModel for __TYPE__ {
    fn plan(&self, config_batch: u64, _n: u64) -> GradientPlan {
        GradientPlan { gradient_batch: if self.batch_size == 0 { config_batch } else { self.batch_size } }
    }

    // `grad` is ∇G̃ before any temperature (the integrator scales its own noise by T); do not
    // read ctx.temperature here: in a batched run it is the hottest chain's.
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

ablate_sdk::export_plugin! {
    priors: [],
    likelihoods: [],
    integrators: [],
    noise: [__TYPE__],
}
