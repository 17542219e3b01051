//! The run-time compatibility rules (`ablate_engine::compat`) and the batching probe on grids
//! that ask for huge networks, with the built-in plugin libraries.
// Tests may unwrap (a panic is the failure report) and be long (one scenario per test).
#![allow(clippy::unwrap_used, clippy::too_many_lines)]

use std::path::PathBuf;
use std::process::Command;

use ablate_engine::compat::{cell_problems, Compat};
use ablate_grid::CellConfig;
use ablate_plugin_host::{Registry, SearchPath};

/// The built-in plugins, built once into this target folder.
fn registry() -> Registry {
    static BUILD: std::sync::Once = std::sync::Once::new();
    BUILD.call_once(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "--quiet"])
            .args(["-p", "ablate-plugin-priors", "-p", "ablate-plugin-likelihoods"])
            .args(["-p", "ablate-plugin-integrators", "-p", "ablate-plugin-noise"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building the built-in plugins failed");
    });
    let exe = std::env::current_exe().unwrap();
    let dir: PathBuf = exe.parent().unwrap().parent().unwrap().to_path_buf();
    Registry::load(&SearchPath::only(&[dir])).unwrap()
}

fn config(v: serde_json::Value) -> CellConfig {
    serde_json::from_value(v).unwrap()
}

#[test]
fn frn_needs_a_convolutional_model() {
    let registry = registry();
    let mlp = config(serde_json::json!({
        "data": {"dataset": "digits"}, "model": {"kind": "mlp", "hidden": [8]},
        "likelihood": {"name": "frn"}
    }));
    let problems = cell_problems(&mlp, &registry);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].path, "likelihood.name");
    assert!(problems[0].message.contains("convolutional"), "{}", problems[0]);

    let cnn = config(serde_json::json!({
        "data": {"dataset": "digits"}, "model": {"kind": "cnn", "channels": [4]},
        "likelihood": {"name": "frn"}
    }));
    assert_eq!(cell_problems(&cnn, &registry), vec![]);
    // The same MLP with batch norm is fine.
    let bn = config(serde_json::json!({
        "data": {"dataset": "digits"}, "model": {"kind": "mlp", "hidden": [8]},
        "likelihood": {"name": "batchnorm"}
    }));
    assert_eq!(cell_problems(&bn, &registry), vec![]);
}

#[test]
fn a_noise_batch_larger_than_the_training_set_is_refused() {
    let registry = registry();
    let cfg = config(serde_json::json!({
        "data": {"dataset": "digits", "train_size": 500}, "model": {"kind": "mlp", "hidden": [8]},
        "noise": {"name": "pretend-batch", "params": {"batch_size": 1_000_000_000u64}}
    }));
    let problems = cell_problems(&cfg, &registry);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].path, "noise.params");
    assert!(problems[0].message.contains("500 training examples"), "{}", problems[0]);
    let fine = config(serde_json::json!({
        "data": {"dataset": "digits", "train_size": 500}, "model": {"kind": "mlp", "hidden": [8]},
        "noise": {"name": "pretend-batch", "params": {"batch_size": 500}}
    }));
    assert_eq!(cell_problems(&fine, &registry), vec![]);
}

#[test]
fn datasets_that_are_not_there_are_named_with_the_fetch_command() {
    let registry = registry();
    let cache = tempfile::tempdir().unwrap();
    // An empty cache: mnist is not cached there.
    std::env::set_var("XDG_CACHE_HOME", cache.path());
    let cfg = config(serde_json::json!({"data": {"dataset": "mnist"}, "model": {"kind": "mlp", "hidden": [8]}}));
    let problems = cell_problems(&cfg, &registry);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].path, "data.dataset");
    assert!(problems[0].hint.contains("ablate data fetch mnist"), "{}", problems[0]);
    // The `eval.ood` dataset must be cached too, and is named at its own setting.
    let cfg = config(serde_json::json!({"data": {"dataset": "mnist"}, "model": {"kind": "mlp", "hidden": [8]},
                                        "eval": {"ood": "fashion-mnist"}}));
    let problems = cell_problems(&cfg, &registry);
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert_eq!(problems[1].path, "eval.ood");
    assert!(problems[1].hint.contains("ablate data fetch fashion-mnist"), "{}", problems[1]);

    let cfg = config(serde_json::json!({
        "data": {"dataset": "cifar10", "path": cache.path().join("nowhere")}, "model": {"kind": "resnet20"}
    }));
    let problems = cell_problems(&cfg, &registry);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].path, "data.path");

    // Answers are remembered: a million look-ups of the same cell are cheap.
    let digits = config(serde_json::json!({"data": {"dataset": "digits"}, "model": {"kind": "mlp", "hidden": [8]}}));
    let mut compat = Compat::new(&registry);
    let t = std::time::Instant::now();
    for _ in 0..10_000 {
        assert!(compat.cell_problems(&digits).is_empty());
    }
    assert!(t.elapsed().as_secs_f64() < 20.0, "{:?}", t.elapsed());
}

/// `"hidden": [100000000]` used to panic in the batching probe (an unwrap in tch allocating
/// 2 x 6.4e9 floats) before any run folder existed: the probe now builds a capped stand-in.
#[test]
fn the_batching_probe_does_not_allocate_the_grids_network() {
    let registry = registry();
    let cfgs: Vec<CellConfig> = [1.0, 0.1]
        .iter()
        .map(|t| {
            config(serde_json::json!({
                "temperature": t, "data": {"dataset": "digits"},
                "model": {"kind": "mlp", "hidden": [100_000_000, 100_000_000]}
            }))
        })
        .collect();
    assert_eq!(ablate_engine::batch_problem(&cfgs, &registry), None);
    let cnn: Vec<CellConfig> = [1.0, 0.1]
        .iter()
        .map(|t| {
            config(serde_json::json!({
                "temperature": t, "data": {"dataset": "digits"},
                "model": {"kind": "cnn", "channels": [1_000_000, 1_000_000]}
            }))
        })
        .collect();
    assert_eq!(ablate_engine::batch_problem(&cnn, &registry), None);
}

/// The grid's static dataset facts match the loader (embedded digits), and its member count
/// matches the engine's protocol for every small protocol, so `grid check` refuses exactly the
/// protocols that collect no member at run time.
#[test]
fn grid_facts_agree_with_the_engine() {
    let facts = ablate_grid::config::dataset_facts("digits").unwrap();
    let ds = ablate_data::load(&ablate_data::DataRequest::new("digits")).unwrap();
    assert_eq!((ds.train.len(), ds.test.len()), (facts.train, facts.test));
    assert_eq!((ds.channels, ds.height, ds.width), facts.shape);
    assert_eq!(ds.num_classes, facts.classes);
    for epochs in 1..13 {
        for cycle_length in 1..6 {
            for cycle_start_sampling in cycle_length..13 {
                let s = ablate_grid::config::SamplerConfig {
                    epochs,
                    cycle_length,
                    cycle_start_sampling,
                    ..Default::default()
                };
                for steps in [1, 3] {
                    let engine = ablate_engine::schedule::Protocol::new(&s, steps, 1.0).expected_members();
                    assert_eq!(ablate_grid::config::expected_members(&s), engine, "{s:?}, {steps} steps per epoch");
                }
            }
        }
    }
}
