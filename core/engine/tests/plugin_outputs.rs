//! Plugin outputs of the wrong shape fail the call with an error naming the plugin, the call
//! and the tensor (they used to panic inside the engine), and the chain loop releases every
//! host handle it lent, also when it stops on such an error.
// Tests may unwrap (a panic is the failure report) and be long (one scenario per test).
#![allow(clippy::unwrap_used, clippy::too_many_lines)]

mod common;

use ablate_engine::chain::{run_chain, ChainSettings, Factor, Observer};
use ablate_engine::host::TchHost;
use ablate_engine::EngineError;
use ablate_sdk::{Factory, Integrator, Ops, ParamSpec, Params, StepCtx, StepReport, StepView, Tensor};
use common::{minibatch, protocol, Gaussian};

struct Quiet;
impl Observer for Quiet {}

/// A momentum-free integrator whose `kinetic` returns one number (Σ M⁻¹) instead of the
/// elementwise m⊙M⁻¹m shaped like θ.
struct ScalarKinetic;

impl Factory for ScalarKinetic {
    const NAME: &'static str = "scalar-kinetic";
    const DESCRIPTION: &'static str = "kinetic returns a scalar (test fixture)";
    fn params() -> Vec<ParamSpec> {
        Vec::new()
    }
    fn new(_: &Params) -> Result<Self, String> {
        Ok(Self)
    }
}

impl Integrator for ScalarKinetic {
    fn init<'o>(&mut self, _: Ops<'o>, _: &Tensor<'o>) -> Result<(), String> {
        Ok(())
    }
    fn step<'o>(&mut self, _: Ops<'o>, _: &StepCtx, _: &StepView<'o>) -> Result<StepReport, String> {
        Ok(StepReport { acceptance: f64::NAN })
    }
    fn rescale_momenta<'o>(&mut self, _: Ops<'o>, _: &Tensor<'o>) -> Result<(), String> {
        Ok(())
    }
    fn kinetic<'o>(&self, _: Ops<'o>, mass_inv: &Tensor<'o>) -> Result<Option<Tensor<'o>>, String> {
        Ok(Some(mass_inv.sum()))
    }
}

#[test]
fn a_wrongly_shaped_kinetic_tensor_is_an_error_naming_plugin_call_and_tensor() {
    let mut objective = Gaussian::new(8, 0.5, 2.0, 2, 100.0);
    let theta = objective.stationary(1.0);
    let obj = ablate_sdk::testkit::integrator_box::<ScalarKinetic>("{}").unwrap();
    let mut integrator = Factor::new(obj, "integrator", "scalar-kinetic", "/plugins/libfixture.so");
    let mut noise = minibatch();
    let settings =
        ChainSettings { lr: 1e-3, momentum_decay: 0.9, batch_size: 1, layerwise_mass: true, precond_batches: 2 };
    let mut host = TchHost::new();
    let err = run_chain(
        &mut objective,
        &theta,
        &mut integrator,
        &mut noise,
        &protocol(2, 5, 1.0),
        &settings,
        &mut host,
        &mut Quiet,
    )
    .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, EngineError::PluginCall { .. }), "{msg}");
    for part in ["scalar-kinetic", "/plugins/libfixture.so", "kinetic", "m⊙M⁻¹m", "shape []", "expected [8]"] {
        assert!(msg.contains(part), "`{part}` missing in: {msg}");
    }
    assert_eq!(host.live(), 0, "every handle lent by the chain loop is released on the error path");
}
