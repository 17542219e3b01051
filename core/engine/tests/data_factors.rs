//! `data.subset` and `data.label_noise` as the engine loads them for a cell.
// Tests may unwrap (a panic is the failure report) and be long (one scenario per test).
#![allow(clippy::unwrap_used, clippy::too_many_lines)]

mod builtins;

use ablate_engine::{batch_key, load_cell_data, run_cells, ChainStatus};
use ablate_grid::CellConfig;
use serde_json::json;

fn cell(seed: u64, temperature: f64, data: serde_json::Value) -> CellConfig {
    serde_json::from_value(json!({
        "seed": seed, "temperature": temperature, "data": data,
        "model": { "kind": "mlp", "hidden": [8] }
    }))
    .unwrap()
}

#[test]
fn label_noise_is_seeded_by_the_cell_seed_and_keeps_seeds_apart_in_batches() {
    let data = json!({ "dataset": "digits", "train_size": 1000, "label_noise": 0.5 });
    let clean = load_cell_data(&cell(1, 1.0, json!({ "dataset": "digits", "train_size": 1000 }))).unwrap();
    let a = load_cell_data(&cell(1, 1.0, data.clone())).unwrap();
    let a2 = load_cell_data(&cell(1, 0.1, data.clone())).unwrap();
    let b = load_cell_data(&cell(2, 1.0, data.clone())).unwrap();
    assert_eq!(a, a2, "same seed, same noisy labels");
    assert_ne!(a.train.labels, b.train.labels, "another seed, other noisy labels");
    assert_eq!(a.train.images, clean.train.images);
    assert_eq!(a.test, clean.test, "the test labels stay clean");
    // 500 labels redrawn over 10 classes: 450 changed in expectation, binomial SE sqrt(500*.9*.1).
    let changed = a.train.labels.iter().zip(&clean.train.labels).filter(|(x, y)| x != y).count() as f64;
    let se = (500.0f64 * 0.9 * 0.1).sqrt();
    assert!((changed - 450.0).abs() <= 4.0 * se, "{changed} changed");

    // Noisy cells batch only with cells of their own seed; clean cells across seeds as before.
    assert_eq!(batch_key(&cell(1, 1.0, data.clone())), batch_key(&cell(1, 0.1, data.clone())));
    assert_ne!(batch_key(&cell(1, 1.0, data.clone())), batch_key(&cell(2, 1.0, data)));
    let plain = json!({ "dataset": "digits" });
    assert_eq!(batch_key(&cell(1, 1.0, plain.clone())), batch_key(&cell(2, 0.1, plain)));
}

#[test]
fn subset_first_reaches_the_loader() {
    let full = load_cell_data(&cell(1, 1.0, json!({ "dataset": "digits" }))).unwrap();
    let first = load_cell_data(&cell(
        1,
        1.0,
        json!({ "dataset": "digits", "train_size": 200, "test_size": 30, "subset": "first" }),
    ))
    .unwrap();
    assert_eq!(first.train.labels, full.train.labels[..200].to_vec());
    assert_eq!(first.test.labels, full.test.labels[..30].to_vec());
    let random = load_cell_data(&cell(1, 1.0, json!({ "dataset": "digits", "train_size": 200 }))).unwrap();
    assert_ne!(random.train.labels, first.train.labels);
}

/// The n of the posterior p(θ|D)^(1/T) ∝ exp(−n·G̃/T) that `run_cells` hands the sampler is the
/// likelihood's effective n of the cell's own training subset: `train_size` examples for a plain
/// likelihood, copies × examples when an augmented likelihood counts its copies, and the
/// examples for `curated` (its S·NLL carries the annotators, not n). Checked through
/// the path `ablate run` uses, with the steps per epoch that follow from the subset.
#[test]
fn run_cells_hands_the_sampler_the_effective_n_of_the_cells_subset() {
    let (_dir, registry) = builtins::registry();
    let (epochs, batch, train) = (2u64, 50u64, 300u64);
    let cases = [
        (json!({"name": "categorical"}), 300.0),
        (
            json!({"name": "categorical", "params": {"augment": true, "pad": 2, "n_counting": "augmented", "copies": 3}}),
            900.0,
        ),
        (json!({"name": "curated", "params": {"annotators": 3}}), 300.0),
    ];
    for (likelihood, n) in cases {
        let cfg: CellConfig = serde_json::from_value(json!({
            "temperature": 1.0, "seed": 1,
            "data": {"dataset": "digits", "train_size": train, "test_size": 50},
            "model": {"kind": "mlp", "hidden": [8]},
            "likelihood": likelihood,
            "sampler": {"epochs": epochs, "batch_size": batch, "precond_batches": 2,
                        "cycle_length": 1, "cycle_start_sampling": 1, "temperature_ramp": false}
        }))
        .unwrap();
        let data = load_cell_data(&cfg).unwrap();
        assert_eq!(data.train.len() as u64, train);
        let outcome = run_cells(std::slice::from_ref(&cfg), &data, &registry, tch::Device::Cpu, &mut ()).unwrap();
        assert_eq!(outcome[0].status, ChainStatus::Done, "{likelihood}");
        let metrics = outcome[0].metrics.as_ref().unwrap();
        assert_eq!(metrics.n_effective, n, "{likelihood}");
        assert_eq!(metrics.steps, epochs * (train / batch), "{likelihood}");
    }
}
