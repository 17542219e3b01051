//! Cost of the plugin boundary (`cargo bench -p ablate-engine --bench plugin_overhead`).
//!
//! Measures, on the quickstart MLP (64-50-10, batch 50, d = 3760), with 1 libtorch thread:
//! - one no-op plugin call (the `minibatch` noise model's transform): the boundary itself;
//! - one symplectic-Euler step through the plugin vs the same math written directly in tch;
//! - one full training step (forward, backward, prior and likelihood through plugins, integrator).
//!
//! Reports medians of repeated timings and the plugin overhead as a share of a training step.
// Tests may unwrap (a panic is the failure report) and be long (one scenario per test).
#![allow(clippy::unwrap_used, clippy::too_many_lines)]
#![allow(clippy::print_stdout)] // a benchmark's output is its report

use std::time::Instant;

use abi_stable::std_types::RSlice;
use ablate_engine::host::TchHost;
use ablate_engine::model::{Mode, Model};
use ablate_grid::config::{Activation, ModelConfig};
use ablate_sdk::{NoiseStats, StepCtx, StepTensors, TensorId};
use tch::{Device, Kind, Tensor};

fn median_ns(reps: usize, iters: usize, mut f: impl FnMut()) -> f64 {
    let mut samples: Vec<f64> = (0..reps)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..iters {
                f();
            }
            t.elapsed().as_nanos() as f64 / iters as f64
        })
        .collect();
    samples.sort_by(|a, b| a.partial_cmp(b).unwrap());
    samples[reps / 2]
}

fn main() {
    tch::set_num_threads(1);
    tch::manual_seed(0);
    let model = Model::new(
        &ModelConfig::Mlp { hidden: vec![50], activation: Activation::Relu },
        ModelToggles { norm: NormKind::None, dropout: 0.0 },
        (1, 8, 8),
        10,
    )
    .unwrap();
    let d = model.dim();
    let mut host = TchHost::new();
    let theta = model.init(Default::default(), Device::Cpu).unwrap().set_requires_grad(true);
    let ctx = StepCtx {
        step: 1,
        lr: 0.1,
        momentum_decay: 0.98,
        timestep_factor: 1.0,
        temperature: 1.0,
        n: 1297.0,
        batch_size: 50,
    };

    // 1. The boundary: a no-op call.
    let mut noise = ablate_sdk::testkit::noise_box::<BenchMinibatch>("{}").unwrap();
    let grad = host.insert(Tensor::zeros([d], (Kind::Float, Device::Cpu)));
    let stats = NoiseStats { var_elementwise: grad, var_per_tensor: grad, batch_size: 50 };
    let noop = median_ns(15, 20_000, || host.call(|h| noise.transform(h, &ctx, grad, &stats)).unwrap());

    // 2. One integrator step: plugin vs direct.
    let mut integ =
        ablate_sdk::testkit::integrator_box::<ablate_plugin_integrators::NaiveSymplecticEulerMCMC>("{}").unwrap();
    let params = host.insert(theta.detach().copy());
    host.call(|h| integ.init(h, params)).unwrap();
    let ones = Tensor::ones([d], (Kind::Float, Device::Cpu));
    let m = [host.insert(ones.copy()), host.insert(ones.copy()), host.insert(ones.copy()), host.insert(ones.copy())];
    let g = host.insert(Tensor::randn([d], (Kind::Float, Device::Cpu)) * 1e-3);
    let t = StepTensors {
        params,
        grad: g,
        mass: m[0],
        mass_inv: m[1],
        mass_sqrt: m[2],
        mass_inv_sqrt: m[3],
        temperature: TensorId::INVALID,
    };
    let plugin_step = median_ns(15, 2_000, || {
        host.call(|h| integ.step(h, &ctx, &t)).unwrap();
    });
    let (mut th, mut mom) = (theta.detach().copy(), Tensor::zeros([d], (Kind::Float, Device::Cpu)));
    let gd = Tensor::randn([d], (Kind::Float, Device::Cpu)) * 1e-3;
    let (minv, msqrt) = (ones.copy(), ones.copy());
    let direct_step = median_ns(15, 2_000, || {
        let _g = tch::no_grad_guard();
        let h = (ctx.lr / ctx.n).sqrt();
        let sigma = (2.0 * ctx.temperature * (1.0 - ctx.momentum_decay)).sqrt();
        let noise = mom.randn_like() * sigma * &msqrt;
        mom *= ctx.momentum_decay;
        mom -= &gd * (h * ctx.n);
        mom += noise;
        th += &mom * &minv * h;
    });

    // 3. A full training step of the quickstart MLP.
    // The built-in prior and likelihood crates cannot be linked into one binary together with
    // the others (each exports the same root-module symbol); the same math, through the same glue:
    let prior = ablate_sdk::testkit::prior_box::<BenchGaussian>("{}").unwrap();
    let lik = ablate_sdk::testkit::likelihood_box::<BenchCategorical>("{}").unwrap();
    let x = Tensor::rand([50, 1, 8, 8], (Kind::Float, Device::Cpu));
    let y = Tensor::randint(10, [50], (Kind::Int64, Device::Cpu));
    let mut bn = model.new_bn_state(Device::Cpu);
    let train_step = median_ns(15, 500, || {
        let logits = model.forward(&theta, &x, Mode::Train, &mut bn).unwrap();
        let (l, yy) = (host.insert(logits.shallow_clone()), host.insert(y.shallow_clone()));
        let nll = host.call(|h| lik.nll(h, l, yy)).unwrap();
        let ids: Vec<_> = model.views(&theta).into_iter().map(|v| host.insert(v)).collect();
        let lp = host.call(|h| prior.log_prob(h, RSlice::from_slice(&ids), RSlice::from_slice(model.infos()))).unwrap();
        let loss = host.take(nll).unwrap() - host.take(lp).unwrap() / 1297.0;
        for id in ids.into_iter().chain([l, yy]) {
            host.remove(id);
        }
        let grad = Tensor::run_backward(&[&loss], &[&theta], false, false).remove(0);
        let gid = host.insert(grad);
        host.call(|h| noise.transform(h, &ctx, gid, &stats)).unwrap();
        host.call(|h| integ.step(h, &ctx, &StepTensors { grad: gid, ..t })).unwrap();
        host.remove(gid);
    });

    let overhead = plugin_step - direct_step;
    println!("quickstart MLP (d = {d}), 1 thread, medians of 15 repetitions");
    println!("  no-op plugin call:                 {:>9.2} µs", noop / 1e3);
    println!("  sym-euler step through the plugin: {:>9.2} µs", plugin_step / 1e3);
    println!("  the same step written in tch:      {:>9.2} µs", direct_step / 1e3);
    println!("  full training step (all plugins):  {:>9.2} µs", train_step / 1e3);
    println!(
        "  boundary cost per step (4 calls):  {:>9.2} µs = {:.2}% of a training step",
        4.0 * noop / 1e3,
        400.0 * noop / train_step
    );
    println!(
        "  integrator plugin vs direct:       {:>+9.2} µs = {:+.2}% of a training step",
        overhead / 1e3,
        100.0 * overhead / train_step
    );
}

use ablate_sdk::prelude::*;
use ablate_sdk::NoiseView;

/// The `minibatch` noise model: leaves the gradient as estimated.
struct BenchMinibatch;
impl Factory for BenchMinibatch {
    const NAME: &'static str = "bench-minibatch";
    const DESCRIPTION: &'static str = "no-op";
    fn params() -> Vec<ParamSpec> {
        Vec::new()
    }
    fn new(_: &Params) -> Result<Self, String> {
        Ok(Self)
    }
}
impl NoiseModel for BenchMinibatch {
    fn plan(&self, config_batch: u64, _: u64) -> GradientPlan {
        GradientPlan { gradient_batch: config_batch }
    }
    fn transform<'o>(
        &mut self,
        _: Ops<'o>,
        _: &StepCtx,
        _: &ablate_sdk::Tensor<'o>,
        _: &NoiseView<'o>,
    ) -> Result<(), String> {
        Ok(())
    }
}

/// N(0, 1) on every tensor, as the built-in `gaussian` prior computes it.
struct BenchGaussian;
impl Factory for BenchGaussian {
    const NAME: &'static str = "bench-gaussian";
    const DESCRIPTION: &'static str = "N(0,1)";
    fn params() -> Vec<ParamSpec> {
        Vec::new()
    }
    fn new(_: &Params) -> Result<Self, String> {
        Ok(Self)
    }
}
impl Prior for BenchGaussian {
    fn log_prob<'o>(
        &self,
        _: Ops<'o>,
        params: &[ablate_sdk::Tensor<'o>],
        _: &[ParamInfo],
    ) -> Result<ablate_sdk::Tensor<'o>, String> {
        let c = -0.5 * (2.0 * std::f64::consts::PI).ln();
        let mut total = None;
        for p in params {
            let n = p.shape().iter().product::<i64>() as f64;
            let term = p.square().sum() * -0.5 + c * n;
            total = Some(match total {
                Some(t) => t + term,
                None => term,
            });
        }
        total.ok_or_else(|| "no tensors".into())
    }
    fn sample<'o>(
        &self,
        _: Ops<'o>,
        _: &ParamInfo,
        _: &ablate_sdk::Tensor<'o>,
    ) -> Result<Option<ablate_sdk::Tensor<'o>>, String> {
        Ok(None)
    }
}

/// Mean cross-entropy, as the built-in `categorical` likelihood computes it.
struct BenchCategorical;
impl Factory for BenchCategorical {
    const NAME: &'static str = "bench-categorical";
    const DESCRIPTION: &'static str = "mean cross-entropy";
    fn params() -> Vec<ParamSpec> {
        Vec::new()
    }
    fn new(_: &Params) -> Result<Self, String> {
        Ok(Self)
    }
}
impl Likelihood for BenchCategorical {
    fn model(&self) -> ModelToggles {
        ModelToggles { norm: NormKind::None, dropout: 0.0 }
    }
    fn effective_n(&self, examples: u64) -> f64 {
        examples as f64
    }
    fn augment<'o>(
        &mut self,
        _: Ops<'o>,
        _: &ablate_sdk::Tensor<'o>,
    ) -> Result<Option<ablate_sdk::Tensor<'o>>, String> {
        Ok(None)
    }
    fn nll<'o>(
        &self,
        _: Ops<'o>,
        logits: &ablate_sdk::Tensor<'o>,
        labels: &ablate_sdk::Tensor<'o>,
    ) -> Result<ablate_sdk::Tensor<'o>, String> {
        Ok(-(logits.log_softmax(1).gather_rows(labels).mean()))
    }
}
