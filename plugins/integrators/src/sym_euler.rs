//! `sym-euler`: the paper's `NaiveSymplecticEulerMCMC` (Wenzel et al. 2020, `core/sgmcmc.py`).
//!
//! SDE: dθ = M⁻¹m dt, dm = −∇U dt − γ m dt + sqrt(2γT) M^{1/2} dW, with U = n·G̃.
//!
//! Timestep factor C scales the SDE step h, not the learning rate (`dynamics_parameters`):
//! ℓ' = C²·ℓ, β' = 1 − C(1 − β). Then, with g = ∇G̃ (so ∇U = n·g):
//!
//! ```text
//! h = sqrt(ℓ'/n)
//! m ← β' m − h·n·g + sqrt(2T(1 − β')) · M^{1/2} ξ
//! θ ← θ + h · M⁻¹ m            (symplectic: the new momentum moves θ)
//! ```
//!
//! γ = (1 − β)/h; the noise variance 2γhT = 2(1 − β)T. In velocity form v = h·M⁻¹m:
//! v ← β v − ℓ·M⁻¹ g + sqrt(2(1−β)Tℓ/n)·M^{-1/2}ξ, θ ← θ + v; at T = 0 (no draw at all) this is
//! SGD with heavy-ball momentum β and learning rate ℓ, preconditioned by M⁻¹.
//!
//! Momenta start at zero (`momentum_init = "zero"`, the paper's code); `"gaussian"` draws
//! m ~ N(0, T·M) at the first step instead, their stationary law at the first step's T (the
//! Flax port draws unit normals whatever T and M are). Under the temperature ramp the first step
//! is at T = 0, so `ablate grid check` refuses `"gaussian"` there.
//! "Naive": the momentum stationary variance is 2T/(1 + β) per unit mass, not T (kinetic
//! temperature biased by a factor 2/(1+β)); positions are sampled correctly as h → 0.

use ablate_sdk::prelude::*;

use crate::common::{check_ctx, kinetic_of, momentum_noise, rescale, scaled_step, Slot};

pub struct NaiveSymplecticEulerMCMC {
    momentum: Slot,
    gaussian_init: bool,
    started: bool,
}

impl Factory for NaiveSymplecticEulerMCMC {
    const NAME: &'static str = "sym-euler";
    const DESCRIPTION: &'static str = "symplectic Euler Langevin (the paper's NaiveSymplecticEulerMCMC; default)";
    fn params() -> Vec<ParamSpec> {
        vec![ParamSpec::string(
            "momentum_init",
            "zero",
            &["zero", "gaussian"],
            "initial momenta: zero (the paper's code) or N(0, T·M) drawn at the first step (needs \
             sampler.temperature_ramp false: the ramp starts at T = 0)",
        )]
    }
    fn new(p: &Params) -> Result<Self, String> {
        Ok(Self { momentum: Slot::default(), gaussian_init: p.str("momentum_init") == "gaussian", started: false })
    }
}

impl Integrator for NaiveSymplecticEulerMCMC {
    fn init<'o>(&mut self, ops: Ops<'o>, params: &Tensor<'o>) -> Result<(), String> {
        self.momentum.fill(ops, params, 0.0);
        self.started = false;
        Ok(())
    }

    fn step<'o>(&mut self, ops: Ops<'o>, ctx: &StepCtx, t: &StepView<'o>) -> Result<StepReport, String> {
        check_ctx(ctx, false)?;
        let (beta, h) = scaled_step(ctx);
        let m = self.momentum.get(ops)?;
        if !self.started && self.gaussian_init {
            if let Some(m0) = momentum_noise(ops, &m, &t.temperature, 1.0, &t.mass_sqrt) {
                m.set(&m0);
            }
        }
        self.started = true;
        // In place, few kernels: m ← β m − h n ∇G̃ (+ noise); θ ← θ + h M⁻¹ m.
        ops.ou_update(&m, beta, Some((-(h * ctx.n), &t.grad)), 2.0 * (1.0 - beta), &t.temperature, &t.mass_sqrt);
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
