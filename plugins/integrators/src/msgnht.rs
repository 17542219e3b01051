//! `msgnht`: multivariate stochastic gradient Nosé–Hoover thermostat (Li, Chen, Fan & Carin,
//! AAAI 2016; the reference's `MultivariateNoseHooverMCMC`), one thermostat ξᵢ per parameter.
//!
//! Parameterisation as symplectic Euler: timestep factor C gives ℓ' = C²·ℓ,
//! β' = 1 − C(1 − β); h = sqrt(ℓ'/n), h_g = sqrt(ℓ'·n) = h·n. With g = ∇G̃:
//!
//! ```text
//! m ← m − h_g·g − h·(ξ ⊙ m) + sqrt(2T(1 − β'))·M^{1/2} ζ
//! ξ ← ξ + h·(m ⊙ M⁻¹m − T)
//! θ ← θ + h·M⁻¹ m
//! ```
//!
//! The thermostats start at their noise-free mean E\[ξ\] = (1 − β')/h = sqrt(n/ℓ')·(1 − β')
//! (evaluated at the first step, where ℓ and β are known), where h·ξ = 1 − β' reproduces the
//! symplectic Euler friction. They then adapt the friction of each coordinate until its
//! kinetic temperature mᵢ²/Mᵢ averages T, which also absorbs an unknown gradient-noise variance.

use ablate_sdk::prelude::*;

use crate::common::{check_ctx, kinetic_of, momentum_noise, rescale, scaled_step, Slot};

pub struct MultivariateNoseHoover {
    momentum: Slot,
    thermostat: Slot,
    started: bool,
}

impl Factory for MultivariateNoseHoover {
    const NAME: &'static str = "msgnht";
    const DESCRIPTION: &'static str =
        "multivariate stochastic gradient Nosé–Hoover thermostat (one thermostat per parameter)";
    fn params() -> Vec<ParamSpec> {
        Vec::new()
    }
    fn new(_: &Params) -> Result<Self, String> {
        Ok(Self { momentum: Slot::default(), thermostat: Slot::default(), started: false })
    }
}

impl Integrator for MultivariateNoseHoover {
    fn init<'o>(&mut self, ops: Ops<'o>, params: &Tensor<'o>) -> Result<(), String> {
        self.momentum.fill(ops, params, 0.0);
        self.thermostat.fill(ops, params, 0.0);
        self.started = false;
        Ok(())
    }

    fn step<'o>(&mut self, ops: Ops<'o>, ctx: &StepCtx, t: &StepView<'o>) -> Result<StepReport, String> {
        check_ctx(ctx, false)?;
        let (beta, h) = scaled_step(ctx);
        let m = self.momentum.get(ops)?;
        let xi = self.thermostat.get(ops)?;
        if !self.started {
            let mean = (1.0 - beta) / h; // sqrt(n/ℓ')·(1−β')
            if !mean.is_finite() {
                return Err("the first step needs a positive timestep factor".into());
            }
            xi.set(&ops.full_like(&xi, mean));
            self.started = true;
        }
        let mut next = &m - &t.grad * (h * ctx.n) - &xi * &m * h;
        if let Some(noise) = momentum_noise(ops, &m, &t.temperature, 2.0 * (1.0 - beta), &t.mass_sqrt) {
            next = next + noise;
        }
        m.set(&next);
        let minv_m = &m * &t.mass_inv;
        xi.axpby(h, &t.temperature.subtract_from(&m * &minv_m), 1.0);
        t.params.axpby(h, &minv_m, 1.0);
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
