//! The conformance suite (`ablate_sdk::testkit::suite`) on the libtorch host: [`SuiteHost`]
//! implements the test kit's [`TestHost`] with float32 tensors, and [`run_suite`] runs every
//! check of one factory from a plugin library. `ablate plugins check FILE.so` prints its
//! result; `tests/suite.rs` runs it for every built-in plugin.

use ablate_plugin_host::{Factory, Registry};
use ablate_sdk::abi::{HostRef, TensorId};
use ablate_sdk::testkit::suite::{self, Check};
use ablate_sdk::testkit::{PotentialFn, TestHost};
use ablate_sdk::FactorKind;
use tch::{Device, Kind, Tensor};

use crate::host::TchHost;

/// The libtorch host as the test kit sees it: float32 tensors on `device`, libtorch's
/// generator seeded by [`SuiteHost::new`].
pub struct SuiteHost {
    host: TchHost<'static>,
    device: Device,
}

impl SuiteHost {
    /// A host on `device` whose random streams start from `seed`.
    pub fn new(device: Device, seed: u64) -> Self {
        tch::manual_seed(seed as i64);
        if device.is_cuda() {
            tch::Cuda::manual_seed_all(seed);
        }
        Self { host: TchHost::new(), device }
    }

    /// Number of live tensor handles (leak checks).
    pub fn live(&self) -> usize {
        self.host.live()
    }
}

fn to_f64(t: &Tensor) -> Vec<f64> {
    t.detach()
        .f_to_kind(Kind::Double)
        .and_then(|t| t.f_to_device(Device::Cpu))
        .and_then(|t| t.f_reshape([-1]))
        .and_then(|t| Vec::<f64>::try_from(&t))
        .unwrap_or_default()
}

impl TestHost for SuiteHost {
    fn host_ref(&mut self) -> HostRef<'_> {
        self.host.host_ref()
    }

    fn upload(&mut self, shape: &[i64], data: &[f64]) -> TensorId {
        let t = Tensor::from_slice(data).to_kind(Kind::Float).reshape(shape).to_device(self.device);
        self.host.insert(t)
    }

    fn download(&mut self, id: TensorId) -> Vec<f64> {
        self.host.get(id).map(to_f64).unwrap_or_default()
    }

    fn set_potential(&mut self, f: Option<PotentialFn>) {
        let Some(mut f) = f else {
            self.host.clear_potential();
            return;
        };
        let device = self.device;
        self.host.set_potential(Box::new(move |theta: &Tensor, _full_batch: bool| {
            // θ comes from the integrator under test: a wrong size is its error, not a panic.
            let (u, g) = f(&to_f64(theta));
            let float = |t: Tensor, shape: &[i64]| t.f_to_kind(Kind::Float)?.f_reshape(shape)?.f_to_device(device);
            let grad = float(Tensor::from_slice(&g), &theta.size()).map_err(|e| {
                format!("the potential's gradient ({} values) for θ of shape {:?}: {e}", g.len(), theta.size())
            })?;
            Ok((float(Tensor::from(u), &[]).map_err(|e| e.to_string())?, grad))
        }));
    }

    fn take_error(&mut self) -> Option<String> {
        self.host.take_error()
    }

    fn float32(&self) -> bool {
        true
    }
}

/// Every conformance check of `factory` (built with default parameters) on a fresh
/// [`SuiteHost`] on `device`, seeded 1. A factory that cannot be built fails a `builds` check.
pub fn run_suite(registry: &Registry, factory: &Factory, device: Device) -> Vec<Check> {
    let defaults = serde_json::json!({});
    let mut host = SuiteHost::new(device, 1);
    let built = |e: ablate_plugin_host::PluginError| {
        vec![Check { name: "builds", outcome: suite::Outcome::Fail(e.to_string()) }]
    };
    match factory.kind {
        FactorKind::Prior => match registry.prior(&factory.name, &defaults) {
            Ok(p) => suite::prior_checks(&mut host, &p),
            Err(e) => built(e),
        },
        FactorKind::Integrator => {
            if let Err(e) = registry.integrator(&factory.name, &defaults) {
                return built(e);
            }
            suite::integrator_checks(&mut host, &mut || {
                registry.integrator(&factory.name, &defaults).map_err(|e| e.to_string())
            })
        }
        FactorKind::Likelihood => match registry.likelihood(&factory.name, &defaults) {
            Ok(mut l) => suite::likelihood_checks(&mut host, &mut l),
            Err(e) => built(e),
        },
        FactorKind::Noise => match registry.noise(&factory.name, &defaults) {
            Ok(mut n) => suite::noise_checks(&mut host, &mut n),
            Err(e) => built(e),
        },
    }
}
