//! `obabo`: the OBABO splitting of Langevin dynamics, optionally with a Metropolis–Hastings
//! correction on full-batch energies (generalised HMC; Horowitz 1991, Leimkuhler & Matthews
//! 2015 §7).
//!
//! Parameterisation as BAOAB: h = sqrt(2ℓ/(n(1 + β))), β = e^{−γh}; timestep factor C gives
//! ℓ' = C²·((β^C + 1)/(β + 1))·ℓ, β' = β^C. O(τ) is the exact Ornstein–Uhlenbeck step
//! m ← e^{−γτ} m + sqrt(T(1 − e^{−2γτ}))·M^{1/2} ξ; B(τ) is m ← m − τ∇U; A(τ) is θ ← θ + τM⁻¹m.
//!
//! **Without Metropolis** (`metropolis = false`, stochastic gradients, one gradient per step):
//! OBABO repeated is …O B A B O O B A B O…; cutting it at the A steps gives, per engine step
//! with ∇U = n·g at the current θ,
//!
//! ```text
//! m ← m − (h/2)·n·g ;  m ← β' m + sqrt(T(1 − β'²))·M^{1/2} ξ ;  m ← m − (h/2)·n·g ;  θ ← θ + h·M⁻¹m
//! ```
//!
//! which produces the same positions as OBABO (the two O(h/2) merge into one O(h)).
//!
//! **With Metropolis** (`metropolis = true`): U and ∇U come from `host.potential(·, full_batch)`
//! and the minibatch gradient is ignored. One step is
//!
//! ```text
//! O(h/2) ;  (θ', m') = B(h/2) A(h) B(h/2) (θ, m) ;
//! accept with probability min(1, exp(−(H(θ',m') − H(θ,m))/T)),  H = U + ½ mᵀM⁻¹m ;
//! on rejection keep θ and flip m ← −m ;  O(h/2)
//! ```
//!
//! which leaves exp(−H/T) exactly invariant (the O steps do, and the BAB move with momentum flip
//! is a reversible volume-preserving proposal). T = 0 accepts iff H does not increase. The
//! acceptance probability is reported in `StepReport` (one device synchronisation per step).

use ablate_sdk::prelude::*;

use crate::baoab::baoab_dynamics;
use crate::common::{check_ctx, kinetic_of, metropolis, rescale, shared_temperature, Slot};

pub struct Obabo {
    momentum: Slot,
    metropolis: bool,
}

impl Factory for Obabo {
    const NAME: &'static str = "obabo";
    const DESCRIPTION: &'static str =
        "OBABO Langevin splitting; with `metropolis`, generalised HMC on full-batch energies";
    fn params() -> Vec<ParamSpec> {
        vec![ParamSpec::bool(
            "metropolis",
            false,
            "Metropolis–Hastings correction of each BAB move on the full-batch potential \
             (host.potential); rejection flips the momenta",
        )]
    }
    fn new(p: &Params) -> Result<Self, String> {
        Ok(Self { momentum: Slot::default(), metropolis: p.bool("metropolis") })
    }
}

fn half_o<'o>(ops: Ops<'o>, m: &Tensor<'o>, beta_half: f64, t: &StepView<'o>) {
    ops.ou_update(m, beta_half, None, 1.0 - beta_half * beta_half, &t.temperature, &t.mass_sqrt);
}

impl Integrator for Obabo {
    fn init<'o>(&mut self, ops: Ops<'o>, params: &Tensor<'o>) -> Result<(), String> {
        self.momentum.fill(ops, params, 0.0);
        Ok(())
    }

    fn step<'o>(&mut self, ops: Ops<'o>, ctx: &StepCtx, t: &StepView<'o>) -> Result<StepReport, String> {
        check_ctx(ctx, false)?;
        let (h, beta) = baoab_dynamics(ctx);
        let m = self.momentum.get(ops)?;
        if !self.metropolis {
            m.axpby(-0.5 * h * ctx.n, &t.grad, 1.0);
            half_o(ops, &m, beta, t);
            m.axpby(-0.5 * h * ctx.n, &t.grad, 1.0);
            t.params.addcmul(h, &m, &t.mass_inv);
            return Ok(StepReport { acceptance: f64::NAN });
        }
        let beta_half = beta.sqrt();
        half_o(ops, &m, beta_half, t);
        let (u0, g0) = ops.potential(&t.params, true);
        let k0 = (&m * &m * &t.mass_inv).sum() * 0.5;
        let m1 = &m - &g0 * (0.5 * h);
        let q1 = &t.params + &m1 * &t.mass_inv * h;
        let (u1, g1) = ops.potential(&q1, true);
        let m2 = &m1 - &g1 * (0.5 * h);
        let k1 = (&m2 * &m2 * &t.mass_inv).sum() * 0.5;
        let dh = ((&u1 + &k1) - (&u0 + &k0)).item();
        ops.check()?;
        let (a, accept) = metropolis(ops, &u0, dh, shared_temperature(Self::NAME, t)?);
        if accept {
            t.params.set(&q1);
            m.set(&m2);
        } else {
            m.set(&(-&m));
        }
        half_o(ops, &m, beta_half, t);
        Ok(StepReport { acceptance: a })
    }

    fn rescale_momenta<'o>(&mut self, ops: Ops<'o>, factor: &Tensor<'o>) -> Result<(), String> {
        rescale(ops, &self.momentum, factor)
    }

    fn kinetic<'o>(&self, ops: Ops<'o>, mass_inv: &Tensor<'o>) -> Result<Option<Tensor<'o>>, String> {
        kinetic_of(ops, &self.momentum, mass_inv)
    }

    /// Without Metropolis–Hastings the step is elementwise; with it, one energy decides for
    /// all parameters, so chains cannot share a step.
    fn batchable(&self) -> bool {
        !self.metropolis
    }
}
