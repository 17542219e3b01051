//! `data.subset` and `data.label_noise` as the engine loads them for a cell.
// Tests may unwrap (a panic is the failure report) and be long (one scenario per test).
#![allow(clippy::unwrap_used, clippy::too_many_lines)]

use ablate_engine::{batch_key, load_cell_data};
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
