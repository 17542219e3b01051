//! Every model kind with every built-in likelihood and every batchable integrator, for one short
//! epoch on tiny data, alone and as a batch of two chains, through `run_cells` (the path
//! `ablate run` takes). None may panic; the combinations that cannot run must fail with a clear
//! error, and exactly those listed in [`IMPOSSIBLE`].
// Tests may unwrap (a panic is the failure report) and be long (one scenario per test).
#![allow(clippy::unwrap_used, clippy::too_many_lines)]

mod builtins;

use ablate_engine::chain::Observer;
use ablate_engine::{run_cells, CellOutcome, ChainStatus, EngineError};
use ablate_grid::config::CellConfig;
use ablate_plugin_host::Registry;
use builtins::registry;
use tch::Device;

const MODELS: [(&str, &str); 4] = [
    ("mlp", r#"{"kind": "mlp", "hidden": [8]}"#),
    ("cnn", r#"{"kind": "cnn", "channels": [4]}"#),
    ("resnet20", r#"{"kind": "resnet20", "width": 1}"#),
    ("cnn-lstm", r#"{"kind": "cnn-lstm", "filters": 4, "kernel": 3, "pool": 2, "hidden": 6}"#),
];
const LIKELIHOODS: [&str; 7] =
    ["categorical", "batchnorm", "frn", "dropout", "augmented", "tempered", "noisy-dirichlet"];
/// Every built-in integrator that says it is batchable (`hmc` and `obabo` with Metropolis are
/// not; `obabo` runs without it here).
const INTEGRATORS: [&str; 7] = ["sym-euler", "sgld", "baoab", "obabo", "bbk", "spv", "msgnht"];
const PRIORS: [&str; 7] = ["gaussian", "he-gaussian", "laplace", "student-t", "cauchy", "spike-slab", "flat"];

/// (model, likelihood) pairs that cannot run, with a fragment of the error they must give:
/// FRN normalises over spatial positions, which an MLP has not; the cnn-lstm (a sequence model)
/// has no normalisation layers and no image augmentation.
const IMPOSSIBLE: [(&str, &str, &str); 4] = [
    ("mlp", "frn", "FRN normalises over spatial positions"),
    ("cnn-lstm", "batchnorm", "cnn-lstm has no normalisation layers"),
    ("cnn-lstm", "frn", "cnn-lstm has no normalisation layers"),
    ("cnn-lstm", "augmented", "augments images"),
];

fn cell(model: &str, likelihood: &str, integrator: &str, prior: &str, temperature: f64, seed: u64) -> CellConfig {
    let json = format!(
        r#"{{"temperature": {temperature}, "seed": {seed},
            "data": {{"dataset": "digits", "train_size": 32, "test_size": 10}},
            "model": {model},
            "sampler": {{"epochs": 1, "batch_size": 16, "lr": 0.05, "cycle_length": 1,
                         "cycle_start_sampling": 1, "precond_batches": 1}},
            "integrator": {{"name": "{integrator}"}}, "prior": {{"name": "{prior}"}},
            "likelihood": {{"name": "{likelihood}"}}, "noise": {{"name": "minibatch"}},
            "eval": {{"batch_size": 10}}}}"#
    );
    let cfg: CellConfig = serde_json::from_str(&json).unwrap();
    assert!(cfg.validate().is_empty(), "{:?}", cfg.validate());
    cfg
}

struct Quiet;
impl Observer for Quiet {}

/// Run `cfgs` through `run_cells`, turning a panic into a test failure that names the cells.
fn run(cfgs: &[CellConfig], registry: &Registry, what: &str) -> Result<Vec<CellOutcome>, EngineError> {
    let data = ablate_engine::load_data(&cfgs[0].data).unwrap();
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        run_cells(cfgs, &data, registry, Device::Cpu, &mut Quiet)
    }));
    match r {
        Ok(r) => r,
        Err(p) => {
            let msg = p.downcast_ref::<String>().cloned().or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()));
            panic!("{what} panicked: {msg:?}")
        }
    }
}

/// One finished chain: its epoch row and one ensemble member.
fn finished(out: &CellOutcome, what: &str) {
    assert!(matches!(out.status, ChainStatus::Done | ChainStatus::Diverged { .. }), "{what}");
    if out.status == ChainStatus::Done {
        assert_eq!(out.epochs.len(), 1, "{what}");
        let m = out.metrics.as_ref().unwrap_or_else(|| panic!("{what}: a done chain without metrics"));
        assert_eq!(m.members, 1, "{what}");
        assert!(m.ensemble.nll.is_finite(), "{what}: NLL {}", m.ensemble.nll);
    }
}

#[test]
fn every_model_likelihood_and_batchable_integrator_runs_alone_and_batched() {
    let (_dir, registry) = registry();
    let mut failed = Vec::new();
    let mut diverged = Vec::new();
    // The pre-run rule (`grid check`, `run`) refuses exactly the impossible combinations.
    for (model, model_json) in MODELS {
        for likelihood in LIKELIHOODS {
            let problems = ablate_engine::compat::cell_problems(
                &cell(model_json, likelihood, "sym-euler", "gaussian", 1.0, 1),
                &registry,
            );
            let impossible = IMPOSSIBLE.iter().any(|x| x.0 == model && x.1 == likelihood);
            assert_eq!(!problems.is_empty(), impossible, "{model} + {likelihood}: compat says {problems:?}");
        }
    }
    for (model, model_json) in MODELS {
        for likelihood in LIKELIHOODS {
            for integrator in INTEGRATORS {
                let what = format!("{model} + {likelihood} + {integrator}");
                let alone = run(&[cell(model_json, likelihood, integrator, "gaussian", 0.1, 1)], &registry, &what);
                let pair = [
                    cell(model_json, likelihood, integrator, "gaussian", 1.0, 2),
                    cell(model_json, likelihood, integrator, "gaussian", 0.01, 3),
                ];
                let batched = run(&pair, &registry, &format!("{what} (batched)"));
                match (alone, batched) {
                    (Ok(a), Ok(b)) => {
                        assert_eq!((a.len(), b.len()), (1, 2), "{what}");
                        for out in a.iter().chain(&b) {
                            finished(out, &what);
                            if out.status != ChainStatus::Done {
                                diverged.push(what.clone());
                            }
                        }
                    }
                    (Err(a), Err(b)) => failed.push((model, likelihood, integrator, a.to_string(), b.to_string())),
                    (a, b) => panic!("{what}: alone {:?}, batched {:?}", a.err(), b.err()),
                }
            }
        }
    }
    // The impossible combinations fail with every integrator, alone and batched, and with the
    // message that says why; nothing else fails.
    let expected: Vec<(&str, &str, &str)> =
        IMPOSSIBLE.iter().flat_map(|&(m, l, _)| INTEGRATORS.iter().map(move |&i| (m, l, i))).collect();
    let got: Vec<(&str, &str, &str)> = failed.iter().map(|f| (f.0, f.1, f.2)).collect();
    assert_eq!(got, expected, "failures: {failed:#?}");
    for (m, l, i, alone, batched) in &failed {
        let (_, _, why) = IMPOSSIBLE.iter().find(|x| x.0 == *m && x.1 == *l).unwrap();
        assert!(alone.contains(why) && batched.contains(why), "{m} + {l} + {i}: {alone} / {batched}");
    }
    eprintln!("diverged in one epoch (allowed, not a panic): {diverged:?}");
}

#[test]
fn resnet20_with_frn_runs_under_every_prior_alone_and_batched() {
    let (_dir, registry) = registry();
    let model = MODELS[2].1;
    for prior in PRIORS {
        let what = format!("resnet20 + frn + {prior}");
        let alone = run(&[cell(model, "frn", "sym-euler", prior, 0.1, 1)], &registry, &what).unwrap();
        finished(&alone[0], &what);
        assert_eq!(alone[0].status, ChainStatus::Done, "{what}");
        let pair = [cell(model, "frn", "sym-euler", prior, 1.0, 2), cell(model, "frn", "sym-euler", prior, 0.01, 3)];
        let batched = run(&pair, &registry, &format!("{what} (batched)")).unwrap();
        for out in &batched {
            finished(out, &what);
            assert_eq!(out.status, ChainStatus::Done, "{what} (batched)");
        }
    }
}

#[test]
fn msgnht_with_noisy_dirichlet_on_a_three_layer_mlp_never_ends_done_with_non_finite_rows() {
    // The covering sweep's case (MLP 784-100-100-10): it ended `done` with kinetic temperature
    // inf in `epochs.csv`. At lr 0.1 the noisy-Dirichlet likelihood (curvature up to 1/σ² ≈ 1.45
    // per logit, against at most 1/4 for the softmax) makes the thermostat's dynamics unstable.
    // Whatever a chain's fate, a `done` chain has only finite rows and metrics, and the T = 0
    // chain (deterministic here: CPU, one thread, seeded) is recorded as diverged.
    let (_dir, registry) = registry();
    let model = r#"{"kind": "mlp", "hidden": [100, 100]}"#;
    let base = |t: f64, seed: u64| {
        let mut c = cell(model, "noisy-dirichlet", "msgnht", "gaussian", t, seed);
        c.data.train_size = None;
        c.data.test_size = Some(100);
        c.sampler.batch_size = 100;
        c.sampler.lr = 0.1;
        c.sampler.epochs = 4;
        c.sampler.cycle_length = 2;
        c.sampler.cycle_start_sampling = 2;
        c
    };
    let mut diverged = Vec::new();
    for cfgs in [vec![base(0.0, 1)], vec![base(1.0, 1)], vec![base(0.0, 1), base(1.0, 2)]] {
        let outs = run(&cfgs, &registry, "msgnht + noisy-dirichlet").unwrap();
        for (cfg, out) in cfgs.iter().zip(&outs) {
            for row in &out.epochs {
                assert!(row.kinetic_temperature.is_finite() && row.train_nll.is_finite(), "{row:?}");
            }
            match &out.status {
                ChainStatus::Diverged { step, message } => {
                    eprintln!("T = {} ({} chains) diverged at step {step}: {message}", cfg.temperature, cfgs.len());
                    diverged.push((cfg.temperature, cfgs.len()));
                }
                ChainStatus::Done => {
                    let m = out.metrics.as_ref().expect("a done chain has metrics");
                    assert!(m.ensemble.nll.is_finite() && m.diagnostics.kinetic_temperature.is_finite(), "{m:?}");
                }
            }
        }
    }
    assert!(diverged.contains(&(0.0, 1)), "the T = 0 chain alone: {diverged:?}");
}

#[test]
fn every_parameter_of_every_model_enters_the_graph() {
    // The engine treats an undefined gradient as zero, so a parameter that the forward pass
    // skips (as the FRN thresholds of ResNet-20's residual branches once were) would no longer
    // panic: it would silently never move. Every tensor must get a gradient.
    use ablate_engine::model::{Mode, Model};
    use ablate_sdk::{ModelToggles, NormKind};
    use tch::{Kind, Tensor};
    tch::manual_seed(3);
    for (name, json) in MODELS {
        for norm in [NormKind::None, NormKind::BatchNorm, NormKind::Frn] {
            // The impossible pairs: FRN without spatial positions, normalisation in the cnn-lstm.
            if (name == "mlp" && norm == NormKind::Frn) || (name == "cnn-lstm" && norm != NormKind::None) {
                continue;
            }
            let cfg: ablate_grid::config::ModelConfig = serde_json::from_str(json).unwrap();
            let model = Model::new(&cfg, ModelToggles { norm, dropout: 0.0 }, (3, 8, 8), 10).unwrap();
            let theta = model.init(ablate_grid::config::Init::HeNormal, Device::Cpu).unwrap();
            let leaves: Vec<Tensor> =
                model.views(&theta).into_iter().map(|v| v.detach().set_requires_grad(true)).collect();
            let x = Tensor::randn([4, 3, 8, 8], (Kind::Float, Device::Cpu));
            let mut bn = model.new_bn_state(Device::Cpu);
            let logits = model.forward_views(&leaves, &x, Mode::Train, &mut bn).unwrap();
            let loss = logits.log_softmax(-1, Kind::Float).select(1, 0).sum(Kind::Float);
            let grads = Tensor::run_backward(&[&loss], &leaves, false, false);
            for (g, info) in grads.iter().zip(model.infos()) {
                assert!(g.defined(), "{name} with {norm:?}: {} gets no gradient", info.name);
            }
        }
    }
}

#[test]
fn every_model_runs_in_bf16_alone_and_batched() {
    // The bf16 compute mode (autocast of the network) through run_cells for every model kind and
    // normalisation: no panic, finite results, the mode recorded, θ and its gradient still fp32.
    let (_dir, registry) = registry();
    for (model, model_json) in MODELS {
        for likelihood in ["categorical", "batchnorm", "frn", "dropout"] {
            if IMPOSSIBLE.iter().any(|x| x.0 == model && x.1 == likelihood) {
                continue;
            }
            let what = format!("{model} + {likelihood} in bf16");
            let bf16 = |t: f64, seed: u64| {
                let mut c = cell(model_json, likelihood, "sym-euler", "gaussian", t, seed);
                c.precision = ablate_grid::config::Precision::Bf16;
                c
            };
            let alone = run(&[bf16(0.1, 1)], &registry, &what).unwrap();
            let batched = run(&[bf16(1.0, 2), bf16(0.01, 3)], &registry, &format!("{what} (batched)")).unwrap();
            for out in alone.iter().chain(&batched) {
                finished(out, &what);
                assert_eq!(out.status, ChainStatus::Done, "{what}");
                let compute = out.metrics.as_ref().unwrap().compute.as_ref().unwrap();
                assert_eq!((compute.arithmetic.as_str(), compute.device.as_str()), ("bf16", "cpu"), "{what}");
            }
        }
    }
    // The network's products run in bf16, its parameters and their gradients stay fp32.
    use ablate_engine::compute::Compute;
    use ablate_engine::model::{Mode, Model};
    use ablate_sdk::{ModelToggles, NormKind};
    use tch::{Kind, Tensor};
    let cfg: ablate_grid::config::ModelConfig = serde_json::from_str(MODELS[2].1).unwrap();
    let mut model = Model::new(&cfg, ModelToggles { norm: NormKind::BatchNorm, dropout: 0.0 }, (3, 8, 8), 10).unwrap();
    model.set_compute(Compute { precision: ablate_grid::config::Precision::Bf16, channels_last: false });
    let theta = model.init(ablate_grid::config::Init::HeNormal, Device::Cpu).unwrap();
    let leaves: Vec<Tensor> = model.views(&theta).into_iter().map(|v| v.detach().set_requires_grad(true)).collect();
    let x = Tensor::randn([4, 3, 8, 8], (Kind::Float, Device::Cpu));
    let mut bn = model.new_bn_state(Device::Cpu);
    let logits = model.forward_views(&leaves, &x, Mode::Train, &mut bn).unwrap();
    assert_eq!(logits.kind(), Kind::Float, "logits leave the network as fp32");
    assert!(!ablate_engine::compute::autocast_enabled(Device::Cpu), "the autocast region ends with the pass");
    let loss = logits.log_softmax(-1, Kind::Float).select(1, 0).sum(Kind::Float);
    let grads = Tensor::run_backward(&[&loss], &leaves, false, false);
    for (g, info) in grads.iter().zip(model.infos()) {
        assert_eq!(g.kind(), Kind::Float, "{}", info.name);
    }
    // ... and the logits differ from fp32's by bf16 rounding, not by more.
    model.set_compute(Compute::default());
    let exact = model.forward_views(&leaves, &x, Mode::Eval, &mut model.new_bn_state(Device::Cpu)).unwrap();
    model.set_compute(Compute { precision: ablate_grid::config::Precision::Bf16, channels_last: false });
    let low = model.forward_views(&leaves, &x, Mode::Eval, &mut model.new_bn_state(Device::Cpu)).unwrap();
    let rel = f64::try_from((&low - &exact).norm() / exact.norm()).unwrap();
    assert!(rel > 1e-4 && rel < 0.1, "bf16 logits differ from fp32 by {rel} (relative)");
}

#[test]
fn channels_last_layout_gives_the_same_network() {
    // The layout changes memory strides, not the function: logits and gradients of the
    // convolutional models agree with the plain layout, alone and batched (grouped convolutions).
    use ablate_engine::compute::Compute;
    use ablate_engine::model::{Mode, Model};
    use ablate_sdk::{ModelToggles, NormKind};
    use tch::{Kind, Tensor};
    tch::manual_seed(5);
    for (name, json) in [MODELS[1], MODELS[2]] {
        for norm in [NormKind::BatchNorm, NormKind::Frn] {
            let cfg: ablate_grid::config::ModelConfig = serde_json::from_str(json).unwrap();
            let mut model = Model::new(&cfg, ModelToggles { norm, dropout: 0.0 }, (3, 8, 8), 10).unwrap();
            assert!(model.is_convolutional());
            let k = 3;
            let theta = Tensor::stack(
                &(0..k)
                    .map(|_| model.init(ablate_grid::config::Init::HeNormal, Device::Cpu).unwrap())
                    .collect::<Vec<_>>(),
                0,
            );
            let x = Tensor::randn([k, 4, 3, 8, 8], (Kind::Float, Device::Cpu));
            let mut pass = |channels_last: bool| {
                model.set_compute(Compute { channels_last, ..Compute::default() });
                let leaves: Vec<Tensor> =
                    model.batched_views(&theta).into_iter().map(|v| v.detach().set_requires_grad(true)).collect();
                let mut bn = model.new_bn_state_for(Device::Cpu, k);
                let logits = model.forward_batched(&leaves, &x, Mode::Train, &mut bn).unwrap();
                let loss = logits.log_softmax(-1, Kind::Float).select(2, 0).sum(Kind::Float);
                let grads = Tensor::run_backward(&[&loss], &leaves, false, false);
                (logits, Tensor::cat(&grads.iter().map(|g| g.reshape([-1])).collect::<Vec<_>>(), 0))
            };
            let (l0, g0) = pass(false);
            let (l1, g1) = pass(true);
            let close = |a: &Tensor, b: &Tensor| {
                f64::try_from((a - b).abs().max()).unwrap() / (1.0 + f64::try_from(b.abs().max()).unwrap())
            };
            assert!(close(&l1, &l0) < 1e-5, "{name} {norm:?}: logits differ by {}", close(&l1, &l0));
            assert!(close(&g1, &g0) < 1e-4, "{name} {norm:?}: gradients differ by {}", close(&g1, &g0));
        }
    }
}

/// The exact samplers (`hmc`, `obabo` with Metropolis) evaluate U(θ) on the whole training set
/// in inference mode, which is not the energy of a likelihood with batch norm (running
/// statistics), dropout or augmentation. `grid check` refuses those pairs at `integrator.name`,
/// and a run that gets there anyway (the rule is by built-in name) fails the cell by name rather
/// than sampling another posterior; the clean likelihoods run.
#[test]
fn exact_samplers_refuse_likelihoods_whose_energy_is_not_a_function_of_theta() {
    let (_dir, registry) = registry();
    let model = MODELS[1].1; // the cnn: batch norm, FRN and augmentation all apply
    for (integrator, params) in [("hmc", r#"{"leapfrog_steps": 2}"#), ("obabo", r#"{"metropolis": true}"#)] {
        for likelihood in LIKELIHOODS {
            let mut cfg = cell(model, likelihood, "sym-euler", "gaussian", 1.0, 1);
            cfg.integrator.name = integrator.into();
            cfg.integrator.params = serde_json::from_str(params).unwrap();
            let dirty = matches!(likelihood, "batchnorm" | "dropout" | "augmented");
            let problems = ablate_engine::compat::cell_problems(&cfg, &registry);
            let what = format!("{integrator} + {likelihood}");
            assert_eq!(!problems.is_empty(), dirty, "{what}: compat says {problems:?}");
            if dirty {
                assert_eq!(problems[0].path, "integrator.name", "{what}");
                assert!(problems[0].message.contains(&format!("likelihood `{likelihood}` has")), "{problems:?}");
            }
            let out = run(std::slice::from_ref(&cfg), &registry, &what);
            match (dirty, out) {
                (false, Ok(out)) => finished(&out[0], &what),
                (true, Err(e)) => {
                    let e = e.to_string();
                    assert!(e.contains("energy-based integrators") && e.contains(likelihood), "{what}: {e}");
                }
                (_, out) => panic!("{what}: {:?}", out.map(|o| o[0].status.clone())),
            }
        }
    }
}

/// `sym-euler`'s Gaussian initial momenta are N(0, T·M) at the first step, which the temperature
/// ramp holds at T = 0: that pairing is refused (it would equal `zero` bit for bit); without the
/// ramp the option runs.
#[test]
fn gaussian_initial_momenta_are_refused_under_the_temperature_ramp() {
    let (_dir, registry) = registry();
    let mut cfg = cell(MODELS[0].1, "categorical", "sym-euler", "gaussian", 0.5, 1);
    cfg.integrator.params = serde_json::json!({"momentum_init": "gaussian"});
    cfg.sampler.temperature_ramp = true;
    let problems = ablate_engine::compat::cell_problems(&cfg, &registry);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].path, "integrator.params.momentum_init");
    assert!(problems[0].hint.contains("temperature_ramp"), "{problems:?}");
    cfg.sampler.temperature_ramp = false;
    assert!(ablate_engine::compat::cell_problems(&cfg, &registry).is_empty());
    cfg.integrator.params = serde_json::json!({"momentum_init": "zero"});
    cfg.sampler.temperature_ramp = true;
    assert!(ablate_engine::compat::cell_problems(&cfg, &registry).is_empty());
}

/// Augmentation padded for larger images (64 px on 8×8 digits) is refused by `grid check` with
/// the plugin's own reason, before anything runs; the default padding passes.
#[test]
fn augmentation_that_cannot_fit_the_images_is_refused_before_the_run() {
    let (_dir, registry) = registry();
    let mut cfg = cell(MODELS[1].1, "augmented", "sym-euler", "gaussian", 1.0, 1);
    assert!(ablate_engine::compat::cell_problems(&cfg, &registry).is_empty());
    cfg.likelihood.params = serde_json::json!({"pad": 64});
    let problems = ablate_engine::compat::cell_problems(&cfg, &registry);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].path, "likelihood.params");
    assert!(
        problems[0].message.contains("8x8 images of digits") && problems[0].message.contains("pad 64"),
        "{problems:?}"
    );
}

/// The prior predictive check draws θ from the prior; a prior that draws no tensor (`flat`) has
/// no check (its "draws" were the initialisation, reported as if they were the prior's).
#[test]
fn a_prior_that_cannot_draw_has_no_prior_predictive_check() {
    let (_dir, registry) = registry();
    for (prior, expect) in [("gaussian", true), ("flat", false)] {
        let mut cfg = cell(MODELS[0].1, "categorical", "sym-euler", prior, 1.0, 1);
        cfg.eval.prior_samples = 3;
        let out = run(std::slice::from_ref(&cfg), &registry, prior).unwrap();
        let check = out[0].metrics.as_ref().unwrap().prior_predictive.as_ref();
        assert_eq!(check.is_some(), expect, "{prior}: {check:?}");
        if let Some(c) = check {
            assert_eq!(c.samples, 3);
        }
    }
}
