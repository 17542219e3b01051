//! The `reference` key (reference cells) and the `eval` keys it relies on
//! (`store_predictions`, `ood`).
// Tests may unwrap (a panic is the failure report) and be long (one scenario per test).
#![allow(clippy::unwrap_used, clippy::too_many_lines)]

use ablate_grid::Grid;
use serde_json::{json, Value};

fn grid(reference: Value, store: bool) -> Value {
    json!({
        "name": "ref",
        "base": {"data": {"dataset": "digits"}, "model": {"kind": "mlp", "hidden": [8]},
                 "sampler": {"epochs": 3, "cycle_length": 1, "cycle_start_sampling": 2},
                 "eval": {"store_predictions": store}},
        "axes": [
            {"path": "integrator", "name": "integrator",
             "values": [{"name": "sym-euler"}, {"name": "hmc"}], "labels": ["sgmcmc", "hmc"]},
            {"path": "temperature", "values": [0.1, 1.0]},
            {"path": "seed", "values": [1, 2]}
        ],
        "reference": reference
    })
}

fn problems(v: &Value) -> Vec<(String, String)> {
    Grid::check_value(v).problems.into_iter().map(|p| (p.path, p.message)).collect()
}

#[test]
fn reference_names_the_matching_cells_by_label_or_value() {
    for r in
        [json!({"integrator": "hmc", "temperature": 1}), json!({"integrator": {"name": "hmc"}, "temperature": 1.0})]
    {
        let g = Grid::check_value(&grid(r.clone(), true)).into_result().unwrap();
        // Cells in nested-loop order: integrator outermost, seed fastest; hmc at T = 1 is 6 and 7.
        assert_eq!(g.reference, vec![6, 7], "{r}");
        for &i in &g.reference {
            assert_eq!(g.cells[i].config.integrator.name, "hmc");
            assert_eq!(g.cells[i].config.temperature, 1.0);
        }
    }
}

#[test]
fn grid_without_reference_has_none_and_ids_do_not_depend_on_the_key() {
    let mut plain = grid(json!({"integrator": "hmc"}), true);
    let with = Grid::check_value(&plain).into_result().unwrap();
    plain.as_object_mut().unwrap().remove("reference");
    let without = Grid::check_value(&plain).into_result().unwrap();
    assert!(without.reference.is_empty());
    let ids = |g: &Grid| g.cells.iter().map(|c| c.id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(&with), ids(&without));
}

#[test]
fn reference_problems_name_their_json_path() {
    let p = problems(&grid(json!({"integrator": "hmc"}), false));
    assert!(p.iter().any(|(at, m)| at == "reference" && m.contains("does not store")), "{p:?}");
    let p = problems(&grid(json!({"temperature": 0.5}), true));
    assert!(p.iter().any(|(at, m)| at == "reference.temperature" && m.contains("names no cell")), "{p:?}");
    let p = problems(&grid(json!({"integrater": "hmc"}), true));
    assert!(p.iter().any(|(at, m)| at == "reference.integrater" && m.contains("no axis")), "{p:?}");
    let p = problems(&grid(json!({}), true));
    assert!(p.iter().any(|(at, _)| at == "reference"), "{p:?}");
    let p = problems(&grid(json!([1]), true));
    assert!(p.iter().any(|(at, _)| at == "reference"), "{p:?}");
}

#[test]
fn reference_that_takes_every_cell_is_refused() {
    let mut g = grid(json!({"seed": 1}), true);
    g["axes"].as_array_mut().unwrap().pop();
    g["base"]["seed"] = 1.into();
    g["axes"].as_array_mut().unwrap().push(json!({"path": "seed", "values": [1]}));
    let p = problems(&g);
    assert!(p.iter().any(|(at, m)| at == "reference" && m.contains("every cell")), "{p:?}");
}

#[test]
fn ood_dataset_must_differ_and_share_the_image_shape() {
    let with_ood = |dataset: &str, ood: &str| {
        let mut g = grid(Value::Null, true);
        g.as_object_mut().unwrap().remove("reference");
        g["base"]["data"]["dataset"] = dataset.into();
        g["base"]["eval"]["ood"] = ood.into();
        problems(&g)
    };
    let p = with_ood("digits", "mnist");
    assert!(p.iter().any(|(at, m)| at == "base.eval.ood" && m.contains("(1, 28, 28)")), "{p:?}");
    let p = with_ood("digits", "digits");
    assert!(p.iter().any(|(at, m)| at == "base.eval.ood" && m.contains("is the training dataset")), "{p:?}");
    let p = with_ood("digits", "svhn");
    assert!(p.iter().any(|(at, m)| at == "base.eval.ood" && m.contains("unknown dataset")), "{p:?}");
    // mnist -> fashion-mnist has no eval.ood problem (the cache check is the engine's).
    let p = with_ood("mnist", "fashion-mnist");
    assert!(!p.iter().any(|(at, _)| at.contains("ood")), "{p:?}");
}
