//! `hmc`: full-batch Hamiltonian Monte Carlo (Duane et al. 1987; Neal 2011) at temperature T:
//! target exp(−H/T), H(θ, m) = U(θ) + ½ mᵀM⁻¹m, with U and ∇U from
//! `host.potential(·, full_batch = true)` (the engine's minibatch gradient is ignored).
//!
//! One engine step = one HMC transition with step size h = C·sqrt(ℓ/n) (the symplectic Euler
//! SDE step; C the timestep factor) and L = `leapfrog_steps`:
//!
//! ```text
//! m₀ ~ N(0, T·M)                        (full momentum refresh; β is not used)
//! m ← m₀ − (h/2)∇U(θ);  repeat L times: q ← q + h·M⁻¹m,  m ← m − h∇U(q)  (last kick: h/2)
//! accept (q, m) with probability min(1, exp(−(H(q, m) − H(θ, m₀))/T)), else keep θ
//! ```
//!
//! Leapfrog is volume preserving and reversible, so this leaves exp(−U/T) exactly invariant; the
//! acceptance probability is reported in `StepReport` and falls as h grows (energy error
//! O(h²) per trajectory for smooth U). At T = 0 the momenta are zero and a move is accepted iff
//! U does not increase. Costs L + 1 full-batch potentials and one synchronisation per step.
//! `kinetic` reports the momenta of the current state (accepted endpoint or m₀).

use ablate_sdk::prelude::*;

use crate::common::{check_ctx, kinetic_of, metropolis, momentum_noise, rescale, shared_temperature, Slot};

pub struct Hmc {
    momentum: Slot,
    leapfrog_steps: usize,
}

impl Factory for Hmc {
    const NAME: &'static str = "hmc";
    const DESCRIPTION: &'static str = "full-batch Hamiltonian Monte Carlo (leapfrog + Metropolis–Hastings)";
    fn params() -> Vec<ParamSpec> {
        vec![ParamSpec::int("leapfrog_steps", 10, "leapfrog steps per transition (each costs one full-batch gradient)")
            .range(1.0, 10_000.0)]
    }
    fn new(p: &Params) -> Result<Self, String> {
        Ok(Self { momentum: Slot::default(), leapfrog_steps: p.i64("leapfrog_steps") as usize })
    }
}

impl Integrator for Hmc {
    fn init<'o>(&mut self, ops: Ops<'o>, params: &Tensor<'o>) -> Result<(), String> {
        self.momentum.fill(ops, params, 0.0);
        Ok(())
    }

    fn step<'o>(&mut self, ops: Ops<'o>, ctx: &StepCtx, t: &StepView<'o>) -> Result<StepReport, String> {
        check_ctx(ctx, false)?;
        let h = ctx.timestep_factor * (ctx.lr / ctx.n).sqrt();
        let temp = shared_temperature(Self::NAME, t)?;
        let state = self.momentum.get(ops)?;
        let m0 =
            momentum_noise(ops, &state, &t.temperature, 1.0, &t.mass_sqrt).unwrap_or_else(|| ops.zeros_like(&state));
        let (u0, mut g) = ops.potential(&t.params, true);
        let k0 = (&m0 * &m0 * &t.mass_inv).sum() * 0.5;
        let m = &m0 - &g * (0.5 * h);
        let q = &t.params * 1.0;
        let mut u = None;
        for l in 1..=self.leapfrog_steps {
            q.axpby(h, &(&m * &t.mass_inv), 1.0);
            let (ul, gl) = ops.potential(&q, true);
            g = gl;
            let kick = if l == self.leapfrog_steps { 0.5 * h } else { h };
            m.axpby(-kick, &g, 1.0);
            u = Some(ul);
        }
        let u1 = u.ok_or("leapfrog_steps must be at least 1")?;
        let k1 = (&m * &m * &t.mass_inv).sum() * 0.5;
        let dh = ((&u1 + &k1) - (&u0 + &k0)).item();
        ops.check()?;
        let (a, accept) = metropolis(ops, &u0, dh, temp);
        if accept {
            t.params.set(&q);
            state.set(&m);
        } else {
            state.set(&m0);
        }
        Ok(StepReport { acceptance: a })
    }

    fn rescale_momenta<'o>(&mut self, ops: Ops<'o>, factor: &Tensor<'o>) -> Result<(), String> {
        rescale(ops, &self.momentum, factor)
    }

    fn kinetic<'o>(&self, ops: Ops<'o>, mass_inv: &Tensor<'o>) -> Result<Option<Tensor<'o>>, String> {
        kinetic_of(ops, &self.momentum, mass_inv)
    }
}
