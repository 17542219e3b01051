//! `full-batch`: the exact gradient of G̃ on all n training examples each step
//! (`gradient_batch = 0`), with no minibatch noise at all. The only noise left in the dynamics is
//! the integrator's injected Langevin noise, so this isolates the question "does minibatch noise
//! cause the cold-posterior effect?" (cost: n/B times the minibatch work per step).

use ablate_sdk::prelude::*;

pub struct FullBatch;

impl Factory for FullBatch {
    const NAME: &'static str = "full-batch";
    const DESCRIPTION: &'static str = "exact full-training-set gradient, no gradient noise";

    fn params() -> Vec<ParamSpec> {
        Vec::new()
    }

    fn new(_p: &Params) -> Result<Self, String> {
        Ok(Self)
    }
}

impl NoiseModel for FullBatch {
    fn plan(&self, _config_batch: u64, _n: u64) -> GradientPlan {
        GradientPlan { gradient_batch: 0 }
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
