//! The `precision` cell setting: parsed with its default, left out of the canonical JSON (and so
//! of cell ids) when fp32, refused at its JSON path when unknown.
// Tests may unwrap (a panic is the failure report) and be long (one scenario per test).
#![allow(clippy::unwrap_used, clippy::too_many_lines)]

use ablate_grid::config::Precision;
use ablate_grid::{cell_id, Grid};
use serde_json::{json, Value};

fn grid(base_extra: Value, axes: Value) -> Value {
    let mut base = json!({ "data": { "dataset": "digits" }, "model": { "kind": "mlp", "hidden": [8] } });
    for (k, v) in base_extra.as_object().unwrap() {
        base[k] = v.clone();
    }
    json!({ "name": "precision", "base": base, "axes": axes })
}

#[test]
fn precision_parses_and_fp32_keeps_cell_ids() {
    let seeds = json!([{ "path": "seed", "values": [1] }]);
    let plain = Grid::from_value(&grid(json!({}), seeds.clone())).unwrap();
    let explicit = Grid::from_value(&grid(json!({ "precision": "fp32" }), seeds.clone())).unwrap();
    assert_eq!(plain.cells[0].config.precision, Precision::Fp32);
    assert_eq!(cell_id(&plain.cells[0].config), cell_id(&explicit.cells[0].config));
    let json = serde_json::to_value(&plain.cells[0].config).unwrap();
    assert!(json.get("precision").is_none(), "{json}");

    let g = Grid::from_value(&grid(json!({}), json!([{ "path": "precision", "values": ["fp32", "tf32", "bf16"] }])))
        .unwrap();
    let got: Vec<Precision> = g.cells.iter().map(|c| c.config.precision).collect();
    assert_eq!(got, vec![Precision::Fp32, Precision::Tf32, Precision::Bf16]);
    let ids: std::collections::BTreeSet<String> = g.cells.iter().map(|c| cell_id(&c.config)).collect();
    assert_eq!(ids.len(), 3, "each precision is its own cell");
    assert_eq!(cell_id(&g.cells[0].config), cell_id(&plain.cells[0].config));
    let bf16 = serde_json::to_value(&g.cells[2].config).unwrap();
    assert_eq!(bf16["precision"], "bf16");
}

#[test]
fn unknown_precision_is_refused_at_its_path() {
    let err = Grid::from_value(&grid(json!({ "precision": "fp16" }), json!([{ "path": "seed", "values": [1] }])))
        .unwrap_err()
        .to_string();
    assert!(err.contains("base.precision") && err.contains("fp16") && err.contains("bf16"), "{err}");
}
