//! `baoab`: the BAOAB splitting of Langevin dynamics (Leimkuhler & Matthews 2015, p. 271; the
//! reference's `BAOABMCMC`).
//!
//! Parameterisation: h = sqrt(2ℓ/(n(1 + β))), β = e^{−γh}. Timestep factor C scales h with γ
//! fixed: ℓ' = C²·((β^C + 1)/(β + 1))·ℓ, β' = β^C. With g = ∇G̃ (∇U = n·g) at the current θ:
//!
//! ```text
//! m  ← m − h·n·g                          (B B: the two half kicks at the same θ, merged)
//! θ  ← θ + (h/2)·M⁻¹ m                    (A)
//! m  ← β' m + sqrt(T(1 − β'²))·M^{1/2} ξ  (O: exact Ornstein–Uhlenbeck step)
//! θ  ← θ + (h/2)·M⁻¹ m                    (A)
//! ```
//!
//! The O step leaves N(0, T·M) exactly invariant, so the kinetic temperature is unbiased in the
//! force-free limit; for a harmonic potential BAOAB samples positions exactly (to all orders in
//! h, up to stability).

use ablate_sdk::prelude::*;

use crate::common::{check_ctx, kinetic_of, rescale, Slot};

pub struct Baoab {
    momentum: Slot,
}

impl Factory for Baoab {
    const NAME: &'static str = "baoab";
    const DESCRIPTION: &'static str = "BAOAB Langevin splitting (Leimkuhler & Matthews)";
    fn params() -> Vec<ParamSpec> {
        Vec::new()
    }
    fn new(_: &Params) -> Result<Self, String> {
        Ok(Self { momentum: Slot::default() })
    }
}

/// (h, β') of BAOAB and OBABO after the timestep factor.
pub(crate) fn baoab_dynamics(ctx: &StepCtx) -> (f64, f64) {
    let (c, b) = (ctx.timestep_factor, ctx.momentum_decay);
    let beta = b.powf(c);
    let lr = c * c * ((beta + 1.0) / (b + 1.0)) * ctx.lr;
    let h = (2.0 * lr / (ctx.n * (1.0 + beta))).sqrt();
    (h, beta)
}

impl Integrator for Baoab {
    fn init<'o>(&mut self, ops: Ops<'o>, params: &Tensor<'o>) -> Result<(), String> {
        self.momentum.fill(ops, params, 0.0);
        Ok(())
    }

    fn step<'o>(&mut self, ops: Ops<'o>, ctx: &StepCtx, t: &StepView<'o>) -> Result<StepReport, String> {
        check_ctx(ctx, false)?;
        let (h, beta) = baoab_dynamics(ctx);
        let m = self.momentum.get(ops)?;
        m.axpby(-h * ctx.n, &t.grad, 1.0);
        t.params.addcmul(0.5 * h, &m, &t.mass_inv);
        ops.ou_update(&m, beta, None, 1.0 - beta * beta, &t.temperature, &t.mass_sqrt);
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
