//! Analytic objectives driven through the engine's real chain loop.
#![allow(dead_code)]

use ablate_engine::chain::{run_chain, ChainOutcome, ChainSettings, Factor, Gradient, Objective, Observer};
use ablate_engine::host::TchHost;
use ablate_engine::schedule::Protocol;
use ablate_grid::config::{SamplerConfig, Schedule};
use ablate_sdk::{ParamInfo, Role};
use tch::{Device, Kind, Tensor};

/// U(θ) = n·Σ θ²/(2σ²)/n: a diagonal Gaussian with standard deviations `sigmas`, split into
/// `tensors` equal parameter tensors (so the layerwise preconditioner has something to do).
pub struct Gaussian {
    pub inv_var: Tensor,
    pub sigmas: Vec<f64>,
    pub infos: Vec<ParamInfo>,
    pub n: f64,
    /// Chains sampled at once (θ [K, d] when K > 1).
    pub chains: usize,
}

impl Gaussian {
    pub fn new(dim: usize, sigma_min: f64, sigma_max: f64, tensors: usize, n: f64) -> Self {
        let sigmas: Vec<f64> =
            (0..dim).map(|i| sigma_min * (sigma_max / sigma_min).powf(i as f64 / (dim - 1) as f64)).collect();
        let per = (dim / tensors) as i64;
        let infos = (0..tensors)
            .map(|t| {
                ParamInfo::new(&format!("t{t}.weight"), &format!("t{t}"), Role::Weight, &[per], per, 1, t as i64 * per)
            })
            .collect();
        let inv: Vec<f32> = sigmas.iter().map(|s| (1.0 / (s * s)) as f32).collect();
        Self { inv_var: Tensor::from_slice(&inv), sigmas, infos, n, chains: 1 }
    }

    /// A stationary draw θ ~ N(0, T σ²).
    pub fn stationary(&self, t: f64) -> Tensor {
        let s: Vec<f32> = self.sigmas.iter().map(|s| (s * t.sqrt()) as f32).collect();
        Tensor::randn([s.len() as i64], (Kind::Float, Device::Cpu)) * Tensor::from_slice(&s)
    }
}

impl Objective for Gaussian {
    fn chains(&self) -> usize {
        self.chains
    }
    fn infos(&self) -> &[ParamInfo] {
        &self.infos
    }
    fn dim(&self) -> i64 {
        self.sigmas.len() as i64
    }
    fn n(&self) -> f64 {
        self.n
    }
    fn device(&self) -> Device {
        Device::Cpu
    }
    fn gradient(
        &mut self,
        _: &mut TchHost<'_>,
        theta: &Tensor,
        _: u64,
        _: bool,
    ) -> Result<Gradient, ablate_engine::EngineError> {
        let _guard = tch::no_grad_guard();
        let grad = theta * &self.inv_var / self.n;
        let loss = (theta.square() * &self.inv_var).sum_dim_intlist(-1, false, Kind::Float) * 0.5 / self.n;
        Ok(Gradient { grad, loss_sum: loss, correct: None, count: 1 })
    }
}

/// Per-step sums of θ and θθᵀ-style statistics, recorded after `burn_in` steps.
pub struct Recorder {
    pub burn_in: u64,
    pub batches: usize,
    pub steps_per_batch: u64,
    /// Per batch: sum of θ², sum of θ over its steps.
    pub sq: Vec<Tensor>,
    pub lin: Vec<Tensor>,
    pub outer: Vec<Tensor>,
    pub keep_outer: bool,
}

impl Recorder {
    pub fn new(burn_in: u64, batches: usize, steps_per_batch: u64, keep_outer: bool) -> Self {
        Self { burn_in, batches, steps_per_batch, sq: Vec::new(), lin: Vec::new(), outer: Vec::new(), keep_outer }
    }
}

impl Observer for Recorder {
    fn step(&mut self, k: u64, theta: &Tensor, _: &mut TchHost<'_>) {
        if k <= self.burn_in {
            return;
        }
        let b = ((k - self.burn_in - 1) / self.steps_per_batch) as usize;
        if b >= self.batches {
            return;
        }
        let th = theta.detach().to_kind(Kind::Double);
        if self.sq.len() <= b {
            self.sq.push(th.zeros_like());
            self.lin.push(th.zeros_like());
            if self.keep_outer {
                self.outer.push(th.unsqueeze(1).matmul(&th.unsqueeze(0)).zeros_like());
            }
        }
        self.sq[b] += th.square();
        self.lin[b] += &th;
        if self.keep_outer {
            self.outer[b] += th.unsqueeze(1).matmul(&th.unsqueeze(0));
        }
    }
}

/// Mean and standard error over values (population sd / sqrt(count)).
pub fn mean_se(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let m = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0);
    (m, (var / n).sqrt())
}

pub fn protocol(epochs: usize, steps_per_epoch: u64, temperature: f64) -> Protocol {
    let cfg = SamplerConfig {
        epochs,
        cycle_length: 1,
        cycle_start_sampling: epochs + 1,
        schedule: Schedule::Flat,
        temperature_ramp: false,
        ..Default::default()
    };
    Protocol::new(&cfg, steps_per_epoch, temperature)
}

pub fn integrator(name: &str, params: &str) -> Factor<ablate_sdk::abi::IntegratorBox> {
    use ablate_plugin_integrators as p;
    let obj = match name {
        "sym-euler" => ablate_sdk::testkit::integrator_box::<p::NaiveSymplecticEulerMCMC>(params),
        "baoab" => ablate_sdk::testkit::integrator_box::<p::Baoab>(params),
        "hmc" => ablate_sdk::testkit::integrator_box::<p::Hmc>(params),
        "sgld" => ablate_sdk::testkit::integrator_box::<p::Sgld>(params),
        "obabo" => ablate_sdk::testkit::integrator_box::<p::Obabo>(params),
        "bbk" => ablate_sdk::testkit::integrator_box::<p::Bbk>(params),
        "spv" => ablate_sdk::testkit::integrator_box::<p::StochasticPositionVerlet>(params),
        "msgnht" => ablate_sdk::testkit::integrator_box::<p::MultivariateNoseHoover>(params),
        other => panic!("test integrator {other} not wired"),
    }
    .unwrap();
    Factor::new(obj, "integrator", name, "(linked for tests)")
}

/// The `minibatch` noise model (the gradient as the objective estimates it), inline: a second
/// plugin crate cannot be linked next to the integrators (both export the root-module symbol).
pub struct Minibatch;
impl ablate_sdk::Factory for Minibatch {
    const NAME: &'static str = "minibatch";
    const DESCRIPTION: &'static str = "unbiased minibatch gradient at the configured batch";
    fn params() -> Vec<ablate_sdk::ParamSpec> {
        Vec::new()
    }
    fn new(_: &ablate_sdk::Params) -> Result<Self, String> {
        Ok(Self)
    }
}
impl ablate_sdk::NoiseModel for Minibatch {
    fn plan(&self, config_batch: u64, _: u64) -> ablate_sdk::GradientPlan {
        ablate_sdk::GradientPlan { gradient_batch: config_batch }
    }
    fn transform<'o>(
        &mut self,
        _: ablate_sdk::Ops<'o>,
        _: &ablate_sdk::StepCtx,
        _: &ablate_sdk::Tensor<'o>,
        _: &ablate_sdk::NoiseView<'o>,
    ) -> Result<(), String> {
        Ok(())
    }
}

pub fn minibatch() -> Factor<ablate_sdk::abi::NoiseBox> {
    let obj = ablate_sdk::testkit::noise_box::<Minibatch>("{}").unwrap();
    Factor::new(obj, "noise", "minibatch", "(linked for tests)")
}

pub fn chains(
    objective: &mut dyn Objective,
    theta: &Tensor,
    integrator_name: &str,
    protocols: &[Protocol],
    settings: &ChainSettings,
    observer: &mut dyn Observer,
) -> Vec<ChainOutcome> {
    let mut integ = integrator(integrator_name, "{}");
    let mut noise = minibatch();
    let mut host = TchHost::new();
    ablate_engine::chain::run_chains(objective, theta, &mut integ, &mut noise, protocols, settings, &mut host, observer)
        .unwrap()
}

pub fn chain(
    objective: &mut dyn Objective,
    theta: &Tensor,
    integrator_name: &str,
    protocol: &Protocol,
    settings: &ChainSettings,
    observer: &mut dyn Observer,
) -> ChainOutcome {
    let mut integ = integrator(integrator_name, "{}");
    let mut noise = minibatch();
    let mut host = TchHost::new();
    run_chain(objective, theta, &mut integ, &mut noise, protocol, settings, &mut host, observer).unwrap()
}

/// K chains at the given temperatures, batched, on a 1000-coordinate Gaussian: each chain's
/// per-coordinate variance ratio and kinetic temperature must match its own T within 4.5
/// standard errors (see `batched_chains.rs` for the statistics).
pub fn check_batched_temperatures(integrator: &str, temperatures: &[f64], layerwise_mass: bool) {
    const Z: f64 = 4.5;
    tch::manual_seed(11);
    let k = temperatures.len();
    let mut target = Gaussian::new(1000, 0.1, 10.0, 10, 1.0);
    target.chains = k;
    let settings =
        ChainSettings { lr: 2.5e-5, momentum_decay: 0.999, batch_size: 1, layerwise_mass, precond_batches: 2 };
    let (epochs, spe) = (16, 2000);
    let protocols: Vec<_> = temperatures.iter().map(|&t| protocol(epochs, spe, t)).collect();
    let theta = Tensor::stack(&temperatures.iter().map(|&t| target.stationary(t)).collect::<Vec<_>>(), 0);
    let burn_in = 4 * spe;
    let mut rec = Recorder::new(burn_in, 12, spe, false);
    let outs = chains(&mut target, &theta, integrator, &protocols, &settings, &mut rec);
    assert_eq!(outs.len(), k);

    let steps = (rec.sq.len() as u64 * spe) as f64;
    let total = rec.sq.iter().fold(rec.sq[0].zeros_like(), |a, b| a + b);
    for (j, (&t, out)) in temperatures.iter().zip(&outs).enumerate() {
        assert_eq!(out.status, ablate_engine::ChainStatus::Done);
        let sq: Vec<f64> = Vec::<f64>::try_from(total.get(j as i64)).unwrap();
        let ratios: Vec<f64> = sq.iter().zip(&target.sigmas).map(|(s, sig)| s / steps / (t * sig * sig)).collect();
        let (mean, se) = mean_se(&ratios);
        eprintln!("{integrator} chain {j} T={t}: variance ratio {mean:.4} ± {se:.4}");
        assert!((mean - 1.0).abs() < Z * se, "chain {j} at T={t}: variance ratio {mean} ± {se}");
        let kin: Vec<f64> = out.epochs.iter().skip(4).map(|r| r.kinetic_temperature / t).collect();
        // Integrators without momenta (sgld) report no kinetic temperature.
        if kin.iter().all(|k| k.is_finite()) {
            let (kt, kse) = mean_se(&kin);
            eprintln!("  kinetic T / T = {kt:.4} ± {kse:.4}");
            assert!((kt - 1.0).abs() < Z * kse.max(1e-3), "chain {j}: kinetic {kt} ± {kse}");
        }
        assert_eq!(out.theta.size(), vec![1000]);
        // Each chain reports its own temperature.
        assert!(out.epochs.iter().all(|r| r.temperature == t));
    }
}
