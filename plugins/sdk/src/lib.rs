//! # ablate-sdk: write a factor of the cold-posterior ablation as a plugin
//!
//! A plugin library (`crate-type = ["cdylib"]`) offers factories of four kinds:
//!
//! | kind | trait | what it decides |
//! |---|---|---|
//! | prior | [`Prior`] | log p(θ) over the parameter tensors, and prior draws |
//! | likelihood | [`Likelihood`] | model toggles (batch norm, FRN, dropout), augmentation, the NLL, the effective n |
//! | integrator | [`Integrator`] | one step of the SDE discretisation, with its own state |
//! | noise | [`NoiseModel`] | how the gradient is estimated and perturbed each step |
//!
//! Plugin math runs on the host's tensors through [`Ops`] and [`Tensor`]: plugins never link
//! libtorch, tensors stay on their device, the host differentiates a prior's `log_prob`, and the
//! host owns the random streams, so a plugin cannot break a run's reproducibility.
//!
//! ```ignore
//! use ablate_sdk::prelude::*;
//!
//! pub struct Gaussian { scale: f64 }
//! impl Factory for Gaussian {
//!     const NAME: &'static str = "my-gaussian";
//!     const DESCRIPTION: &'static str = "N(0, scale²) on every weight and bias";
//!     fn params() -> Vec<ParamSpec> { vec![ParamSpec::float("scale", 1.0, "standard deviation").at_least(1e-12)] }
//!     fn new(p: &Params) -> Result<Self, String> { Ok(Self { scale: p.f64("scale") }) }
//! }
//! impl Prior for Gaussian {
//!     fn log_prob<'o>(&self, _ops: Ops<'o>, params: &[Tensor<'o>], _infos: &[ParamInfo]) -> Result<Tensor<'o>, String> { ... }
//! }
//! ablate_sdk::export_plugin! { priors: [Gaussian], likelihoods: [], integrators: [], noise: [] }
//! ```
//! Every call is wrapped by the SDK glue: a panic becomes an error for that use, never an abort.

#![warn(missing_docs)]

pub mod abi;
pub mod draws;
mod glue;
pub mod math;
pub mod params;
pub mod range;
pub mod shapes;
pub mod tensor;
#[cfg(feature = "testkit")]
pub mod testkit;

pub use abi::{
    FactorKind, GradientPlan, ModelToggles, NoiseStats, NormKind, ParamInfo, Role, StepCtx, StepReport, StepTensors,
    TensorId,
};
pub use params::{ParamSpec, ParamType, Params};
pub use tensor::{HostCell, Ops, Tensor};

#[doc(hidden)]
pub use abi_stable;
#[doc(hidden)]
pub use glue::__private;

/// Version of the plugin interface. The host refuses a library built with another version.
#[cfg(not(feature = "sdk-version-mismatch-for-tests"))]
pub const SDK_VERSION: &str = "ablate-sdk 4";
#[cfg(feature = "sdk-version-mismatch-for-tests")]
pub const SDK_VERSION: &str = "ablate-sdk 0-test-mismatch";

/// The exported symbol abi_stable looks up (checked against abi_stable in the tests).
#[doc(hidden)]
pub const ROOT_MODULE_SYMBOL: &str = "_1as_0lib_1header_0root_bmodule_bloader";

/// Name, description and parameters of a factory; construction from validated parameters.
pub trait Factory: Sized + Send + 'static {
    /// Unique name used in grid files (`"prior": {"name": NAME}`).
    const NAME: &'static str;
    /// One line for `ablate plugins list`.
    const DESCRIPTION: &'static str;
    /// Published parameter descriptions (defaults, ranges, docs).
    fn params() -> Vec<ParamSpec>;
    /// Build from validated parameters; return an error (never panic) on bad combinations.
    fn new(params: &Params) -> Result<Self, String>;
}

/// A prior over the network parameters.
pub trait Prior: Factory {
    /// log p(θ) as a 0-d tensor, normalising constants included. `params[i]` is described by
    /// `infos[i]`. Build it from differentiable ops: the host takes its gradient. Not divided
    /// by n: the host forms U = n·mean NLL − log p and scales by 1/n itself.
    fn log_prob<'o>(&self, ops: Ops<'o>, params: &[Tensor<'o>], infos: &[ParamInfo]) -> Result<Tensor<'o>, String>;
    /// A prior draw shaped like `like`; `None` if this prior does not cover the tensor's role.
    fn sample<'o>(&self, ops: Ops<'o>, info: &ParamInfo, like: &Tensor<'o>) -> Result<Option<Tensor<'o>>, String>;
    /// ∇ log p(θ) per tensor in closed form, if there is one (faster than the host's autograd
    /// through `log_prob`; must equal it, which the conformance kit checks); `None` = autograd.
    fn grad_log_prob<'o>(
        &self,
        _ops: Ops<'o>,
        _params: &[Tensor<'o>],
        _infos: &[ParamInfo],
    ) -> Result<Option<Vec<Tensor<'o>>>, String> {
        Ok(None)
    }
    /// If this prior is a zero-mean isotropic Gaussian N(0, σ_i²) on each parameter tensor i:
    /// the precisions 1/σ_i², one per entry of `infos` (0 for tensors it does not cover), so that
    /// ∇ log p(θ) = −P ⊙ θ. The host then adds the prior's gradient to the flat gradient in one
    /// fused operation instead of calling `grad_log_prob` tensor by tensor. It must agree with
    /// `log_prob` (the host checks it at run start, the conformance kit with finite differences);
    /// `None` (the default) for any other prior.
    fn isotropic_precision(&self, _infos: &[ParamInfo]) -> Result<Option<Vec<f64>>, String> {
        Ok(None)
    }
}

/// The tensors of one step as plugin code sees them (all flat, borrowed from the host).
///
/// In a batched run (see [`Integrator::batchable`]) every tensor has a leading chain dimension,
/// [K, d], and `temperature` may differ per chain.
pub struct StepView<'o> {
    /// Flat parameters θ (\[d\], or \[K, d\] for K batched chains); the integrator updates them in place.
    pub params: Tensor<'o>,
    /// ∇ of the per-example mean loss G̃ = mean NLL − (1/n)·log p(θ); ∇U = n·grad.
    pub grad: Tensor<'o>,
    /// Mass M (one value per parameter tensor, broadcast to elements).
    pub mass: Tensor<'o>,
    /// M⁻¹, flat.
    pub mass_inv: Tensor<'o>,
    /// M^{1/2}, flat.
    pub mass_sqrt: Tensor<'o>,
    /// M^{-1/2}, flat.
    pub mass_inv_sqrt: Tensor<'o>,
    /// The temperature of this step (per chain in batched runs).
    pub temperature: Temperature<'o>,
}

/// The temperature of a step: one value for all chains, or one per chain ([K, 1], broadcast
/// against [K, d] parameters). Write noise and thermostat terms through it and an integrator
/// works for single and batched chains alike.
pub enum Temperature<'o> {
    /// One temperature for every chain.
    Shared(f64),
    /// One temperature per chain, [K, 1].
    PerChain(Tensor<'o>),
}

impl<'o> Temperature<'o> {
    /// ξ·sqrt(coef·T) with ξ ~ N(0, I) shaped like `like` (T per chain). With one shared T,
    /// `None` when coef·T is 0, so that a T = 0 step draws nothing and is exactly deterministic;
    /// per chain it always draws (rows at T = 0 get zero noise). ξ comes from libtorch's
    /// generator, which batch-mates share: a chain's draws then depend on its batch. The host op
    /// `ou_update` (used by the built-in Langevin integrators) draws from a stream per chain
    /// instead, so that a batched chain is the chain run alone.
    pub fn noise(&self, ops: Ops<'o>, like: &Tensor<'o>, coef: f64) -> Option<Tensor<'o>> {
        match self {
            Temperature::Shared(t) => (coef * t > 0.0).then(|| ops.randn_like(like) * (coef * t).sqrt()),
            Temperature::PerChain(t) => Some(ops.randn_like(like) * &(t * coef).sqrt()),
        }
    }

    /// x − T (thermostats).
    pub fn subtract_from(&self, x: Tensor<'o>) -> Tensor<'o> {
        match self {
            Temperature::Shared(t) => x - *t,
            Temperature::PerChain(t) => &x - t,
        }
    }
}

/// One discretisation of the (underdamped or overdamped) Langevin SDE.
pub trait Integrator: Factory {
    /// Create the state for the flat parameter vector (keep handles with [`Tensor::into_id`]).
    fn init<'o>(&mut self, ops: Ops<'o>, params: &Tensor<'o>) -> Result<(), String>;
    /// Update `t.params` in place.
    fn step<'o>(&mut self, ops: Ops<'o>, ctx: &StepCtx, t: &StepView<'o>) -> Result<StepReport, String>;
    /// The mass changed: momenta ← factor ⊙ momenta with factor = sqrt(M_new/M_old).
    fn rescale_momenta<'o>(&mut self, ops: Ops<'o>, factor: &Tensor<'o>) -> Result<(), String>;
    /// Elementwise m ⊙ M⁻¹ m (kinetic temperature); `None` for first-order methods.
    fn kinetic<'o>(&self, ops: Ops<'o>, mass_inv: &Tensor<'o>) -> Result<Option<Tensor<'o>>, String>;
    /// Whether `step` works on batched chains ([K, d] tensors, per-chain [`Temperature`]):
    /// true for elementwise updates whose noise and thermostat terms go through
    /// `t.temperature`; false (the default) for anything that reduces over all parameters.
    fn batchable(&self) -> bool {
        false
    }
}

/// How the gradient is estimated (minibatch size) and transformed each step.
pub trait NoiseModel: Factory {
    /// Examples per gradient for a configured minibatch `config_batch` out of `n` (0 = full batch).
    fn plan(&self, config_batch: u64, n: u64) -> GradientPlan;
    /// Transform `grad` in place (e.g. add matched Gaussian noise); default: leave it.
    ///
    /// `grad` is the minibatch estimate of ∇G̃, before any temperature: the integrator scales
    /// its own injected noise by T. Do not scale by `ctx.temperature`: in a batched run of
    /// chains at different temperatures it is the largest of them (`StepCtx::temperature`), so
    /// a transform that read it would give every chain the hottest chain's noise.
    fn transform<'o>(
        &mut self,
        ops: Ops<'o>,
        ctx: &StepCtx,
        grad: &Tensor<'o>,
        stats: &NoiseView<'o>,
    ) -> Result<(), String>;
}

/// Measured minibatch noise as plugin code sees it.
pub struct NoiseView<'o> {
    /// Per-element variance of a minibatch-mean gradient at `batch_size`.
    pub var_elementwise: Tensor<'o>,
    /// The same, averaged within each parameter tensor (broadcast to elements).
    pub var_per_tensor: Tensor<'o>,
    /// The minibatch size the variances were measured at.
    pub batch_size: u64,
}

/// The likelihood and the "dirty" parts of the model around it.
pub trait Likelihood: Factory {
    /// The model toggles (normalisation layers, dropout) this likelihood needs.
    fn model(&self) -> ModelToggles;
    /// n that enters U = n·G, given the number of training examples.
    fn effective_n(&self, examples: u64) -> f64;
    /// Transform a training batch; `None` = unchanged.
    fn augment<'o>(&mut self, ops: Ops<'o>, images: &Tensor<'o>) -> Result<Option<Tensor<'o>>, String>;
    /// Mean negative log-likelihood of the batch (0-d).
    fn nll<'o>(&self, ops: Ops<'o>, logits: &Tensor<'o>, labels: &Tensor<'o>) -> Result<Tensor<'o>, String>;
}

/// Everything a plugin author needs.
pub mod prelude {
    pub use crate::{
        Factory, GradientPlan, Integrator, Likelihood, ModelToggles, NoiseModel, NoiseView, NormKind, Ops, ParamInfo,
        ParamSpec, Params, Prior, Role, StepCtx, StepReport, StepView, Temperature, Tensor,
    };
}

/// Export the root module of a plugin library: list every factory by kind (lists may be empty).
///
/// ```ignore
/// ablate_sdk::export_plugin! {
///     priors: [Gaussian, Laplace],
///     likelihoods: [],
///     integrators: [SymplecticEuler],
///     noise: [],
/// }
/// ```
#[macro_export]
macro_rules! export_plugin {
    (
        priors: [$($prior:ty),* $(,)?],
        likelihoods: [$($lik:ty),* $(,)?],
        integrators: [$($int:ty),* $(,)?],
        noise: [$($noise:ty),* $(,)?] $(,)?
    ) => {
        #[doc(hidden)]
        mod __ablate_plugin_exports {
            #[allow(unused_imports)]
            use super::*;
            use $crate::__private as p;
            use $crate::abi_stable::std_types::{RResult, RStr, RString, RVec};

            extern "C" fn factories() -> RVec<$crate::abi::FactoryInfo> {
                let mut v = RVec::new();
                $( v.push(p::info::<$prior>($crate::FactorKind::Prior)); )*
                $( v.push(p::info::<$lik>($crate::FactorKind::Likelihood)); )*
                $( v.push(p::info::<$int>($crate::FactorKind::Integrator)); )*
                $( v.push(p::info::<$noise>($crate::FactorKind::Noise)); )*
                v
            }
            extern "C" fn new_prior(name: RStr<'_>, params: RStr<'_>) -> RResult<$crate::abi::PriorBox, RString> {
                $( if name.as_str() == <$prior as $crate::Factory>::NAME { return p::new_prior::<$prior>(params); } )*
                p::unknown("prior", name)
            }
            extern "C" fn new_likelihood(name: RStr<'_>, params: RStr<'_>) -> RResult<$crate::abi::LikelihoodBox, RString> {
                $( if name.as_str() == <$lik as $crate::Factory>::NAME { return p::new_likelihood::<$lik>(params); } )*
                p::unknown("likelihood", name)
            }
            extern "C" fn new_integrator(name: RStr<'_>, params: RStr<'_>) -> RResult<$crate::abi::IntegratorBox, RString> {
                $( if name.as_str() == <$int as $crate::Factory>::NAME { return p::new_integrator::<$int>(params); } )*
                p::unknown("integrator", name)
            }
            extern "C" fn new_noise(name: RStr<'_>, params: RStr<'_>) -> RResult<$crate::abi::NoiseBox, RString> {
                $( if name.as_str() == <$noise as $crate::Factory>::NAME { return p::new_noise::<$noise>(params); } )*
                p::unknown("noise", name)
            }
            extern "C" fn build() -> RString {
                RString::from(concat!(env!("CARGO_PKG_NAME"), " ", env!("CARGO_PKG_VERSION")))
            }
            fn root_module() -> $crate::abi::PluginModule_Ref {
                p::module(factories, build, new_prior, new_integrator, new_noise, new_likelihood)
            }

            #[unsafe(export_name = "_1as_0lib_1header_0root_bmodule_bloader")]
            pub static ABLATE_PLUGIN_LIB_HEADER: $crate::abi_stable::library::LibHeader = {
                extern "C" fn erased() -> $crate::abi_stable::library::RootModuleResult {
                    $crate::abi_stable::library::__call_root_module_loader(root_module)
                }
                unsafe {
                    $crate::abi_stable::library::LibHeader::from_constructor::<$crate::abi::PluginModule_Ref>(
                        erased,
                        $crate::abi_stable::library::CheckTypeLayout::Yes,
                    )
                }
            };
        }
    };
}

#[cfg(test)]
mod tests {
    #[test]
    fn root_module_symbol_matches_abi_stable() {
        assert_eq!(super::ROOT_MODULE_SYMBOL, abi_stable::library::ROOT_MODULE_LOADER_NAME);
    }
}
