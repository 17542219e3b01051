//! `__NAME__`: stochastic gradient Langevin dynamics (Welling & Teh 2011), no momenta.
//!
//! With ℓ' = timestep_factor·lr and g = ∇G̃ (the per-example mean loss; ∇U = n·g):
//!
//! θ ← θ − ℓ'·M⁻¹ g + sqrt(2T·ℓ'/n) · M^{-1/2} ξ,   ξ ~ N(0, I) from the host's stream.
//!
//! Stationary law exp(−U/T) as ℓ → 0. T multiplies only the injected noise.

use ablate_sdk::prelude::*;

pub struct __TYPE__;

impl Factory for __TYPE__ {
    const NAME: &'static str = "__NAME__";
    const DESCRIPTION: &'static str = "stochastic gradient Langevin dynamics (example plugin)";

    fn params() -> Vec<ParamSpec> {
        Vec::new()
    }

    fn new(_: &Params) -> Result<Self, String> {
        Ok(Self)
    }
}

impl Integrator for __TYPE__ {
    fn init<'o>(&mut self, _ops: Ops<'o>, _params: &Tensor<'o>) -> Result<(), String> {
        // A method with momenta would create them here and keep them with `Tensor::into_id`.
        Ok(())
    }

    fn step<'o>(&mut self, ops: Ops<'o>, ctx: &StepCtx, t: &StepView<'o>) -> Result<StepReport, String> {
        if !(ctx.n > 0.0 && ctx.lr > 0.0 && ctx.temperature >= 0.0) {
            return Err(format!("needs n > 0, lr > 0, T >= 0; got n={}, lr={}, T={}", ctx.n, ctx.lr, ctx.temperature));
        }
        let lr = ctx.lr * ctx.timestep_factor;
        // Whole flat vectors: a handful of kernels per step, whatever the number of layers.
        t.params.axpby(-lr, &(&t.grad * &t.mass_inv), 1.0);
        // Noise sqrt(2T·lr/n)·M^{-1/2}ξ, T per chain in batched runs (no draw at T = 0).
        if let Some(noise) = t.temperature.noise(ops, &t.params, 2.0 * lr / ctx.n) {
            t.params.axpby(1.0, &(noise * &t.mass_inv_sqrt), 1.0);
        }
        Ok(StepReport { acceptance: f64::NAN })
    }

    fn rescale_momenta<'o>(&mut self, _ops: Ops<'o>, _factor: &Tensor<'o>) -> Result<(), String> {
        Ok(()) // no momenta
    }

    fn kinetic<'o>(&self, _ops: Ops<'o>, _mass_inv: &Tensor<'o>) -> Result<Option<Tensor<'o>>, String> {
        Ok(None) // first-order method: no kinetic temperature
    }

    fn batchable(&self) -> bool {
        true // elementwise, noise through `t.temperature`: K chains can share one step
    }
}

ablate_sdk::export_plugin! {
    priors: [],
    likelihoods: [],
    integrators: [__TYPE__],
    noise: [],
}
