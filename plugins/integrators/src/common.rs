//! Shared pieces: persistent state tensors, context validation, momentum helpers.

use ablate_sdk::prelude::*;
use ablate_sdk::TensorId;

/// A state tensor kept across calls (momenta, thermostats): the handle lives in the host's
/// arena and is borrowed for the duration of each call.
#[derive(Default, Debug)]
pub(crate) struct Slot(Option<TensorId>);

impl Slot {
    /// (Re)create the slot shaped like `like`, filled with `value`.
    pub(crate) fn fill(&mut self, ops: Ops<'_>, like: &Tensor<'_>, value: f64) {
        if let Some(old) = self.0.take() {
            drop(ops.adopt(old));
        }
        self.0 = Some(ops.full_like(like, value).into_id());
    }

    pub(crate) fn get<'o>(&self, ops: Ops<'o>) -> Result<Tensor<'o>, String> {
        self.0.map(|id| ops.borrow(id)).ok_or_else(|| "the integrator was not initialised (init not called)".to_owned())
    }
}

/// Validate the scalars of a step. `open_beta`: momentum decay must be in (0, 1), else [0, 1).
pub(crate) fn check_ctx(ctx: &StepCtx, open_beta: bool) -> Result<(), String> {
    let b = ctx.momentum_decay;
    let beta_ok = if open_beta { b > 0.0 && b < 1.0 } else { (0.0..1.0).contains(&b) };
    if !(ctx.lr > 0.0 && ctx.lr.is_finite()) {
        return Err(format!("learning rate must be positive, got {}", ctx.lr));
    }
    if !(ctx.n > 0.0 && ctx.n.is_finite()) {
        return Err(format!("n must be positive, got {}", ctx.n));
    }
    if !beta_ok {
        let range = if open_beta { "(0, 1)" } else { "[0, 1)" };
        return Err(format!("momentum decay must be in {range}, got {b}"));
    }
    if !(ctx.timestep_factor >= 0.0 && ctx.timestep_factor.is_finite()) {
        return Err(format!("timestep factor must be >= 0, got {}", ctx.timestep_factor));
    }
    if !(ctx.temperature >= 0.0 && ctx.temperature.is_finite()) {
        return Err(format!("temperature must be >= 0, got {}", ctx.temperature));
    }
    Ok(())
}

/// Elementwise m ⊙ M⁻¹ m.
pub(crate) fn kinetic_of<'o>(ops: Ops<'o>, m: &Slot, mass_inv: &Tensor<'o>) -> Result<Option<Tensor<'o>>, String> {
    let m = m.get(ops)?;
    Ok(Some(&m * &m * mass_inv))
}

/// m ← factor ⊙ m.
pub(crate) fn rescale(ops: Ops<'_>, m: &Slot, factor: &Tensor<'_>) -> Result<(), String> {
    let m = m.get(ops)?;
    m.set(&(&m * factor));
    Ok(())
}

/// `sqrt(coef·T) · M^{1/2} ξ` with ξ ~ N(0, I) from the host stream (T per chain in a batched
/// run); `None` when coef·T = 0 (T = 0: no draw, so the step is exactly deterministic).
pub(crate) fn momentum_noise<'o>(
    ops: Ops<'o>,
    like: &Tensor<'o>,
    temp: &Temperature<'o>,
    coef: f64,
    mass_sqrt: &Tensor<'o>,
) -> Option<Tensor<'o>> {
    temp.noise(ops, like, coef).map(|n| n * mass_sqrt)
}

/// The one temperature of integrators that cannot run batched chains (one energy, one
/// Metropolis–Hastings decision per step).
pub(crate) fn shared_temperature(name: &str, t: &StepView<'_>) -> Result<f64, String> {
    match &t.temperature {
        Temperature::Shared(temp) => Ok(*temp),
        Temperature::PerChain(_) => Err(format!("{name} cannot run batched chains with per-chain temperatures")),
    }
}

/// The reference's `dynamics_parameters` for the symplectic-Euler family: the cyclical factor C
/// scales the SDE step h, so ℓ' = C²ℓ and β' = 1 − C(1−β) (friction γ = (1−β')/h unchanged).
/// Returns (β', h) with h = sqrt(ℓ'/n).
pub(crate) fn scaled_step(ctx: &StepCtx) -> (f64, f64) {
    let c = ctx.timestep_factor;
    let beta = 1.0 - c * (1.0 - ctx.momentum_decay);
    (beta, (c * c * ctx.lr / ctx.n).sqrt())
}

/// Metropolis–Hastings decision at temperature T for an energy change `dh` (H₁ − H₀):
/// acceptance probability min(1, exp(−dh/T)) (T = 0: accept iff dh ≤ 0; NaN: reject), and the
/// decision from one uniform draw of the host stream.
pub(crate) fn metropolis(ops: Ops<'_>, like: &Tensor<'_>, dh: f64, t: f64) -> (f64, bool) {
    let a = if dh.is_nan() {
        0.0
    } else if t > 0.0 {
        (-dh / t).min(0.0).exp()
    } else if dh <= 0.0 {
        1.0
    } else {
        0.0
    };
    let u = ops.rand_like(like).item();
    (a, u < a)
}
