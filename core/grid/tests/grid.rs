//! Expansion, validation, robustness and sharding of grid files.
// Tests may unwrap (a panic is the failure report) and be long (one scenario per test).
#![allow(clippy::unwrap_used, clippy::too_many_lines)]

use ablate_grid::{cell_id, schema, shard, Grid, Shard};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};

/// 4 axes, two of them zipped (so 3 units of the cross product: 3 x 2 x 2 = 12), and an exclude
/// that drops 2 cells.
fn example() -> Value {
    json!({
        "name": "demo",
        "description": "temperature x prior scale x (seed, lr)",
        "base": {
            "data": { "dataset": "digits", "train_size": 500 },
            "model": { "kind": "mlp", "hidden": [32] },
            "sampler": { "epochs": 20 },
            "prior": { "name": "gaussian" }
        },
        "axes": [
            { "path": "temperature", "values": [1.0, 0.1, 0.01] },
            { "path": "prior.params.scale", "name": "scale", "values": [1.0, 0.1], "labels": ["wide", "narrow"] },
            { "path": "seed", "values": [1, 2] },
            { "path": "sampler.lr", "name": "lr", "values": [0.1, 0.05] }
        ],
        "zip": [["seed", "lr"]],
        "exclude": [{ "temperature": 0.01, "scale": "narrow" }]
    })
}

#[test]
fn expands_to_the_expected_cells() {
    let grid = Grid::from_value(&example()).unwrap();
    let got: Vec<(f64, f64, u64, f64)> = grid
        .cells
        .iter()
        .map(|c| {
            (c.config.temperature, c.config.prior.params["scale"].as_f64().unwrap(), c.config.seed, c.config.sampler.lr)
        })
        .collect();
    let expected = vec![
        (1.0, 1.0, 1, 0.1),
        (1.0, 1.0, 2, 0.05),
        (1.0, 0.1, 1, 0.1),
        (1.0, 0.1, 2, 0.05),
        (0.1, 1.0, 1, 0.1),
        (0.1, 1.0, 2, 0.05),
        (0.1, 0.1, 1, 0.1),
        (0.1, 0.1, 2, 0.05),
        (0.01, 1.0, 1, 0.1),
        (0.01, 1.0, 2, 0.05),
    ];
    assert_eq!(got, expected);
    for (i, c) in grid.cells.iter().enumerate() {
        assert_eq!(c.index, i);
        assert_eq!(c.id.len(), 16);
        assert_eq!(c.id, cell_id(&c.config));
        // Everything not on an axis comes from base or the defaults.
        assert_eq!(c.config.data.train_size, Some(500));
        assert_eq!(c.config.sampler.epochs, 20);
        assert_eq!(c.config.sampler.momentum_decay, 0.98);
    }
    let mut ids: Vec<&str> = grid.cells.iter().map(|c| c.id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 10, "ids are distinct");

    // Labels: axis display names in axis order, labels where given, temperature and seed always.
    let labels = Value::Object(grid.cells[3].labels.clone());
    assert_eq!(labels, json!({ "temperature": 1.0, "scale": "narrow", "seed": 2, "lr": 0.05 }));
    let keys: Vec<&String> = grid.cells[3].labels.keys().collect();
    assert_eq!(keys, ["temperature", "scale", "seed", "lr"]);

    // The id of a config is pinned: changing the hashing scheme breaks resumption of old runs.
    assert_eq!(grid.cells[0].id, GOLDEN_FIRST_ID, "cell id scheme changed");
}

const GOLDEN_FIRST_ID: &str = "2e75206f66fcc2c1";

#[test]
fn ids_do_not_depend_on_key_order_or_written_defaults() {
    let a = Grid::from_value(&example()).unwrap();
    // Same grid with keys in another order and some defaults spelled out.
    let b = Grid::from_json_str(
        r#"{
        "exclude": [{ "scale": 0.1, "temperature": 0.01 }],
        "zip": [["sampler.lr", "seed"]],
        "axes": [
            { "values": [1.0, 0.1, 0.01], "path": "temperature" },
            { "labels": ["wide", "narrow"], "values": [1, 0.1], "name": "scale", "path": "prior.params.scale" },
            { "values": [1, 2], "path": "seed" },
            { "name": "lr", "values": [0.1, 0.05], "path": "sampler.lr" }
        ],
        "base": {
            "prior": { "params": {}, "name": "gaussian" },
            "sampler": { "momentum_decay": 0.98, "epochs": 20 },
            "model": { "hidden": [32], "kind": "mlp", "activation": "relu" },
            "data": { "train_size": 500, "dataset": "digits", "subset_seed": 124 }
        },
        "name": "demo"
    }"#,
    )
    .unwrap();
    let ids_a: Vec<&str> = a.cells.iter().map(|c| c.id.as_str()).collect();
    let ids_b: Vec<&str> = b.cells.iter().map(|c| c.id.as_str()).collect();
    // `scale` 1 vs 1.0 inside plugin params is kept as written (plugins see it), so compare
    // the cells whose scale is 0.1 exactly, and all cells' ids for everything else.
    for (x, y) in a.cells.iter().zip(&b.cells) {
        assert_eq!(x.labels, y.labels);
        if x.config.prior.params["scale"] == json!(0.1) {
            assert_eq!(x.id, y.id);
        }
    }
    assert_eq!(ids_a.len(), ids_b.len());
}

#[test]
fn a_grid_without_axes_is_one_cell() {
    let g = Grid::from_value(&json!({
        "name": "one",
        "base": { "data": { "dataset": "mnist" }, "model": { "kind": "resnet20" } }
    }))
    .unwrap();
    assert_eq!(g.len(), 1);
    assert_eq!(Value::Object(g.cells[0].labels.clone()), json!({ "temperature": 1.0, "seed": 1 }));
}

#[test]
fn a_malformed_grid_reports_every_problem_with_its_path() {
    let bad = json!({
        "name": "bad",
        "colour": "blue",
        "base": {
            "data": { "dataset": "digits", "train_size": 0 },
            "model": { "kind": "mlp", "hidden": [32, 0], "widht": 3 },
            "sampler": { "lr": -0.1, "momentum_decay": 1.0, "cycle_length": 10, "cycle_start_sampling": 5 },
            "eval": { "ece_bins": "none" }
        },
        "axes": [
            { "path": "temperature", "values": [1.0, -1.0, "hot"] },
            { "path": "sampler.lrr", "values": [0.1] },
            { "path": "seed", "values": [1, 2, 2] },
            { "path": "temperature", "values": [0.5] },
            { "path": "noise.name", "values": [] , "colour": 1 }
        ],
        "zip": [["seed", "nope"]],
        "exclude": [{ "tempertaure": 1.0 }]
    });
    let err = Grid::from_value(&bad).unwrap_err();
    let paths: Vec<&str> = err.problems.iter().map(|p| p.path.as_str()).collect();
    for expected in [
        "colour",
        "base.model.widht",
        "base.eval.ece_bins",
        "axes[0].values[2]",
        "axes[1].path",
        "axes[2].values[2]",
        "axes[3].path",
        "axes[4].values",
        "axes[4].colour",
        "zip[0][1]",
        "exclude[0].tempertaure",
    ] {
        assert!(paths.contains(&expected), "missing {expected} in:\n{err}");
    }
    let text = err.to_string();
    assert!(text.contains("did you mean `lr`?"), "{text}");
    assert!(text.contains("did you mean `temperature`?"), "{text}");
    assert!(text.starts_with(&format!("grid file has {} problems", err.problems.len())));
    for p in &err.problems {
        assert!(text.contains(&p.path), "display lists {}", p.path);
    }
}

#[test]
fn range_problems_point_at_the_value_that_causes_them() {
    let bad = json!({
        "name": "ranges",
        "base": {
            "data": { "dataset": "digits", "train_size": 0 },
            "model": { "kind": "mlp", "hidden": [32, 0] },
            "sampler": { "lr": -0.1, "momentum_decay": 1.0, "cycle_length": 10, "cycle_start_sampling": 5 },
            "eval": { "ece_bins": 0 }
        },
        "axes": [
            { "path": "temperature", "values": [1.0, -1.0, "hot"] },
            { "path": "sampler.batch_size", "values": [0, 10] }
        ]
    });
    let err = Grid::from_value(&bad).unwrap_err();
    let paths: Vec<&str> = err.problems.iter().map(|p| p.path.as_str()).collect();
    for expected in [
        "axes[0].values[1]",
        "axes[0].values[2]",
        "axes[1].values[0]",
        "base.data.train_size",
        "base.model.hidden[1]",
        "base.sampler.lr",
        "base.sampler.momentum_decay",
        "base.sampler.cycle_start_sampling",
        "base.eval.ece_bins",
    ] {
        assert!(paths.contains(&expected), "missing {expected} in:\n{err}");
    }
    // Problems shared by every cell are listed once.
    assert_eq!(paths.iter().filter(|p| **p == "base.sampler.lr").count(), 1, "{err}");
    // A problem in some cells only says which.
    let t = err.problems.iter().find(|p| p.path == "axes[1].values[0]").unwrap();
    assert!(t.message.contains("cells["), "{}", t.message);
}

#[test]
fn structural_problems() {
    let base = json!({ "data": { "dataset": "digits" }, "model": { "kind": "mlp", "hidden": [8] } });
    let cases = [
        (
            json!({ "name": "x", "base": base, "axes": [{ "path": "seed", "values": [1, 2] }, { "path": "temperature", "values": [1.0] }], "zip": [["seed", "temperature"]] }),
            "zip[0]",
        ),
        (
            json!({ "name": "x", "base": base, "axes": [{ "path": "seed", "values": [1] }], "exclude": [{ "seed": 1 }] }),
            "exclude",
        ),
        (
            json!({ "name": "x", "base": base, "axes": [{ "path": "seed", "values": [1] }], "exclude": [{ "seed": 7 }] }),
            "exclude[0].seed",
        ),
        (
            json!({ "name": "x", "base": base, "axes": [{ "path": "sampler", "values": [{}] }, { "path": "sampler.lr", "values": [0.1] }] }),
            "axes[1].path",
        ),
        (json!({ "name": "x", "base": { "model": { "kind": "mlp", "hidden": [8] } } }), "base.data"),
        (
            json!({ "name": "x", "base": base, "axes": [{ "path": "data.train_size", "values": [null, 100] }, { "path": "seed", "values": [1], "name": "data.train_size" }] }),
            "axes[1].name",
        ),
        (
            json!({ "name": "x", "base": base, "axes": [{ "path": "model.kind", "values": ["mlp", "cnn"] }] }),
            "base.model.channels",
        ),
        (
            json!({ "name": "x", "base": base, "axes": [{ "path": "sampler.epochs", "values": [60, 60.0] }] }),
            "axes[0].values[1]",
        ),
        (json!([1, 2]), "$"),
        (json!({ "base": base }), "name"),
    ];
    for (grid, path) in cases {
        let err = Grid::from_value(&grid).unwrap_err();
        assert!(err.problems.iter().any(|p| p.path == path), "expected a problem at {path:?}:\n{err}");
    }
    let err = Grid::from_json_str("{ \"name\": \"x\",\n  \"base\": }").unwrap_err();
    assert_eq!(err.problems[0].path, "line 2, column 11", "{err}");
}

/// Deletes, inserts or retypes one random spot of a JSON value.
fn mutate(v: &mut Value, rng: &mut ChaCha8Rng) {
    let junk = |rng: &mut ChaCha8Rng| -> Value {
        match rng.gen_range(0..8) {
            0 => Value::Null,
            1 => json!(rng.gen::<bool>()),
            2 => json!(rng.gen_range(-3i64..5)),
            3 => json!(rng.gen_range(-2.0..2.0)),
            4 => json!(["temperature", "seed", "mlp", "x.y", ""][rng.gen_range(0..5)]),
            5 => json!([]),
            6 => json!({}),
            _ => json!(u64::MAX),
        }
    };
    match v {
        Value::Object(map) if !map.is_empty() && rng.gen_bool(0.7) => {
            let keys: Vec<String> = map.keys().cloned().collect();
            let k = &keys[rng.gen_range(0..keys.len())];
            match rng.gen_range(0..6) {
                0 => {
                    map.remove(k);
                }
                1 => {
                    map.insert(format!("{k}_"), junk(rng));
                }
                2 => {
                    map.insert(k.clone(), junk(rng));
                }
                _ => mutate(map.get_mut(k).unwrap(), rng),
            }
        }
        Value::Array(items) if !items.is_empty() && rng.gen_bool(0.7) => {
            let i = rng.gen_range(0..items.len());
            match rng.gen_range(0..6) {
                0 => {
                    items.remove(i);
                }
                1 => items.insert(i, junk(rng)),
                2 => items[i] = junk(rng),
                _ => mutate(&mut items[i], rng),
            }
        }
        other => *other = junk(rng),
    }
}

#[test]
fn mutated_grids_never_panic() {
    let mut rng = ChaCha8Rng::seed_from_u64(20240607);
    let (mut ok, mut rejected) = (0, 0);
    for _ in 0..1000 {
        let mut v = example();
        for _ in 0..rng.gen_range(1..4) {
            mutate(&mut v, &mut rng);
        }
        match Grid::from_value(&v) {
            Ok(g) => {
                ok += 1;
                for c in &g.cells {
                    assert!(c.config.validate().is_empty());
                }
            }
            Err(e) => {
                rejected += 1;
                assert!(!e.problems.is_empty());
                // What the shape check accepts, serde accepts (the two descriptions agree).
                assert!(!e.problems.iter().any(|p| p.message.starts_with("invalid config")), "{e}");
                let _ = e.to_string();
            }
        }
        // Text-level damage too: truncation anywhere must be a clean error.
        let text = v.to_string();
        let cut = rng.gen_range(0..text.len());
        if let Some(prefix) = text.get(..cut) {
            let _ = Grid::from_json_str(prefix);
        }
    }
    assert!(ok > 50 && rejected > 300, "the mutations exercise both paths ({ok} ok, {rejected} rejected)");
}

#[test]
fn shards_partition_the_cells() {
    let grid = Grid::from_value(&example()).unwrap();
    for n in 1..=11 {
        let mut seen: Vec<&str> = Vec::new();
        for i in 0..n {
            let part = shard(&grid.cells, i, n);
            assert!(part.iter().all(|c| c.index % n == i));
            assert_eq!(part.len(), Shard::new(i, n).unwrap().select(&grid.cells).len());
            seen.extend(part.iter().map(|c| c.id.as_str()));
        }
        seen.sort_unstable();
        let mut all: Vec<&str> = grid.cells.iter().map(|c| c.id.as_str()).collect();
        all.sort_unstable();
        assert_eq!(seen, all, "{n} shards");
    }
}

#[test]
fn plugin_refs_name_their_source() {
    let grid = Grid::from_value(&example()).unwrap();
    let refs = grid.plugin_refs();
    assert_eq!(refs.len(), grid.len() * 4);
    let prior = refs.iter().find(|r| r.cell == 2 && r.kind == "prior").unwrap();
    assert_eq!(prior.name, "gaussian");
    assert_eq!(prior.params, json!({ "scale": 0.1 }));
    assert_eq!(prior.path, "cells[2].prior");
    assert_eq!(prior.source, "base.prior");
    assert_eq!(grid.source_of(2, "prior.params.scale"), "axes[1].values[1]");
    let noise = refs.iter().find(|r| r.cell == 0 && r.kind == "noise").unwrap();
    assert_eq!(noise.name, "minibatch");
}

#[test]
fn schema_is_draft_2020_12_and_covers_the_config() {
    let s = schema();
    assert_eq!(s["$schema"], "https://json-schema.org/draft/2020-12/schema");
    let sampler = &s["$defs"]["cellConfig"]["properties"]["sampler"]["properties"];
    assert_eq!(sampler["lr"]["exclusiveMinimum"], 0.0);
    assert_eq!(sampler["momentum_decay"]["exclusiveMaximum"], 1.0);
    assert_eq!(s["$defs"]["cellConfig"]["required"], json!(["data", "model"]));
    assert_eq!(s["$defs"]["partialCellConfig"]["required"], json!([]));
    // Every key of a serialized config is in the schema, and nothing else.
    let grid = Grid::from_value(&example()).unwrap();
    let config = serde_json::to_value(&grid.cells[0].config).unwrap();
    let props = &s["$defs"]["cellConfig"]["properties"];
    for (k, v) in config.as_object().unwrap() {
        assert!(props.get(k).is_some(), "{k} missing from the schema");
        if let (Some(obj), Some(p)) = (v.as_object(), props[k]["properties"].as_object()) {
            for k2 in obj.keys() {
                assert!(p.contains_key(k2), "{k}.{k2} missing from the schema");
            }
        }
    }
}

/// Range problems are reported in the same pass as unknown keys and wrong types elsewhere.
#[test]
fn range_problems_are_not_hidden_behind_unknown_keys() {
    let bad = json!({
        "name": "mixed",
        "base": {
            "data": { "dataset": "nope", "train_size": 100 },
            "model": { "kind": "mlp", "hidden": [32], "widht": 3 },
            "sampler": { "lr": -1.0, "epochs": "many" }
        }
    });
    let err = Grid::from_value(&bad).unwrap_err();
    let paths: Vec<&str> = err.problems.iter().map(|p| p.path.as_str()).collect();
    for expected in ["base.model.widht", "base.sampler.epochs", "base.data.dataset", "base.sampler.lr"] {
        assert!(paths.contains(&expected), "missing {expected} in:\n{err}");
    }
}
