//! `spv`: stochastic position Verlet (Leimkuhler & Matthews 2015 §7.3.1; the reference's
//! `StochasticPositionVerletMCMC`).
//!
//! Parameterisation: h = sqrt(2ℓ/(n(1 − 1/ln β))), γ = −ln(β)/h, η = (1 − e^{−hγ})/γ,
//! ζ = sqrt(T(1 − e^{−2hγ})). Timestep factor C scales h with γ fixed: β' = β^C,
//! ℓ' = C²·((1 − 1/(C ln β))/(1 − 1/ln β))·ℓ, i.e. h' = C·h, which is how it is computed here
//! (finite at C = 0). With ∇U = n·g taken at θ_n (the engine's gradient, as in the reference):
//!
//! ```text
//! θ ← θ + (h/2)·M⁻¹ m
//! m ← β' m − η·n·g + ζ·M^{1/2} ξ
//! θ ← θ + (h/2)·M⁻¹ m
//! ```
//!
//! The momentum update is the exact solution of dm = −∇U dt − γm dt + sqrt(2γT)M^{1/2}dW over h
//! with ∇U frozen. Needs β ∈ (0, 1).

use ablate_sdk::prelude::*;

use crate::common::{check_ctx, kinetic_of, rescale, Slot};

pub struct StochasticPositionVerlet {
    momentum: Slot,
}

impl Factory for StochasticPositionVerlet {
    const NAME: &'static str = "spv";
    const DESCRIPTION: &'static str = "stochastic position Verlet (Leimkuhler & Matthews)";
    fn params() -> Vec<ParamSpec> {
        Vec::new()
    }
    fn new(_: &Params) -> Result<Self, String> {
        Ok(Self { momentum: Slot::default() })
    }
}

impl Integrator for StochasticPositionVerlet {
    fn init<'o>(&mut self, ops: Ops<'o>, params: &Tensor<'o>) -> Result<(), String> {
        self.momentum.fill(ops, params, 0.0);
        Ok(())
    }

    fn step<'o>(&mut self, ops: Ops<'o>, ctx: &StepCtx, t: &StepView<'o>) -> Result<StepReport, String> {
        check_ctx(ctx, true)?;
        let (c, b) = (ctx.timestep_factor, ctx.momentum_decay);
        let h = c * (2.0 * ctx.lr / (ctx.n * (1.0 - 1.0 / b.ln()))).sqrt();
        let beta = b.powf(c);
        let hgamma = -beta.ln(); // = C·(−ln β) = h'γ
        let eta = if hgamma > 0.0 { h * (1.0 - beta) / hgamma } else { h };
        let m = self.momentum.get(ops)?;
        t.params.addcmul(0.5 * h, &m, &t.mass_inv);
        ops.ou_update(&m, beta, Some((-(eta * ctx.n), &t.grad)), 1.0 - beta * beta, &t.temperature, &t.mass_sqrt);
        t.params.addcmul(0.5 * h, &m, &t.mass_inv);
        Ok(StepReport { acceptance: f64::NAN })
    }

    fn rescale_momenta<'o>(&mut self, ops: Ops<'o>, factor: &Tensor<'o>) -> Result<(), String> {
        rescale(ops, &self.momentum, factor)
    }

    fn kinetic<'o>(&self, ops: Ops<'o>, mass_inv: &Tensor<'o>) -> Result<Option<Tensor<'o>>, String> {
        kinetic_of(ops, &self.momentum, mass_inv)
    }

    /// Elementwise in every chain; noise through `t.temperature`.
    fn batchable(&self) -> bool {
        true
    }
}
