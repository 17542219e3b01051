//! Prove the engine on a device: run small real cells and print what happened, one JSON line
//! each. Used for the CUDA check (README, "GPU"); works on any device.
//!
//! ```sh
//! cargo run --release -p ablate-engine --example device_check -- \
//!     --device cuda --plugins target/release [--mnist DIR]
//! ```
#![allow(clippy::print_stdout)]
// the example's output is its report
// Tests may unwrap (a panic is the failure report) and be long (one scenario per test).
#![allow(clippy::unwrap_used, clippy::too_many_lines)]

use std::path::PathBuf;
use std::time::Instant;

use ablate_engine::device::{parse_device, DeviceChoice};
use ablate_engine::{load_data, run_cell, EpochRow, Observer};
use ablate_grid::config::CellConfig;
use ablate_plugin_host::{Registry, SearchPath};
use serde_json::json;

struct Timer {
    epochs: Vec<f64>,
    last: f64,
}

impl Observer for Timer {
    fn epoch(&mut self, row: &EpochRow) {
        self.epochs.push(row.wall_seconds - self.last);
        self.last = row.wall_seconds;
    }
}

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1).cloned())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let choice: DeviceChoice = arg("--device").unwrap_or_else(|| "auto".into()).parse()?;
    let device = parse_device(choice)?;
    let plugins = PathBuf::from(arg("--plugins").unwrap_or_else(|| "target/release".into()));
    println!(
        "{}",
        json!({
            "cuda_available": tch::Cuda::is_available(),
            "gpus": tch::Cuda::device_count(),
            "cudnn": tch::Cuda::cudnn_is_available(),
            "device": format!("{device:?}"),
            "threads": tch::get_num_threads(),
        })
    );
    let registry = Registry::load(&SearchPath::only(&[plugins]))?;
    let mut cells: Vec<(&str, serde_json::Value)> = vec![
        (
            "digits-mlp-quickstart",
            json!({"temperature": 0.1, "data": {"dataset": "digits"}, "model": {"kind": "mlp", "hidden": [50]},
            "sampler": {"epochs": 30, "batch_size": 50, "cycle_length": 3, "cycle_start_sampling": 9}}),
        ),
        (
            "digits-resnet20-batchnorm",
            json!({"temperature": 0.1, "data": {"dataset": "digits"}, "model": {"kind": "resnet20"},
            "likelihood": {"name": "batchnorm"}, "sampler": {"epochs": 4, "batch_size": 64, "cycle_length": 1, "cycle_start_sampling": 2}}),
        ),
        (
            "digits-cnn-frn-augmented",
            json!({"temperature": 0.1, "data": {"dataset": "digits"}, "model": {"kind": "cnn", "channels": [16, 32]},
            "likelihood": {"name": "frn", "params": {"augment": true, "pad": 1}},
            "sampler": {"epochs": 4, "batch_size": 64, "cycle_length": 1, "cycle_start_sampling": 2}}),
        ),
        (
            "digits-mlp-hmc",
            json!({"temperature": 1.0, "data": {"dataset": "digits", "train_size": 500}, "model": {"kind": "mlp", "hidden": [20]},
            "integrator": {"name": "hmc", "params": {"leapfrog_steps": 5}},
            "sampler": {"epochs": 3, "batch_size": 500, "lr": 0.001, "cycle_length": 1, "cycle_start_sampling": 2}}),
        ),
    ];
    if let Some(dir) = arg("--mnist") {
        cells.push((
            "mnist-mlp-784-100-100-10",
            json!({"temperature": 0.01, "data": {"dataset": "mnist", "path": dir, "train_size": 10000},
            "model": {"kind": "mlp", "hidden": [100, 100]},
            "sampler": {"epochs": 10, "batch_size": 100, "cycle_length": 5, "cycle_start_sampling": 5}}),
        ));
    }
    for (name, value) in cells {
        let cfg: CellConfig = serde_json::from_value(value)?;
        let data = load_data(&cfg.data)?;
        let mut timer = Timer { epochs: Vec::new(), last: 0.0 };
        let started = Instant::now();
        let out = run_cell(&cfg, &data, &registry, device, &mut timer)?;
        let m = out.metrics.as_ref();
        let mut epochs = timer.epochs.clone();
        epochs.sort_by(|a, b| a.partial_cmp(b).unwrap());
        println!(
            "{}",
            json!({
                "cell": name,
                "status": format!("{:?}", out.status),
                "accuracy": m.map(|m| m.ensemble.accuracy),
                "nll": m.map(|m| m.ensemble.nll),
                "members": m.map(|m| m.members),
                "acceptance": m.and_then(|m| m.acceptance),
                "kinetic_in_band": m.map(|m| m.diagnostics.kinetic_in_band_fraction),
                "median_epoch_seconds": epochs.get(epochs.len() / 2),
                "wall_seconds": started.elapsed().as_secs_f64(),
            })
        );
    }
    Ok(())
}
