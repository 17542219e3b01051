//! A chain whose loss, gradient or kinetic temperature is NaN/Inf ends `diverged` at that step,
//! never `done`, also while its parameters are still finite.
// Tests may unwrap (a panic is the failure report) and be long (one scenario per test).
#![allow(clippy::unwrap_used, clippy::too_many_lines)]

mod common;

use ablate_engine::chain::{ChainSettings, Gradient, Objective};
use ablate_engine::host::TchHost;
use ablate_engine::ChainStatus;
use ablate_sdk::{ParamInfo, Role};
use common::*;
use tch::{Device, Kind, Tensor};

/// U(θ) = c·Σθ (a constant gradient `slope`), with the training gradient replaced by NaN at
/// training step `nan_at` (if any).
struct Ramp {
    infos: Vec<ParamInfo>,
    dim: i64,
    slope: f64,
    nan_at: Option<u64>,
    train_steps: u64,
}

impl Ramp {
    fn new(dim: i64, slope: f64, nan_at: Option<u64>) -> Self {
        let infos = vec![ParamInfo::new("w.weight", "w", Role::Weight, &[dim], dim, 1, 0)];
        Self { infos, dim, slope, nan_at, train_steps: 0 }
    }
}

impl Objective for Ramp {
    fn chains(&self) -> usize {
        1
    }
    fn infos(&self) -> &[ParamInfo] {
        &self.infos
    }
    fn dim(&self) -> i64 {
        self.dim
    }
    fn n(&self) -> f64 {
        1.0
    }
    fn device(&self) -> Device {
        Device::Cpu
    }
    fn gradient(
        &mut self,
        _: &mut TchHost<'_>,
        theta: &Tensor,
        _: u64,
        train: bool,
    ) -> Result<Gradient, ablate_engine::EngineError> {
        let _guard = tch::no_grad_guard();
        if train {
            self.train_steps += 1;
        }
        let value = if train && self.nan_at == Some(self.train_steps) { f64::NAN } else { self.slope };
        let grad = theta.ones_like() * value;
        Ok(Gradient { grad, loss_sum: Tensor::zeros([], (Kind::Float, Device::Cpu)), correct: None, count: 1 })
    }
}

fn settings() -> ChainSettings {
    ChainSettings { lr: 0.01, momentum_decay: 0.9, batch_size: 1, layerwise_mass: false, precond_batches: 1 }
}

#[test]
fn an_overflowing_kinetic_temperature_with_finite_parameters_is_divergence() {
    // h = sqrt(lr/n) = 0.1: one step gives momenta of −h·n·1e21 = −1e20 (finite in f32) and
    // θ = −1e19 (finite), but m²/M = 1e40 overflows: the kinetic temperature is +Inf.
    let mut ramp = Ramp::new(64, 1e21, None);
    let theta = Tensor::zeros([64], (Kind::Float, Device::Cpu));
    let out = chain(&mut ramp, &theta, "sym-euler", &protocol(3, 2, 0.0), &settings(), &mut Silent);
    assert!(!common_nonfinite(&out.theta), "θ stays finite: {:?}", out.theta.max());
    match &out.status {
        ChainStatus::Diverged { step, message } => {
            assert_eq!(*step, 2, "at the end of the first epoch");
            assert!(message.contains("kinetic temperature became inf"), "{message}");
        }
        ChainStatus::Done => panic!("ended done with kinetic temperatures {:?}", out.epochs),
    }
    assert!(out.epochs.is_empty(), "no epoch row with an infinite kinetic temperature");
}

#[test]
fn a_nan_gradient_is_divergence_at_its_step() {
    let mut ramp = Ramp::new(64, 1e-3, Some(5));
    let theta = Tensor::zeros([64], (Kind::Float, Device::Cpu));
    let out = chain(&mut ramp, &theta, "sym-euler", &protocol(3, 4, 0.0), &settings(), &mut Silent);
    match &out.status {
        ChainStatus::Diverged { step, message } => {
            assert_eq!(*step, 5);
            assert!(message.contains("gradient became NaN/Inf at step 5 (epoch 2)"), "{message}");
        }
        ChainStatus::Done => panic!("ended done"),
    }
    // The first epoch (steps 1–4) was finite and kept its row.
    assert_eq!(out.epochs.len(), 1);
    assert!(out.epochs[0].kinetic_temperature.is_finite());
}

struct Silent;
impl ablate_engine::chain::Observer for Silent {}

fn common_nonfinite(t: &Tensor) -> bool {
    !f64::try_from(t.sum(Kind::Double)).unwrap().is_finite()
}
