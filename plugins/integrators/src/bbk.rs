//! `bbk`: the Brünger–Brooks–Karplus scheme (Brünger, Brooks & Karplus 1984; Leimkuhler &
//! Matthews 2015, p. 277; the reference's `BBKMCMC`).
//!
//! Parameterisation: h = sqrt(2ℓ/(n(1 + β))), hγ = 2(1 − β)/(1 + β) (so β = (1 − hγ/2)/(1 +
//! hγ/2)). Timestep factor C scales h with γ fixed: β' = (1 + β − C(1 − β))/(1 + β + C(1 − β)),
//! ℓ' = C²·((β' + 1)/(β + 1))·ℓ. With ∇U = n·g at the current θ and one draw
//! r = ½·sqrt(2hγT)·M^{1/2} ξ used in both half steps, as in the reference:
//!
//! ```text
//! m_n ← (m − (h/2)·n·g + r) / (1 + hγ/2)
//! m   ← (1 − hγ/2)·m_n − (h/2)·n·g + r
//! θ   ← θ + h·M⁻¹ m
//! ```
//!
//! Net noise (1 + β)·r has variance T(1 − β²): N(0, T·M) is invariant in the force-free limit.
//! hγ is computed from β' directly, so C = 0 (h = 0) is a valid, frozen step.

use ablate_sdk::prelude::*;

use crate::common::{check_ctx, kinetic_of, momentum_noise, rescale, Slot};

pub struct Bbk {
    momentum: Slot,
}

impl Factory for Bbk {
    const NAME: &'static str = "bbk";
    const DESCRIPTION: &'static str = "Brünger–Brooks–Karplus Langevin scheme";
    fn params() -> Vec<ParamSpec> {
        Vec::new()
    }
    fn new(_: &Params) -> Result<Self, String> {
        Ok(Self { momentum: Slot::default() })
    }
}

impl Integrator for Bbk {
    fn init<'o>(&mut self, ops: Ops<'o>, params: &Tensor<'o>) -> Result<(), String> {
        self.momentum.fill(ops, params, 0.0);
        Ok(())
    }

    fn step<'o>(&mut self, ops: Ops<'o>, ctx: &StepCtx, t: &StepView<'o>) -> Result<StepReport, String> {
        check_ctx(ctx, false)?;
        let (c, b) = (ctx.timestep_factor, ctx.momentum_decay);
        let beta = (1.0 + b - c * (1.0 - b)) / (1.0 + b + c * (1.0 - b));
        let lr = c * c * ((beta + 1.0) / (b + 1.0)) * ctx.lr;
        let h = (2.0 * lr / (ctx.n * (1.0 + beta))).sqrt();
        let hg = 2.0 * (1.0 - beta) / (1.0 + beta);
        let m = self.momentum.get(ops)?;
        // σ = ½·sqrt(2hγT) = sqrt(hγT/2).
        let noise = momentum_noise(ops, &m, &t.temperature, 0.5 * hg, &t.mass_sqrt);
        let kick = &t.grad * (0.5 * h * ctx.n);
        let mut mn = &m - &kick;
        if let Some(r) = &noise {
            mn = mn + r;
        }
        let mut next = mn * ((1.0 - 0.5 * hg) / (1.0 + 0.5 * hg)) - &kick;
        if let Some(r) = &noise {
            next = next + r;
        }
        m.set(&next);
        t.params.addcmul(h, &m, &t.mass_inv);
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
