//! The kernel launches of one sampler step on the GPU's code path, counted exactly on the CPU
//! (`ablate_engine::dispatch_count`; the figures of `benches/step_ops.rs` and
//! reports/results/performance.md). A step of a small model on a GPU is bound by its launch
//! count, so a change that adds launches to every step (a per-tensor prior path, a composed
//! update, a per-chain draw) fails here and must update the figures it changes.
//!
//! The fused CPU loops are switched off for this binary (`ABLATE_UNFUSED=1`, read once per
//! process), so the step takes the operators a GPU step takes.
// Tests may unwrap (a panic is the failure report) and be long (one scenario per test).
#![allow(clippy::unwrap_used, clippy::too_many_lines)]

mod builtins;

use ablate_engine::dispatch_count::{Counting, OpCounts, PerStep};
use ablate_engine::run_cells;
use ablate_grid::config::CellConfig;
use builtins::registry;
use tch::{Device, Kind, Tensor};

/// The fused CPU loops off, so that the CPU takes the GPU's code path; every test calls it first.
fn gpu_code_path() {
    // SAFETY: every test of this binary sets the same value before it computes anything.
    unsafe { std::env::set_var("ABLATE_UNFUSED", "1") };
    assert!(!ablate_engine::fused::enabled(), "the fused loops were read as on before a test switched them off");
}

/// One counting at a time in this test binary (the observer is process-wide).
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The quickstart's MLP (64-50-10 on digits) with the paper's sampler, K chains at spread
/// temperatures (the `quickstart-mlp` workload of the step_ops bench): the median step's counts.
fn median_step(prior: &str, k: usize) -> OpCounts {
    let (_dir, registry) = registry();
    let cfgs: Vec<CellConfig> = (0..k)
        .map(|j| {
            let t = if k == 1 { 1.0 } else { 10f64.powf(-3.0 * j as f64 / (k - 1) as f64) };
            serde_json::from_value(serde_json::json!({
                "temperature": t, "seed": 1 + j,
                "data": {"dataset": "digits"},
                "model": {"kind": "mlp", "hidden": [50]},
                "sampler": {"epochs": 3, "batch_size": 50, "lr": 0.1, "momentum_decay": 0.98,
                            "cycle_length": 1, "cycle_start_sampling": 1},
                "prior": {"name": prior}
            }))
            .unwrap()
        })
        .collect();
    let data = ablate_engine::load_data(&cfgs[0].data).unwrap();
    let mut steps = PerStep::start().unwrap();
    run_cells(&cfgs, &data, &registry, Device::Cpu, &mut steps).unwrap();
    steps.median().unwrap().clone()
}

#[test]
fn a_step_launches_what_performance_md_says_and_the_prior_is_one_fused_update() {
    let _serial = SERIAL.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    gpu_code_path();
    // One chain and a batch of 4: the figures of reports/results/performance.md (quickstart
    // MLP). On a GPU the O-step's noise adds one `randn` (drawn in Rust on the CPU).
    for (k, kernels) in [(1, 35), (4, 43)] {
        let step = median_step("gaussian", k);
        let ops = step.kernel_ops();
        assert_eq!(step.kernels(), kernels, "K = {k}: {ops:?}");
        assert_eq!(step.host_reads(), 0, "K = {k}: a GPU step must not wait for the device: {ops:?}");
        // The prior is one addcmul_ (with the O-step's and the θ update's): no per-tensor calls.
        assert_eq!(step.by_name.get("aten::addcmul_"), Some(&3), "K = {k}: {ops:?}");
        assert_eq!(step.by_name.get("aten::cat"), Some(&1), "K = {k}: one flattening of the gradient: {ops:?}");
    }
    // A prior without an isotropic precision (Laplace) pays a call per parameter tensor (4 here:
    // two weights, two biases) and the second flattening.
    let laplace = median_step("laplace", 1);
    assert!(laplace.kernels() > 35 + 4, "{:?}", laplace.kernel_ops());
    assert_eq!(laplace.by_name.get("aten::cat"), Some(&2), "{:?}", laplace.kernel_ops());
}

/// The paper's augmentation (pad 4, random crop, flip) costs the same operator calls for any
/// number of images: a GPU step of K batched ResNet-20 chains augments K·128 images, and a
/// per-image cut made that thousands of host calls per step.
#[test]
fn augmentation_costs_the_same_operator_calls_for_any_batch_size() {
    let _serial = SERIAL.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    gpu_code_path();
    let count = |n: i64| {
        let x = Tensor::randn([n, 3, 32, 32], (Kind::Float, Device::Cpu));
        let counting = Counting::start().unwrap();
        let before = counting.read();
        let _ = ablate_engine::augment::crop_flip(&x, 4, true).unwrap();
        counting.read().since(&before)
    };
    let (small, large) = (count(8), count(2176));
    eprintln!("augmentation: {} kernels, {} operator calls ({:?})", large.kernels(), large.all, large.kernel_ops());
    assert_eq!(small.by_name, large.by_name, "the operators called depend on the batch size");
    assert!(large.kernels() <= 12, "{:?}", large.kernel_ops());
}

/// The preconditioner's batches are augmented like the training batches, as in the reference
/// (its estimator reads the same augmented training stream, with the network in inference
/// mode): a cell with augmentation pads once per training step and once per preconditioner
/// batch (pad 2 on the 8×8 digits here).
#[test]
fn the_preconditioner_batches_are_augmented_like_the_training_steps() {
    let _serial = SERIAL.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    gpu_code_path();
    let (_dir, registry) = registry();
    let (epochs, batch, precond_batches) = (2u64, 100u64, 3u64);
    let cfg: CellConfig = serde_json::from_value(serde_json::json!({
        "temperature": 1.0, "seed": 1,
        "data": {"dataset": "digits", "train_size": 300, "test_size": 50},
        "model": {"kind": "cnn", "channels": [4]},
        "likelihood": {"name": "categorical", "params": {"augment": true, "pad": 2}},
        "sampler": {"epochs": epochs, "batch_size": batch, "precond_batches": precond_batches,
                    "cycle_length": 1, "cycle_start_sampling": 1, "temperature_ramp": false}
    }))
    .unwrap();
    let data = ablate_engine::load_data(&cfg.data).unwrap();
    let mut steps = PerStep::start().unwrap();
    let outcome = run_cells(std::slice::from_ref(&cfg), &data, &registry, Device::Cpu, &mut steps).unwrap();
    assert_eq!(outcome[0].status, ablate_engine::ChainStatus::Done);
    let pads: u64 = steps.steps.iter().map(|s| s.by_name.get("aten::constant_pad_nd").copied().unwrap_or(0)).sum();
    let training_steps = epochs * (300 / batch);
    assert_eq!(pads, training_steps + epochs * precond_batches, "augmentations counted over the run");
}
