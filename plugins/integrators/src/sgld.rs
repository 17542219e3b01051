//! `sgld`: stochastic gradient Langevin dynamics (Welling & Teh 2011; the reference's
//! `StochasticGradientLangevinMCMC`), a first-order (overdamped) method without momenta.
//!
//! With timestep factor C: ℓ' = C·ℓ (ℓ is itself the time step of the overdamped SDE below, so C
//! scales it linearly, as in the reference). With g = ∇G̃:
//!
//! ```text
//! θ ← θ − ℓ'·M⁻¹ g + sqrt(2T·ℓ'/n) · M^{-1/2} ξ
//! ```
//!
//! Stationary law exp(−U/T) as ℓ → 0 (Euler–Maruyama of dθ = −(1/n)M⁻¹∇U dt +
//! sqrt(2T/n) M^{-1/2} dW in time τ = ℓ). `momentum_decay` is ignored; `kinetic` is `None`
//! and `rescale_momenta` does nothing.

use ablate_sdk::prelude::*;

use crate::common::check_ctx;

pub struct Sgld;

impl Factory for Sgld {
    const NAME: &'static str = "sgld";
    const DESCRIPTION: &'static str = "stochastic gradient Langevin dynamics (no momenta)";
    fn params() -> Vec<ParamSpec> {
        Vec::new()
    }
    fn new(_: &Params) -> Result<Self, String> {
        Ok(Self)
    }
}

impl Integrator for Sgld {
    fn init<'o>(&mut self, _ops: Ops<'o>, _params: &Tensor<'o>) -> Result<(), String> {
        Ok(())
    }

    fn step<'o>(&mut self, ops: Ops<'o>, ctx: &StepCtx, t: &StepView<'o>) -> Result<StepReport, String> {
        check_ctx(ctx, false)?;
        let lr = ctx.lr * ctx.timestep_factor;
        t.params.addcmul(-lr, &t.grad, &t.mass_inv);
        // θ ← θ + sqrt(2T·ℓ'/n)·M^{-1/2}ξ: the fused O-step with β = 1 and no kick.
        ops.ou_update(&t.params, 1.0, None, 2.0 * lr / ctx.n, &t.temperature, &t.mass_inv_sqrt);
        Ok(StepReport { acceptance: f64::NAN })
    }

    fn rescale_momenta<'o>(&mut self, _ops: Ops<'o>, _factor: &Tensor<'o>) -> Result<(), String> {
        Ok(())
    }

    fn kinetic<'o>(&self, _ops: Ops<'o>, _mass_inv: &Tensor<'o>) -> Result<Option<Tensor<'o>>, String> {
        Ok(None)
    }

    /// Elementwise in every chain; noise through `t.temperature`.
    fn batchable(&self) -> bool {
        true
    }
}
