//! Glue between the author-facing traits and the boundary: validation of parameters, panic
//! containment, and the host's error slot. Used by [`crate::export_plugin!`] only.

use std::panic::{catch_unwind, AssertUnwindSafe};

use abi_stable::prefix_type::PrefixTypeTrait;
use abi_stable::sabi_trait::TD_Opaque;
use abi_stable::std_types::{RBox, ROption, RResult, RSlice, RStr, RString, RVec};

use crate::abi::{
    FactorKind, FactoryInfo, GradientPlan, HostRef, IntegratorBox, IntegratorObj, IntegratorObj_TO, LikelihoodBox,
    LikelihoodObj, LikelihoodObj_TO, ModelToggles, NoiseBox, NoiseObj, NoiseObj_TO, NoiseStats, ParamInfo,
    PluginModule, PluginModule_Ref, PriorBox, PriorObj, PriorObj_TO, StepCtx, StepReport, StepTensors, TensorId,
};
use crate::params::{specs_json, Params};
use crate::tensor::{finish, HostCell, Ops};
use crate::{Factory, Integrator, Likelihood, NoiseModel, NoiseView, Prior, StepView, Temperature};

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic with a non-string payload".to_owned())
}

thread_local! {
    /// Whether this thread is inside a contained plugin call (its panics become errors).
    static CONTAINED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// `file:line` of the last contained panic.
    static PANIC_AT: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// A panic hook (in the plugin library's own std) that keeps contained panics quiet: their
/// message and `file:line` become the call's error instead of lines on the host's stderr.
/// Panics outside contained calls go to the previous hook.
fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            // Built with `panic = "abort"`, nothing is contained: the process ends right after
            // this hook, so the message must be printed here or it is lost.
            if CONTAINED.with(|c| c.get()) && !cfg!(panic = "abort") {
                let at = info.location().map(|l| format!("{}:{}", l.file(), l.line()));
                PANIC_AT.with(|p| *p.borrow_mut() = at);
            } else {
                previous(info);
            }
        }));
    });
}

/// Run `f` with panics contained; a panic becomes "plugin `name` panicked at FILE:LINE: MESSAGE".
fn contain<T>(name: &str, f: impl FnOnce() -> T) -> Result<T, String> {
    install_panic_hook();
    let outer = CONTAINED.with(|c| c.replace(true));
    let r = catch_unwind(AssertUnwindSafe(f));
    CONTAINED.with(|c| c.set(outer));
    r.map_err(|payload| {
        let at = PANIC_AT.with(|p| p.borrow_mut().take()).map(|at| format!(" at {at}")).unwrap_or_default();
        format!("plugin `{name}` panicked{at}: {}", panic_message(&*payload))
    })
}

/// Run plugin code with the host table, containing panics and collecting host errors.
fn guarded<T>(name: &str, host: &mut HostRef<'_>, f: impl FnOnce(Ops<'_>) -> Result<T, String>) -> RResult<T, RString> {
    let cell = HostCell::new(host);
    let ops = cell.ops();
    let result = contain(name, || f(ops)).and_then(|r| r.map_err(|e| format!("{name}: {e}")));
    finish(&ops, result)
}

/// Plain calls (no host) with panic containment.
fn contained<T>(name: &str, f: impl FnOnce() -> T) -> Result<T, String> {
    contain(name, f)
}

/// A call whose boundary type has no error channel (`plan`, `model`, `effective_n`,
/// `batchable`): a panic gives `fallback`, which the host refuses or treats safely, and its
/// message goes to stderr, the only way left to tell the user what happened.
fn contained_or<T>(name: &str, call: &str, fallback: T, f: impl FnOnce() -> T) -> T {
    contain(name, f).unwrap_or_else(|message| {
        eprintln!("error: {message} (in `{call}`, which cannot return an error)");
        fallback
    })
}

fn construct<F: Factory>(params: RStr<'_>) -> Result<F, RString> {
    let parsed = Params::parse(params.as_str(), &F::params()).map_err(|e| format!("{}: {e}", F::NAME))?;
    contained(F::NAME, || F::new(&parsed))
        .and_then(|r| r.map_err(|e| format!("{}: {e}", F::NAME)))
        .map_err(RString::from)
}

struct PriorGlue<P>(P);
struct IntegratorGlue<I>(I);
struct NoiseGlue<N>(N);
struct LikelihoodGlue<L>(L);

impl<P: Prior> PriorObj for PriorGlue<P> {
    fn log_prob(
        &self,
        host: &mut HostRef<'_>,
        params: RSlice<'_, TensorId>,
        infos: RSlice<'_, ParamInfo>,
    ) -> RResult<TensorId, RString> {
        guarded(P::NAME, host, |ops| {
            if params.len() != infos.len() {
                return Err(format!("{} parameter tensors but {} descriptions", params.len(), infos.len()));
            }
            let tensors: Vec<_> = params.iter().map(|&id| ops.borrow(id)).collect();
            self.0.log_prob(ops, &tensors, infos.as_slice()).map(|t| t.into_id())
        })
    }

    fn sample(&self, host: &mut HostRef<'_>, info: &ParamInfo, like: TensorId) -> RResult<ROption<TensorId>, RString> {
        guarded(P::NAME, host, |ops| {
            let like = ops.borrow(like);
            Ok(self.0.sample(ops, info, &like)?.map(|t| t.into_id()).into())
        })
    }

    fn grad_log_prob(
        &self,
        host: &mut HostRef<'_>,
        params: RSlice<'_, TensorId>,
        infos: RSlice<'_, ParamInfo>,
    ) -> RResult<ROption<RVec<TensorId>>, RString> {
        guarded(P::NAME, host, |ops| {
            if params.len() != infos.len() {
                return Err(format!("{} parameter tensors but {} descriptions", params.len(), infos.len()));
            }
            let tensors: Vec<_> = params.iter().map(|&id| ops.borrow(id)).collect();
            match self.0.grad_log_prob(ops, &tensors, infos.as_slice())? {
                None => Ok(ROption::RNone),
                Some(grads) if grads.len() == params.len() => {
                    Ok(ROption::RSome(grads.into_iter().map(|t| t.into_id()).collect()))
                }
                Some(grads) => Err(format!("grad_log_prob returned {} tensors for {}", grads.len(), params.len())),
            }
        })
    }

    fn isotropic_precision(&self, infos: RSlice<'_, ParamInfo>) -> RResult<ROption<RVec<f64>>, RString> {
        let answer = contained(P::NAME, || self.0.isotropic_precision(infos.as_slice())).and_then(|r| r);
        match answer {
            Ok(Some(p)) if p.len() == infos.len() => RResult::ROk(ROption::RSome(p.into_iter().collect())),
            Ok(Some(p)) => RResult::RErr(
                format!("isotropic_precision returned {} values for {} parameter tensors", p.len(), infos.len()).into(),
            ),
            Ok(None) => RResult::ROk(ROption::RNone),
            Err(e) => RResult::RErr(e.into()),
        }
    }
}

impl<I: Integrator> IntegratorObj for IntegratorGlue<I> {
    fn init(&mut self, host: &mut HostRef<'_>, params: TensorId) -> RResult<(), RString> {
        guarded(I::NAME, host, |ops| self.0.init(ops, &ops.borrow(params)))
    }

    fn step(&mut self, host: &mut HostRef<'_>, ctx: &StepCtx, t: &StepTensors) -> RResult<StepReport, RString> {
        guarded(I::NAME, host, |ops| {
            let view = StepView {
                params: ops.borrow(t.params),
                grad: ops.borrow(t.grad),
                mass: ops.borrow(t.mass),
                mass_inv: ops.borrow(t.mass_inv),
                mass_sqrt: ops.borrow(t.mass_sqrt),
                mass_inv_sqrt: ops.borrow(t.mass_inv_sqrt),
                temperature: if t.temperature == TensorId::INVALID {
                    Temperature::Shared(ctx.temperature)
                } else {
                    Temperature::PerChain(ops.borrow(t.temperature))
                },
            };
            self.0.step(ops, ctx, &view)
        })
    }

    fn rescale_momenta(&mut self, host: &mut HostRef<'_>, factor: TensorId) -> RResult<(), RString> {
        guarded(I::NAME, host, |ops| self.0.rescale_momenta(ops, &ops.borrow(factor)))
    }

    fn kinetic(&self, host: &mut HostRef<'_>, mass_inv: TensorId) -> RResult<ROption<TensorId>, RString> {
        guarded(I::NAME, host, |ops| Ok(self.0.kinetic(ops, &ops.borrow(mass_inv))?.map(|t| t.into_id()).into()))
    }

    fn batchable(&self) -> bool {
        contained_or(I::NAME, "batchable", false, || self.0.batchable())
    }
}

impl<N: NoiseModel> NoiseObj for NoiseGlue<N> {
    fn plan(&self, config_batch: u64, n: u64) -> GradientPlan {
        let failed = GradientPlan { gradient_batch: crate::abi::PLAN_FAILED };
        contained_or(N::NAME, "plan", failed, || self.0.plan(config_batch, n))
    }

    fn transform(
        &mut self,
        host: &mut HostRef<'_>,
        ctx: &StepCtx,
        grad: TensorId,
        stats: &NoiseStats,
    ) -> RResult<(), RString> {
        guarded(N::NAME, host, |ops| {
            let view = NoiseView {
                var_elementwise: ops.borrow(stats.var_elementwise),
                var_per_tensor: ops.borrow(stats.var_per_tensor),
                batch_size: stats.batch_size,
            };
            self.0.transform(ops, ctx, &ops.borrow(grad), &view)
        })
    }
}

impl<L: Likelihood> LikelihoodObj for LikelihoodGlue<L> {
    fn model(&self) -> ModelToggles {
        let failed = ModelToggles { norm: crate::abi::NormKind::None, dropout: f64::NAN };
        contained_or(L::NAME, "model", failed, || self.0.model())
    }

    fn effective_n(&self, examples: u64) -> f64 {
        contained_or(L::NAME, "effective_n", f64::NAN, || self.0.effective_n(examples))
    }

    fn augment(&mut self, host: &mut HostRef<'_>, images: TensorId) -> RResult<ROption<TensorId>, RString> {
        guarded(L::NAME, host, |ops| Ok(self.0.augment(ops, &ops.borrow(images))?.map(|t| t.into_id()).into()))
    }

    fn nll(&self, host: &mut HostRef<'_>, logits: TensorId, labels: TensorId) -> RResult<TensorId, RString> {
        guarded(L::NAME, host, |ops| self.0.nll(ops, &ops.borrow(logits), &ops.borrow(labels)).map(|t| t.into_id()))
    }
}

/// Items the export macro expands to. Not a stable API.
#[doc(hidden)]
pub mod __private {
    use super::*;

    pub fn info<F: Factory>(kind: FactorKind) -> FactoryInfo {
        FactoryInfo {
            kind,
            name: F::NAME.into(),
            description: F::DESCRIPTION.into(),
            params_json: specs_json(&F::params()).into(),
        }
    }

    pub fn unknown<T>(kind: &str, name: RStr<'_>) -> RResult<T, RString> {
        RResult::RErr(format!("this library has no {kind} named `{name}`").into())
    }

    pub fn new_prior<P: Prior>(params: RStr<'_>) -> RResult<PriorBox, RString> {
        construct::<P>(params).map(|p| PriorObj_TO::from_ptr(RBox::new(PriorGlue(p)), TD_Opaque)).into()
    }
    pub fn new_integrator<I: Integrator>(params: RStr<'_>) -> RResult<IntegratorBox, RString> {
        construct::<I>(params).map(|p| IntegratorObj_TO::from_ptr(RBox::new(IntegratorGlue(p)), TD_Opaque)).into()
    }
    pub fn new_noise<N: NoiseModel>(params: RStr<'_>) -> RResult<NoiseBox, RString> {
        construct::<N>(params).map(|p| NoiseObj_TO::from_ptr(RBox::new(NoiseGlue(p)), TD_Opaque)).into()
    }
    pub fn new_likelihood<L: Likelihood>(params: RStr<'_>) -> RResult<LikelihoodBox, RString> {
        construct::<L>(params).map(|p| LikelihoodObj_TO::from_ptr(RBox::new(LikelihoodGlue(p)), TD_Opaque)).into()
    }

    extern "C" fn sdk_version() -> RStr<'static> {
        RStr::from_str(crate::SDK_VERSION)
    }

    pub type NewFn<T> = extern "C" fn(RStr<'_>, RStr<'_>) -> RResult<T, RString>;

    pub fn module(
        factories: extern "C" fn() -> RVec<FactoryInfo>,
        build: extern "C" fn() -> RString,
        new_prior: NewFn<PriorBox>,
        new_integrator: NewFn<IntegratorBox>,
        new_noise: NewFn<NoiseBox>,
        new_likelihood: NewFn<LikelihoodBox>,
    ) -> PluginModule_Ref {
        PluginModule { sdk_version, build, factories, new_prior, new_integrator, new_noise, new_likelihood }
            .leak_into_prefix()
    }
}
