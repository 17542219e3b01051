//! Seconds per epoch (`cargo bench -p ablate-engine --bench epoch`) of K = 1, 4, 17 batched
//! chains, against the FLOP-bound time from a GEMM measured in the same run; chain-epochs per
//! second and the speed-up of K batched chains over K single-chain runs; peak RSS.
//!
//! Needs the built-in plugins next to the bench binary (`cargo build --release -p ablate-plugin-integrators
//! -p ablate-plugin-priors -p ablate-plugin-likelihoods -p ablate-plugin-noise`).
//! Environment: `ABLATE_BENCH_THREADS` (libtorch threads, default 1), `ABLATE_BENCH_MNIST`
//! (folder of the MNIST IDX files; default: the `ablate data fetch mnist` cache; skipped if absent),
//! `ABLATE_BENCH_DEVICE=cuda` (run on the first GPU), `ABLATE_BENCH_PRIOR` (prior plugin, default `gaussian`), `ABLATE_BENCH_CHAINS` (comma-separated
//! K values, default `1,4,17`), `ABLATE_BENCH_CNN=0` (skip the Fashion-MNIST CNN workload),
//! `ABLATE_BENCH_FASHION` (folder of the Fashion-MNIST IDX files; default: the cache),
//! `ABLATE_BENCH_CIFAR` (a folder of CIFAR-10 binary batches, real or CIFAR-shaped random ones from
//! `benches/reference/cifar_shaped.py`: adds the ResNet-20 + batch norm workload),
//! `ABLATE_BENCH_WORKLOADS` (comma-separated names to run; default all available),
//! `ABLATE_BENCH_PRECISION` (the cells' `precision`: fp32, tf32 or bf16; default fp32; with
//! `ABLATE_CHANNELS_LAST=1` convolutional workloads on CUDA run channels-last). With MNIST it
//! also prints `mnist-mlp-floor`: libtorch's forward + backward of the same epoch alone, no
//! sampler, the practical floor under the FLOP bound.
//! Prints one JSON line per workload and K; `benches/reference/compare.sh` reads them. On a GPU
//! each line also holds the device memory the process holds (nvidia-smi; libtorch's caching
//! allocator keeps its peak, so run one K per process for per-K figures).
#![allow(clippy::print_stdout)]
// a benchmark's output is its report
// Tests may unwrap (a panic is the failure report) and be long (one scenario per test).
#![allow(clippy::unwrap_used, clippy::too_many_lines)]

mod common;

use std::path::PathBuf;
use std::time::Instant;

use ablate_engine::{load_data, run_cells, EpochRow, Observer};
use ablate_grid::config::CellConfig;
use ablate_plugin_host::{Registry, SearchPath};
use serde_json::json;
use tch::{Device, Kind, Tensor};

struct Epochs(Vec<f64>, f64);

impl Observer for Epochs {
    fn epoch(&mut self, row: &EpochRow) {
        self.0.push(row.wall_seconds - self.1);
        self.1 = row.wall_seconds;
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// fp32 GEMM rate (FLOP/s) of a 1024³ product (8192³ on a GPU), median of 10.
fn gemm_rate(device: Device) -> f64 {
    let n = if device.is_cuda() { 8192 } else { 1024 };
    let a = Tensor::randn([n, n], (Kind::Float, device));
    let b = Tensor::randn([n, n], (Kind::Float, device));
    let _ = a.matmul(&b);
    median(
        (0..10)
            .map(|_| {
                let t = Instant::now();
                let _ = a.matmul(&b).sum(Kind::Float).double_value(&[]);
                2.0 * (n as f64).powi(3) / t.elapsed().as_secs_f64()
            })
            .collect(),
    )
}

/// Peak resident set size of this process so far (MiB), from /proc (Linux).
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    Some(line.split_whitespace().nth(1)?.parse::<f64>().ok()? / 1024.0)
}

/// The floor under the MNIST MLP epoch: libtorch's forward and backward of the 784-100-100-10
/// MLP and the copy that flattens the gradient, for the 132 batches of 100 of one epoch, with no
/// sampler, prior or preconditioner work; median seconds of 6 epochs after one warm-up.
fn autograd_floor(data: &ablate_data::Dataset, device: Device) -> f64 {
    let n = data.train.len() as i64;
    let x = Tensor::from_slice(&data.train.images).reshape([n, -1]).to_device(device);
    let y = Tensor::from_slice(&data.train.labels).to_device(device);
    let sizes = [x.size()[1], 100, 100, 10];
    let params: Vec<Tensor> = (0..3)
        .flat_map(|i| {
            let w = (Tensor::randn([sizes[i + 1], sizes[i]], (Kind::Float, device)) * 0.05).set_requires_grad(true);
            [w, Tensor::zeros([sizes[i + 1]], (Kind::Float, device)).set_requires_grad(true)]
        })
        .collect();
    let perm = Tensor::randperm(n, (Kind::Int64, device));
    let times: Vec<f64> = (0..7)
        .map(|_| {
            let t = Instant::now();
            for b in 0..132 {
                let idx = perm.narrow(0, (b * 100) % (n - 100), 100);
                let (xb, yb) = (x.index_select(0, &idx), y.index_select(0, &idx));
                let h = xb.linear(&params[0], Some(&params[1])).relu();
                let h = h.linear(&params[2], Some(&params[3])).relu();
                let loss = h.linear(&params[4], Some(&params[5])).cross_entropy_for_logits(&yb);
                let grads = Tensor::run_backward(&[loss], &params, false, false);
                let flat = Tensor::cat(&grads.iter().map(|g| g.reshape([-1])).collect::<Vec<_>>(), 0);
                if device.is_cuda() && b == 131 {
                    let _ = flat.sum(Kind::Float).double_value(&[]);
                }
            }
            t.elapsed().as_secs_f64()
        })
        .collect();
    median(times[1..].to_vec())
}

/// Device memory this process holds (MiB, CUDA context included), from `nvidia-smi`; the GPU's
/// whole used memory when the process is not listed (a container's own PID namespace).
fn device_memory_mib() -> Option<f64> {
    let query = |what: &str| {
        let out =
            std::process::Command::new("nvidia-smi").args([what, "--format=csv,noheader,nounits"]).output().ok()?;
        Some(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let pid = std::process::id().to_string();
    let own = query("--query-compute-apps=pid,used_memory")?.lines().find_map(|l| {
        let (p, mib) = l.split_once(',')?;
        (p.trim() == pid).then(|| mib.trim().parse().ok()).flatten()
    });
    own.or_else(|| query("--query-gpu=memory.used")?.lines().next()?.trim().parse().ok())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let threads: i32 = std::env::var("ABLATE_BENCH_THREADS").ok().and_then(|t| t.parse().ok()).unwrap_or(1);
    tch::set_num_threads(threads);
    let _ = rayon::ThreadPoolBuilder::new().num_threads(threads as usize).build_global();
    let registry = Registry::load(&SearchPath::standard(&[]))?;
    // `ABLATE_BENCH_DEVICE=cuda` runs the same workloads on the first GPU.
    let device = match std::env::var("ABLATE_BENCH_DEVICE").as_deref() {
        Ok("cuda") => Device::Cuda(0),
        _ => Device::Cpu,
    };
    let rate = gemm_rate(device);
    let mnist = common::data_dir("ABLATE_BENCH_MNIST", "mnist");
    // T = 1 from the first step (no ramp) so that every step does the full work, as the reference.
    let sampler = |epochs: usize, batch: usize| {
        json!({"epochs": epochs, "batch_size": batch, "lr": 0.1, "momentum_decay": 0.98, "cycle_length": 1,
               "cycle_start_sampling": epochs, "temperature_ramp": false})
    };
    // `ABLATE_BENCH_PRIOR=flat` shows what the prior's share of a step is.
    let prior = std::env::var("ABLATE_BENCH_PRIOR").unwrap_or_else(|_| "gaussian".into());
    let mut workloads = vec![(
        "quickstart-mlp",
        json!({"temperature": 1.0, "data": {"dataset": "digits"}, "model": {"kind": "mlp", "hidden": [50]},
               "sampler": sampler(12, 50), "prior": {"name": prior}}),
        // digits: 1297 examples, batch 50: 25 steps + 32 preconditioner batches of 50.
        (25 + 32) as f64 * 6.0 * 50.0 * (64.0 * 50.0 + 50.0 + 50.0 * 10.0 + 10.0),
    )];
    if let Some(dir) = &mnist {
        workloads.push((
            "mnist-mlp",
            json!({"temperature": 1.0, "data": {"dataset": "mnist", "path": dir, "train_size": 10000},
                   "model": {"kind": "mlp", "hidden": [100, 100]}, "sampler": sampler(7, 100),
                   "prior": {"name": prior}}),
            // 100 steps + 32 preconditioner batches, forward + backward = 6 FLOP per weight and example.
            132.0 * 6.0 * 100.0 * 89_610.0,
        ));
    }
    // The dirty-likelihood grid's CNN (16 and 32 channels) with batch norm on 5k Fashion-MNIST
    // images, if cached (`ablate data fetch fashion-mnist`); opt out with ABLATE_BENCH_CNN=0.
    let fashion = common::data_dir("ABLATE_BENCH_FASHION", "fashion-mnist");
    if let Some(dir) = fashion.filter(|_| std::env::var("ABLATE_BENCH_CNN").map_or(true, |v| v != "0")) {
        workloads.push((
            "fashion-cnn-bn",
            json!({"temperature": 1.0, "data": {"dataset": "fashion-mnist", "path": dir, "train_size": 5000, "test_size": 1000},
                   "model": {"kind": "cnn", "channels": [16, 32]}, "likelihood": {"name": "batchnorm"},
                   "sampler": sampler(4, 100), "prior": {"name": prior}}),
            // 50 steps + 32 preconditioner batches of 100; ≈ 1.03 M multiply-adds per image
            // forward (conv 1→16 at 28², conv 16→32 at 14², head), ×3 with the backward pass.
            82.0 * 100.0 * 6.0 * 1.032e6,
        ));
    }
    // ResNet-20 (Keras v1, batch norm) on CIFAR-shaped 32x32x3 images, the paper's batch of 128
    // on 10k training images: 78 steps + 32 preconditioner batches per epoch.
    if let Some(dir) = std::env::var("ABLATE_BENCH_CIFAR").map(PathBuf::from).ok().filter(|p| p.is_dir()) {
        workloads.push((
            "cifar-resnet20-bn",
            json!({"temperature": 1.0, "data": {"dataset": "cifar10", "path": dir, "train_size": 10000, "test_size": 1000},
                   "model": {"kind": "resnet20"}, "likelihood": {"name": "batchnorm"},
                   "sampler": sampler(4, 128), "prior": {"name": prior}}),
            // 40.8 M multiply-adds per image forward (stem 0.44 M, three stages of 14.2, 13.1 and
            // 13.1 M), ×3 with the backward pass, 2 FLOP each; 110 batches of 128.
            110.0 * 128.0 * 6.0 * 40.8e6,
        ));
    }
    // `ABLATE_BENCH_WORKLOADS`: the names to run (default all available).
    let only = std::env::var("ABLATE_BENCH_WORKLOADS").ok();
    let wanted = |name: &str| only.as_deref().is_none_or(|o| o.split(',').any(|n| n.trim() == name));
    workloads.retain(|(name, _, _)| wanted(name));
    let ks: Vec<usize> = std::env::var("ABLATE_BENCH_CHAINS")
        .unwrap_or_else(|_| "1,4,17".into())
        .split(',')
        .filter_map(|k| k.trim().parse().ok())
        .collect();
    let precision: ablate_grid::config::Precision =
        serde_json::from_value(json!(std::env::var("ABLATE_BENCH_PRECISION").unwrap_or_else(|_| "fp32".into())))?;
    let channels_last = std::env::var("ABLATE_CHANNELS_LAST").is_ok_and(|v| v == "1");
    for (name, value, flops) in workloads {
        let mut base: CellConfig = serde_json::from_value(value)?;
        base.precision = precision;
        let data = load_data(&base.data)?;
        if name == "mnist-mlp" && wanted("mnist-mlp-floor") {
            let m = autograd_floor(&data, device);
            println!(
                "{}",
                json!({"workload": "mnist-mlp-floor", "threads": threads, "chains": 1, "device": format!("{device:?}"),
                       "median_epoch_seconds": m, "gemm_gflops": rate / 1e9, "flop_bound_seconds": flops / rate,
                       "ratio_to_flop_bound": m / (flops / rate),
                       "what": "forward + backward + flattening of the gradient alone, 132 batches of 100, no sampler"})
            );
        }
        let mut single = None;
        for &k in &ks {
            let cfgs = common::chains(&base, k);
            let mut epochs = Epochs(Vec::new(), 0.0);
            run_cells(&cfgs, &data, &registry, device, &mut epochs)?;
            // The first epoch warms up; the last one also evaluates the ensemble member.
            let timed = epochs.0[1..epochs.0.len() - 1].to_vec();
            let m = median(timed);
            let chain_epochs_per_second = k as f64 / m;
            let base_rate = *single.get_or_insert(chain_epochs_per_second);
            let bound = k as f64 * flops / rate;
            println!(
                "{}",
                json!({"workload": name, "threads": threads, "chains": k, "device": format!("{device:?}"), "median_epoch_seconds": m,
                       "precision": precision.name(), "channels_last_requested": channels_last,
                       "chain_epochs_per_second": chain_epochs_per_second,
                       "speedup_vs_single_chain_runs": chain_epochs_per_second / base_rate,
                       "gemm_gflops": rate / 1e9, "epoch_gflop": k as f64 * flops / 1e9, "flop_bound_seconds": bound,
                       "ratio_to_flop_bound": m / bound, "peak_rss_mib": peak_rss_mib(),
                       "device_memory_mib": device.is_cuda().then(device_memory_mib).flatten()})
            );
        }
    }
    Ok(())
}
