//! Faulty priors for the host's tests and for `ablate plugins check`: one panics, one returns
//! NaN, one returns a wrong shape, one returns a handle it released, one has a closed-form
//! gradient off by a factor of 2, one declares an isotropic precision twice the true one, one
//! calls a host op with a bound float32 cannot hold, one draws NaN from the prior. And a
//! faulty likelihood: its NLL is a constant that does not depend on the logits; and a noise
//! model whose `plan` panics; and integrators that report an acceptance above 1 or negative
//! kinetic energies, batch chains at the hottest chain's temperature, or end the process. The host must
//! report each as an error for that use (naming the plugin) and carry on.

use ablate_sdk::prelude::*;

macro_rules! fixture {
    ($ty:ident, $name:literal, $doc:literal) => {
        #[doc = $doc]
        pub struct $ty;
        impl Factory for $ty {
            const NAME: &'static str = $name;
            const DESCRIPTION: &'static str = $doc;
            fn params() -> Vec<ParamSpec> {
                Vec::new()
            }
            fn new(_: &Params) -> Result<Self, String> {
                Ok($ty)
            }
        }
    };
}

fixture!(Panicking, "panicking", "panics inside log_prob");
fixture!(NotANumber, "not-a-number", "returns NaN from log_prob");
fixture!(WrongShape, "wrong-shape", "returns a vector instead of a scalar");
fixture!(Released, "released-handle", "returns a handle it already released");

impl Prior for Panicking {
    fn log_prob<'o>(&self, _: Ops<'o>, _: &[Tensor<'o>], _: &[ParamInfo]) -> Result<Tensor<'o>, String> {
        panic!("deliberate panic in a test plugin")
    }
    fn sample<'o>(&self, _: Ops<'o>, _: &ParamInfo, _: &Tensor<'o>) -> Result<Option<Tensor<'o>>, String> {
        Ok(None)
    }
}

impl Prior for NotANumber {
    fn log_prob<'o>(&self, _: Ops<'o>, params: &[Tensor<'o>], _: &[ParamInfo]) -> Result<Tensor<'o>, String> {
        Ok((&params[0] * 0.0).sum().ln() * 0.0 + f64::NAN)
    }
    fn sample<'o>(&self, _: Ops<'o>, _: &ParamInfo, _: &Tensor<'o>) -> Result<Option<Tensor<'o>>, String> {
        Ok(None)
    }
}

impl Prior for WrongShape {
    fn log_prob<'o>(&self, _: Ops<'o>, params: &[Tensor<'o>], _: &[ParamInfo]) -> Result<Tensor<'o>, String> {
        Ok(&params[0] * 1.0)
    }
    fn sample<'o>(&self, _: Ops<'o>, _: &ParamInfo, _: &Tensor<'o>) -> Result<Option<Tensor<'o>>, String> {
        Ok(None)
    }
}

impl Prior for Released {
    fn log_prob<'o>(&self, ops: Ops<'o>, params: &[Tensor<'o>], _: &[ParamInfo]) -> Result<Tensor<'o>, String> {
        let t = params[0].sum();
        let id = t.id();
        drop(t); // released here
        Ok(ops.adopt(id))
    }
    fn sample<'o>(&self, _: Ops<'o>, _: &ParamInfo, _: &Tensor<'o>) -> Result<Option<Tensor<'o>>, String> {
        Ok(None)
    }
}

fixture!(
    WrongGradient,
    "wrong-gradient",
    "N(0, 1) whose closed-form gradient is twice the true one (fails the gradient check)"
);
fixture!(
    HostOpOverflow,
    "host-op-overflow",
    "|θ|^1.5 prior whose gradient clamps with f64::MAX, which float32 cannot hold (a host-op error)"
);

impl Prior for WrongGradient {
    fn log_prob<'o>(&self, _: Ops<'o>, params: &[Tensor<'o>], _: &[ParamInfo]) -> Result<Tensor<'o>, String> {
        sum_over(params, |p| (p.square() * -0.5 - ablate_sdk::math::HALF_LN_2PI).sum())
    }
    fn sample<'o>(&self, ops: Ops<'o>, _: &ParamInfo, like: &Tensor<'o>) -> Result<Option<Tensor<'o>>, String> {
        Ok(Some(ops.randn_like(like)))
    }
    fn grad_log_prob<'o>(
        &self,
        _: Ops<'o>,
        params: &[Tensor<'o>],
        _: &[ParamInfo],
    ) -> Result<Option<Vec<Tensor<'o>>>, String> {
        // The deliberate mistake: d/dθ (−θ²/2) is −θ, not −2θ.
        Ok(Some(params.iter().map(|p| p * -2.0).collect()))
    }
}

impl Prior for HostOpOverflow {
    fn log_prob<'o>(&self, _: Ops<'o>, params: &[Tensor<'o>], _: &[ParamInfo]) -> Result<Tensor<'o>, String> {
        // log p = Σ −|θ|^1.5 − log(2·Γ(5/3)), a generalised normal with shape 1.5.
        let c = (2.0 * ablate_sdk::math::ln_gamma(5.0 / 3.0).exp()).ln();
        sum_over(params, |p| (p.abs().powf(1.5) * -1.0 - c).sum())
    }
    fn sample<'o>(&self, _: Ops<'o>, _: &ParamInfo, _: &Tensor<'o>) -> Result<Option<Tensor<'o>>, String> {
        Ok(None)
    }
    fn grad_log_prob<'o>(
        &self,
        _: Ops<'o>,
        params: &[Tensor<'o>],
        _: &[ParamInfo],
    ) -> Result<Option<Vec<Tensor<'o>>>, String> {
        // The deliberate mistake: f64::MAX does not fit in float32 (use f64::INFINITY for "no bound").
        Ok(Some(params.iter().map(|p| p.abs().clamp(1e-30, f64::MAX).powf(0.5) * p.sign() * -1.5).collect()))
    }
}

fixture!(NanDraw, "nan-draw", "N(0, 1) whose prior draws are NaN (log_prob and its gradient are right)");

impl Prior for NanDraw {
    fn log_prob<'o>(&self, _: Ops<'o>, params: &[Tensor<'o>], _: &[ParamInfo]) -> Result<Tensor<'o>, String> {
        sum_over(params, |p| (p.square() * -0.5 - ablate_sdk::math::HALF_LN_2PI).sum())
    }
    fn sample<'o>(&self, ops: Ops<'o>, _: &ParamInfo, like: &Tensor<'o>) -> Result<Option<Tensor<'o>>, String> {
        // The deliberate mistake: a draw of NaN.
        Ok(Some(ops.zeros_like(like) + f64::NAN))
    }
}

fixture!(
    WrongPrecision,
    "wrong-precision",
    "N(0, 1) that declares the isotropic precision 2 (σ = 0.71) instead of 1 (fails the precision check)"
);

impl Prior for WrongPrecision {
    fn log_prob<'o>(&self, _: Ops<'o>, params: &[Tensor<'o>], _: &[ParamInfo]) -> Result<Tensor<'o>, String> {
        sum_over(params, |p| (p.square() * -0.5 - ablate_sdk::math::HALF_LN_2PI).sum())
    }
    fn sample<'o>(&self, ops: Ops<'o>, _: &ParamInfo, like: &Tensor<'o>) -> Result<Option<Tensor<'o>>, String> {
        Ok(Some(ops.randn_like(like)))
    }
    fn isotropic_precision(&self, infos: &[ParamInfo]) -> Result<Option<Vec<f64>>, String> {
        // The deliberate mistake: N(0, 1) has precision 1/σ² = 1.
        Ok(Some(vec![2.0; infos.len()]))
    }
}

fixture!(
    DetachedNll,
    "detached-nll",
    "categorical NLL replaced by a constant that does not depend on the logits (autograd cannot reach the network)"
);

impl Likelihood for DetachedNll {
    fn model(&self) -> ModelToggles {
        ModelToggles { norm: NormKind::None, dropout: 0.0 }
    }
    fn effective_n(&self, examples: u64) -> f64 {
        examples as f64
    }
    fn augment<'o>(&mut self, _: Ops<'o>, _: &Tensor<'o>) -> Result<Option<Tensor<'o>>, String> {
        Ok(None)
    }
    fn nll<'o>(&self, ops: Ops<'o>, logits: &Tensor<'o>, _: &Tensor<'o>) -> Result<Tensor<'o>, String> {
        // The deliberate mistake: a fresh tensor filled with a number, not computed from the logits.
        Ok(ops.full_like(&logits.sum(), std::f64::consts::LN_10))
    }
}

fn sum_over<'o>(params: &[Tensor<'o>], f: impl Fn(&Tensor<'o>) -> Tensor<'o>) -> Result<Tensor<'o>, String> {
    params.iter().map(f).reduce(|a, b| a + b).ok_or_else(|| "no parameter tensors".to_owned())
}

fixture!(PanickingPlan, "panicking-plan", "a noise model whose plan panics (a call without an error channel)");

impl NoiseModel for PanickingPlan {
    fn plan(&self, _config_batch: u64, _n: u64) -> GradientPlan {
        panic!("deliberate panic in plan")
    }
    fn transform<'o>(&mut self, _: Ops<'o>, _: &StepCtx, _: &Tensor<'o>, _: &NoiseView<'o>) -> Result<(), String> {
        Ok(())
    }
}

fixture!(ImpossibleAcceptance, "impossible-acceptance", "an SGLD step that reports the acceptance 7.5");
fixture!(NegativeKinetic, "negative-kinetic", "an SGLD step whose kinetic energies are −1");

/// Plain preconditioned SGLD at `temperature`: θ ← θ − ℓ′·M⁻¹g + sqrt(2Tℓ′/n)·M^{-1/2}ξ (the
/// faults are in the reports, or in the temperature passed).
fn sgld_step<'o>(ops: Ops<'o>, ctx: &StepCtx, t: &StepView<'o>, temperature: &Temperature<'o>) {
    let lr = ctx.lr * ctx.timestep_factor;
    t.params.axpby(-lr, &(&t.grad * &t.mass_inv), 1.0);
    if let Some(noise) = temperature.noise(ops, &t.params, 2.0 * lr / ctx.n) {
        t.params.axpby(1.0, &(noise * &t.mass_inv_sqrt), 1.0);
    }
}

impl Integrator for ImpossibleAcceptance {
    fn init<'o>(&mut self, _: Ops<'o>, _: &Tensor<'o>) -> Result<(), String> {
        Ok(())
    }
    fn step<'o>(&mut self, ops: Ops<'o>, ctx: &StepCtx, t: &StepView<'o>) -> Result<StepReport, String> {
        sgld_step(ops, ctx, t, &t.temperature);
        // The deliberate mistake: not a probability.
        Ok(StepReport { acceptance: 7.5 })
    }
    fn rescale_momenta<'o>(&mut self, _: Ops<'o>, _: &Tensor<'o>) -> Result<(), String> {
        Ok(())
    }
    fn kinetic<'o>(&self, _: Ops<'o>, _: &Tensor<'o>) -> Result<Option<Tensor<'o>>, String> {
        Ok(None)
    }
}

impl Integrator for NegativeKinetic {
    fn init<'o>(&mut self, _: Ops<'o>, _: &Tensor<'o>) -> Result<(), String> {
        Ok(())
    }
    fn step<'o>(&mut self, ops: Ops<'o>, ctx: &StepCtx, t: &StepView<'o>) -> Result<StepReport, String> {
        sgld_step(ops, ctx, t, &t.temperature);
        Ok(StepReport { acceptance: f64::NAN })
    }
    fn rescale_momenta<'o>(&mut self, _: Ops<'o>, _: &Tensor<'o>) -> Result<(), String> {
        Ok(())
    }
    fn kinetic<'o>(&self, ops: Ops<'o>, mass_inv: &Tensor<'o>) -> Result<Option<Tensor<'o>>, String> {
        // The deliberate mistake: m⊙M⁻¹m is never negative.
        Ok(Some(ops.full_like(mass_inv, -1.0)))
    }
}

fixture!(
    HottestTemperature,
    "hottest-temperature",
    "a batchable SGLD step whose noise uses StepCtx::temperature (the hottest chain's) instead of t.temperature"
);

impl Integrator for HottestTemperature {
    fn init<'o>(&mut self, _: Ops<'o>, _: &Tensor<'o>) -> Result<(), String> {
        Ok(())
    }
    fn step<'o>(&mut self, ops: Ops<'o>, ctx: &StepCtx, t: &StepView<'o>) -> Result<StepReport, String> {
        // The deliberate mistake: one temperature for every chain of a batch.
        sgld_step(ops, ctx, t, &Temperature::Shared(ctx.temperature));
        Ok(StepReport { acceptance: f64::NAN })
    }
    fn rescale_momenta<'o>(&mut self, _: Ops<'o>, _: &Tensor<'o>) -> Result<(), String> {
        Ok(())
    }
    fn kinetic<'o>(&self, _: Ops<'o>, _: &Tensor<'o>) -> Result<Option<Tensor<'o>>, String> {
        Ok(None)
    }
    fn batchable(&self) -> bool {
        true
    }
}

fixture!(Crashing, "crashing", "an integrator whose step ends the process (std::process::abort, as a segfault would)");

impl Integrator for Crashing {
    fn init<'o>(&mut self, _: Ops<'o>, _: &Tensor<'o>) -> Result<(), String> {
        Ok(())
    }
    fn step<'o>(&mut self, _: Ops<'o>, _: &StepCtx, _: &StepView<'o>) -> Result<StepReport, String> {
        // The deliberate crash: no unwinding, no error value, the process just ends.
        std::process::abort()
    }
    fn rescale_momenta<'o>(&mut self, _: Ops<'o>, _: &Tensor<'o>) -> Result<(), String> {
        Ok(())
    }
    fn kinetic<'o>(&self, _: Ops<'o>, _: &Tensor<'o>) -> Result<Option<Tensor<'o>>, String> {
        Ok(None)
    }
}

#[cfg(not(any(feature = "duplicate-name-for-tests", feature = "crashing-for-tests")))]
ablate_sdk::export_plugin! {
    priors: [Panicking, NotANumber, WrongShape, Released, WrongGradient, WrongPrecision, HostOpOverflow, NanDraw],
    likelihoods: [DetachedNll],
    integrators: [ImpossibleAcceptance, NegativeKinetic, HottestTemperature],
    noise: [PanickingPlan],
}

#[cfg(feature = "duplicate-name-for-tests")]
ablate_sdk::export_plugin! { priors: [Panicking, NotANumber, Panicking], likelihoods: [], integrators: [], noise: [] }

#[cfg(feature = "crashing-for-tests")]
ablate_sdk::export_plugin! { priors: [], likelihoods: [], integrators: [Crashing], noise: [] }
