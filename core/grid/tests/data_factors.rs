//! `data.subset` and `data.label_noise`: parsing, validation with JSON paths, stable cell ids.
// Tests may unwrap (a panic is the failure report) and be long (one scenario per test).
#![allow(clippy::unwrap_used, clippy::too_many_lines)]

use ablate_grid::config::SubsetMode;
use ablate_grid::{cell_id, Grid};
use serde_json::{json, Value};

fn grid(data: Value, axes: Value) -> Value {
    json!({
        "name": "data-factors",
        "base": { "data": data, "model": { "kind": "mlp", "hidden": [8] } },
        "axes": axes
    })
}

#[test]
fn subset_and_label_noise_parse_with_defaults() {
    let g = Grid::from_value(&grid(
        json!({ "dataset": "digits", "train_size": 100, "subset": "first" }),
        json!([{ "path": "data.label_noise", "values": [0.0, 0.2, 1.0] }]),
    ))
    .unwrap();
    let got: Vec<(SubsetMode, f64)> =
        g.cells.iter().map(|c| (c.config.data.subset, c.config.data.label_noise)).collect();
    assert_eq!(got, vec![(SubsetMode::First, 0.0), (SubsetMode::First, 0.2), (SubsetMode::First, 1.0)]);
    let g =
        Grid::from_value(&grid(json!({ "dataset": "digits" }), json!([{ "path": "seed", "values": [1] }]))).unwrap();
    assert_eq!(g.cells[0].config.data.subset, SubsetMode::Random);
    assert_eq!(g.cells[0].config.data.label_noise, 0.0);
}

#[test]
fn defaults_leave_cell_ids_unchanged() {
    // Cells written before these fields existed keep their ids (and so resume).
    let plain =
        Grid::from_value(&grid(json!({ "dataset": "digits" }), json!([{ "path": "seed", "values": [1] }]))).unwrap();
    let explicit = Grid::from_value(&grid(
        json!({ "dataset": "digits", "subset": "random", "label_noise": 0.0 }),
        json!([{ "path": "seed", "values": [1] }]),
    ))
    .unwrap();
    assert_eq!(cell_id(&plain.cells[0].config), cell_id(&explicit.cells[0].config));
    let json = serde_json::to_value(&plain.cells[0].config).unwrap();
    assert!(json["data"].get("subset").is_none() && json["data"].get("label_noise").is_none(), "{json}");
    let first = Grid::from_value(&grid(
        json!({ "dataset": "digits", "subset": "first", "label_noise": 0.1 }),
        json!([{ "path": "seed", "values": [1] }]),
    ))
    .unwrap();
    assert_ne!(cell_id(&plain.cells[0].config), cell_id(&first.cells[0].config));
}

#[test]
fn bad_values_are_reported_at_their_json_path() {
    let err = Grid::from_value(&grid(
        json!({ "dataset": "digits", "label_noise": 1.5 }),
        json!([{ "path": "data.label_noise", "values": [0.1, -0.2] }, { "path": "seed", "values": [1] }]),
    ))
    .unwrap_err();
    let paths: Vec<&str> = err.problems.iter().map(|p| p.path.as_str()).collect();
    assert!(paths.contains(&"axes[0].values[1]"), "{err}");
    // The base value is overridden by the axis, so only the axis value is wrong.
    let err = Grid::from_value(&grid(
        json!({ "dataset": "digits", "label_noise": 1.5 }),
        json!([{ "path": "seed", "values": [1] }]),
    ))
    .unwrap_err();
    let p = err.problems.iter().find(|p| p.path == "base.data.label_noise").unwrap_or_else(|| panic!("{err}"));
    assert!(p.message.contains("[0, 1]"), "{}", p.message);
    let err = Grid::from_value(&grid(
        json!({ "dataset": "digits", "subset": "last" }),
        json!([{ "path": "seed", "values": [1] }]),
    ))
    .unwrap_err();
    assert!(err.problems.iter().any(|p| p.path == "base.data.subset"), "{err}");
    assert!(err.to_string().contains("first"), "the message lists the choices: {err}");
}
