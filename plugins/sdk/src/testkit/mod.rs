//! Test kit for plugins (feature `testkit`): a pure-Rust reference host and conformance checks.
//!
//! - [`CpuHost`] implements the host's tensor table ([`crate::abi::TensorHost`]) on f64
//!   tensors, so plugin math runs in plain `cargo test` without libtorch. Use
//!   [`CpuHost::with_ops`] to call author traits directly, or [`CpuHost::host_ref`] to drive the
//!   boxed objects a library exports ([`integrator_box`], [`prior_box`], ...).
//! - The checks in [`harness`] need only a [`TestHost`]: a [`HostRef`] plus tensor upload,
//!   download and a potential function. [`CpuHost`] is one; the libtorch host can implement the
//!   same four methods and reuse every check.
//!
//! Statistics of the checks are documented on each function; tolerances come from the sample
//! (batch means, spread over independent coordinates), never from tuning.

mod cpu;
pub mod harness;
pub mod suite;

pub use cpu::{CpuHost, PotentialFn};
pub use harness::{
    batched_gaussian_target_temperatures, determinism_check, finite_difference_log_prob_grad,
    gaussian_target_temperature, param_info, prior_grad_log_prob, prior_log_prob, prior_logprob_check,
    prior_sample_moments, rescale_check, DeterminismCheck, GaussianTarget, GroupStat, LogProbCheck, SampleMoments,
    SamplerSettings, TemperatureCheck,
};

use abi_stable::std_types::RStr;

use crate::abi::{HostRef, IntegratorBox, LikelihoodBox, NoiseBox, PriorBox, TensorId};
use crate::glue::__private;
use crate::{Integrator, Likelihood, NoiseModel, Prior};

/// What the conformance checks need from a host beyond the plugin-facing table.
pub trait TestHost {
    /// The plugin-facing table.
    fn host_ref(&mut self) -> HostRef<'_>;
    /// Upload a tensor (row-major data).
    fn upload(&mut self, shape: &[i64], data: &[f64]) -> TensorId;
    /// Download a tensor's data (row-major).
    fn download(&mut self, id: TensorId) -> Vec<f64>;
    /// Install U(θ), ∇U(θ) for `potential` (full batch and minibatch alike); `None` removes it.
    fn set_potential(&mut self, f: Option<PotentialFn>);
    /// The first host error since the last call, clearing it.
    fn take_error(&mut self) -> Option<String>;
    /// Whether the host computes in float32 (the libtorch host in a run); the suite's
    /// tolerances follow. The CpuHost computes in f64.
    fn float32(&self) -> bool {
        false
    }
}

impl TestHost for CpuHost {
    fn host_ref(&mut self) -> HostRef<'_> {
        CpuHost::host_ref(self)
    }
    fn upload(&mut self, shape: &[i64], data: &[f64]) -> TensorId {
        self.insert(shape, data)
    }
    fn download(&mut self, id: TensorId) -> Vec<f64> {
        self.get(id).to_vec()
    }
    fn set_potential(&mut self, f: Option<PotentialFn>) {
        CpuHost::set_potential(self, f)
    }
    fn take_error(&mut self) -> Option<String> {
        CpuHost::take_error(self)
    }
}

/// Build the boxed object a library would export for author type `I` (parameters as JSON,
/// validated against `I::params()` exactly like the host does).
pub fn integrator_box<I: Integrator>(params_json: &str) -> Result<IntegratorBox, String> {
    __private::new_integrator::<I>(RStr::from_str(params_json)).into_result().map_err(|e| e.into_string())
}

/// See [`integrator_box`].
pub fn prior_box<P: Prior>(params_json: &str) -> Result<PriorBox, String> {
    __private::new_prior::<P>(RStr::from_str(params_json)).into_result().map_err(|e| e.into_string())
}

/// See [`integrator_box`].
pub fn noise_box<N: NoiseModel>(params_json: &str) -> Result<NoiseBox, String> {
    __private::new_noise::<N>(RStr::from_str(params_json)).into_result().map_err(|e| e.into_string())
}

/// See [`integrator_box`].
pub fn likelihood_box<L: Likelihood>(params_json: &str) -> Result<LikelihoodBox, String> {
    __private::new_likelihood::<L>(RStr::from_str(params_json)).into_result().map_err(|e| e.into_string())
}
