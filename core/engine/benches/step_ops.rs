//! Operator calls per sampler step (`cargo bench -p ablate-engine --bench step_ops`): how many
//! kernels a step launches, the figure that bounds a GPU step of a small model (each launch costs
//! the host a few µs, whatever the tensor size). Counted by libtorch's operator observer
//! (`ablate_engine::dispatch_count`) over every step of a short run; prints one JSON line per
//! workload and K with the median step's counts and its kernel-launching operators by name.
//!
//! The count is the same on any device for the same code path. By default the CPU's fused loops
//! are off (`ABLATE_UNFUSED=1` is set here unless the caller set it), so the step runs the
//! operators a GPU step runs; the CPU-only per-step checks are marked (`dispatch_count::CpuOnly`)
//! and not counted. One difference stays: the CPU draws the O-step's noise in Rust (no operator),
//! a GPU with one `randn` kernel per step (`gpu_noise_draws` in the output; the kernel count of a
//! GPU step is `kernels + gpu_noise_draws`). `ABLATE_BENCH_DEVICE=cuda` counts on the first GPU.
//!
//! Needs the built-in plugins next to the bench binary (see `benches/epoch.rs`). Workloads: the
//! quickstart MLP on `digits` (always), the MNIST MLP of `ablations/mnist-mlp-protocol.json` if
//! MNIST is cached (or `ABLATE_BENCH_MNIST`), ResNet-20 + batch norm, without and with the paper's augmentation
//! (`cifar-resnet20-paper`), if `ABLATE_BENCH_CIFAR` names a folder of CIFAR-10 binary batches (`benches/reference/cifar_shaped.py` writes random ones).
//! `ABLATE_BENCH_CHAINS` (comma-separated K, default `1,18`), `ABLATE_BENCH_WORKLOADS`,
//! `ABLATE_BENCH_PRIOR` (default `gaussian`), `ABLATE_BENCH_INTEGRATOR` (default `sym-euler`).
#![allow(clippy::print_stdout)]
// a benchmark's output is its report
#![allow(clippy::unwrap_used, clippy::too_many_lines)]

mod common;

use std::path::PathBuf;

use ablate_engine::dispatch_count::{OpCounts, PerStep};
use ablate_engine::{load_data, run_cells};
use ablate_grid::config::CellConfig;
use ablate_plugin_host::{Registry, SearchPath};
use serde_json::json;
use tch::Device;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::var_os("ABLATE_UNFUSED").is_none() {
        // SAFETY: set before any thread that reads the environment starts.
        unsafe { std::env::set_var("ABLATE_UNFUSED", "1") };
    }
    tch::set_num_threads(1);
    let registry = Registry::load(&SearchPath::standard(&[]))?;
    let device = match std::env::var("ABLATE_BENCH_DEVICE").as_deref() {
        Ok("cuda") => Device::Cuda(0),
        _ => Device::Cpu,
    };
    let prior = std::env::var("ABLATE_BENCH_PRIOR").unwrap_or_else(|_| "gaussian".into());
    let integrator = std::env::var("ABLATE_BENCH_INTEGRATOR").unwrap_or_else(|_| "sym-euler".into());
    // The paper's protocol (cycles, ramp, members) over a few epochs, so that member steps and
    // epoch starts occur; the median step is an ordinary sampling step.
    let sampler = |epochs: usize, batch: usize| {
        json!({"epochs": epochs, "batch_size": batch, "lr": 0.1, "momentum_decay": 0.98, "cycle_length": 1,
               "cycle_start_sampling": 1})
    };
    let mut workloads = vec![(
        "quickstart-mlp",
        json!({"data": {"dataset": "digits"}, "model": {"kind": "mlp", "hidden": [50]}, "sampler": sampler(3, 50)}),
    )];
    if let Some(dir) = common::data_dir("ABLATE_BENCH_MNIST", "mnist") {
        workloads.push((
            "mnist-mlp",
            json!({"data": {"dataset": "mnist", "path": dir, "train_size": 2000, "test_size": 500},
                   "model": {"kind": "mlp", "hidden": [100, 100]}, "sampler": sampler(2, 100)}),
        ));
    }
    if let Some(dir) = std::env::var("ABLATE_BENCH_CIFAR").map(PathBuf::from).ok().filter(|p| p.is_dir()) {
        workloads.push((
            "cifar-resnet20-bn",
            json!({"data": {"dataset": "cifar10", "path": dir, "train_size": 1280, "test_size": 128},
                   "model": {"kind": "resnet20"}, "likelihood": {"name": "batchnorm"}, "sampler": sampler(2, 128)}),
        ));
        // The likelihood of ablations/gpu/paper-resnet20-cifar10.json: batch norm and the
        // paper's augmentation (pad 4, random crop, flip).
        workloads.push((
            "cifar-resnet20-paper",
            json!({"data": {"dataset": "cifar10", "path": dir, "train_size": 1280, "test_size": 128},
                   "model": {"kind": "resnet20"},
                   "likelihood": {"name": "categorical", "params": {"norm": "batchnorm", "augment": true, "pad": 4}},
                   "sampler": sampler(2, 128)}),
        ));
    }
    let only = std::env::var("ABLATE_BENCH_WORKLOADS").ok();
    workloads.retain(|(name, _)| only.as_deref().is_none_or(|o| o.split(',').any(|n| n.trim() == *name)));
    let ks: Vec<usize> = std::env::var("ABLATE_BENCH_CHAINS")
        .unwrap_or_else(|_| "1,18".into())
        .split(',')
        .filter_map(|k| k.trim().parse().ok())
        .collect();
    for (name, mut value) in workloads {
        value["prior"] = json!({"name": prior});
        value["integrator"] = json!({"name": integrator});
        let base: CellConfig = serde_json::from_value(value)?;
        let data = load_data(&base.data)?;
        for &k in &ks {
            let cfgs = common::chains(&base, k);
            let mut steps = PerStep::start()?;
            run_cells(&cfgs, &data, &registry, device, &mut steps)?;
            let median = steps.median().ok_or("the run took no step")?;
            let ops: Vec<_> = median.kernel_ops().into_iter().map(|(n, c)| json!([n, c])).collect();
            if std::env::var("ABLATE_BENCH_ALL_NAMES").is_ok_and(|v| v == "1") {
                eprintln!("{name} K={k} median step, every issued call and backward node: {:#?}", median.by_name);
            }
            println!(
                "{}",
                json!({"workload": name, "chains": k, "device": format!("{device:?}"), "prior": prior,
                       "integrator": integrator, "steps": steps.steps.len(),
                       "fused_cpu_loops": std::env::var("ABLATE_UNFUSED").map_or(true, |v| v != "1"),
                       "median_step": {"kernels": median.kernels(), "backward_nodes": median.nodes,
                                       "operator_calls": median.all, "host_reads": median.host_reads()},
                       "max_step_kernels": steps.steps.iter().map(OpCounts::kernels).max(),
                       "gpu_noise_draws": u64::from(device == Device::Cpu),
                       "kernel_ops": ops})
            );
        }
    }
    Ok(())
}
