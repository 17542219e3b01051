//! Issue 15 (grid-file half): names, bounds, cross-field rules, base values under axes,
//! duplicate keys, linear checks and limits, problems found together with plugin references.
// Tests may unwrap (a panic is the failure report) and be long (one scenario per test).
#![allow(clippy::unwrap_used, clippy::too_many_lines)]

use std::time::Instant;

use ablate_grid::{check_run_name, Grid, MAX_CELLS};
use serde_json::{json, Value};

fn grid(base_extra: Value, axes: Value) -> Value {
    let mut base = json!({"data": {"dataset": "digits"}, "model": {"kind": "mlp", "hidden": [8]}});
    if let (Value::Object(b), Value::Object(extra)) = (&mut base, base_extra) {
        b.extend(extra);
    }
    json!({"name": "g", "base": base, "axes": axes})
}

fn paths(v: &Value) -> Vec<String> {
    match Grid::from_value(v) {
        Ok(_) => Vec::new(),
        Err(e) => e.problems.into_iter().map(|p| p.path).collect(),
    }
}

#[test]
fn run_names_are_one_safe_path_component() {
    for bad in ["../../escaped-grid", "/abs/olute", ".", "..", "a/b", "a\\b", "nul\0", ".hidden", "-x", "sp ace", ""] {
        assert!(check_run_name(bad).is_err(), "{bad:?} accepted");
        let mut g = grid(json!({}), json!([]));
        g["name"] = json!(bad);
        assert_eq!(paths(&g), ["name"], "{bad:?}");
    }
    for good in ["quickstart", "cold.v2_mlp-1", "0x"] {
        assert_eq!(check_run_name(good), Ok(()));
    }
    assert!(check_run_name(&"x".repeat(101)).is_err());
}

#[test]
fn numeric_settings_have_upper_bounds() {
    for (extra, at) in [
        (json!({"model": {"kind": "mlp", "hidden": [100_000_000]}}), "base.model.hidden[0]"),
        (json!({"model": {"kind": "mlp", "hidden": vec![8; 65]}}), "base.model.hidden"),
        (json!({"model": {"kind": "cnn", "channels": [100_000]}}), "base.model.channels[0]"),
        (json!({"model": {"kind": "resnet20", "width": 1000}}), "base.model.width"),
        (json!({"model": {"kind": "mlp", "hidden": [65_536, 65_536]}}), "base.model"),
        (json!({"eval": {"ece_bins": 1_000_000_000_000u64}}), "base.eval.ece_bins"),
        (json!({"eval": {"prior_samples": 1_000_000_000u64}}), "base.eval.prior_samples"),
        (json!({"eval": {"batch_size": 1_000_000_000u64}}), "base.eval.batch_size"),
        (json!({"sampler": {"epochs": 1u64 << 63}}), "base.sampler.epochs"),
        (json!({"sampler": {"batch_size": 1_000_000_000u64}}), "base.sampler.batch_size"),
        (json!({"sampler": {"precond_batches": 1_000_000u64}}), "base.sampler.precond_batches"),
        (json!({"sampler": {"lr": 1e300}}), "base.sampler.lr"),
        (json!({"temperature": 1e300}), "base.temperature"),
        (json!({"data": {"dataset": "mnist", "train_size": 100_000_000u64}}), "base.data.train_size"),
    ] {
        let got = paths(&grid(extra.clone(), json!([])));
        assert!(got.iter().any(|p| p == at), "{extra}: expected {at}, got {got:?}");
    }
    // The bounds are in the schema.
    let s = ablate_grid::schema();
    let sampler = &s["$defs"]["cellConfig"]["properties"]["sampler"]["properties"];
    assert_eq!(sampler["epochs"]["maximum"], json!(1_000_000));
    assert_eq!(s["$defs"]["cellConfig"]["properties"]["eval"]["properties"]["ece_bins"]["maximum"], json!(10_000));
}

#[test]
fn cross_field_rules() {
    let cases = [
        // epochs 3, cycle 2, start 3: the cycle ends are epochs 2 and 4, neither in [3, 3].
        (json!({"sampler": {"epochs": 3, "cycle_length": 2, "cycle_start_sampling": 3}}), "base.sampler.epochs"),
        (
            json!({"sampler": {"epochs": 1_000_000, "cycle_length": 1, "cycle_start_sampling": 1}}),
            "base.sampler.epochs",
        ),
        (json!({"data": {"dataset": "digits", "train_size": 5000}}), "base.data.train_size"),
        (json!({"data": {"dataset": "fashion-mnist", "test_size": 10001}}), "base.data.test_size"),
        (json!({"sampler": {"batch_size": 5000}}), "base.sampler.batch_size"),
        (
            json!({"data": {"dataset": "digits", "train_size": 300}, "sampler": {"batch_size": 301}}),
            "base.sampler.batch_size",
        ),
        (json!({"model": {"kind": "cnn", "channels": [4, 4, 4, 4]}}), "base.model.channels"),
        (
            json!({"data": {"dataset": "mnist"}, "model": {"kind": "cnn", "channels": [4, 4, 4, 4, 4]}}),
            "base.model.channels",
        ),
    ];
    for (extra, at) in cases {
        let got = paths(&grid(extra.clone(), json!([])));
        assert_eq!(got, [at], "{extra}");
    }
    for fine in [
        json!({"sampler": {"epochs": 4, "cycle_length": 2, "cycle_start_sampling": 3}}),
        json!({"model": {"kind": "cnn", "channels": [4, 4, 4]}}),
        json!({"data": {"dataset": "mnist"}, "model": {"kind": "cnn", "channels": [4, 4, 4, 4]}}),
        json!({"sampler": {"batch_size": 1297}}),
        json!({"data": {"dataset": "digits", "path": "my-digits.csv", "train_size": 5000}, "sampler": {"batch_size": 5000}}),
    ] {
        assert_eq!(paths(&grid(fine.clone(), json!([]))), Vec::<String>::new(), "{fine}");
    }
    // Through an axis, the problem points at the axis value.
    let g = grid(json!({}), json!([{"path": "sampler.batch_size", "values": [100, 2000]}]));
    assert_eq!(paths(&g), ["axes[0].values[1]"]);
}

#[test]
fn expected_members_counts_cycle_ends() {
    use ablate_grid::config::{expected_members, SamplerConfig};
    let m = |epochs, cycle_length, cycle_start_sampling| {
        expected_members(&SamplerConfig { epochs, cycle_length, cycle_start_sampling, ..Default::default() })
    };
    assert_eq!(m(30, 5, 15), 4);
    assert_eq!(m(3, 2, 3), 0);
    assert_eq!(m(4, 2, 3), 1);
    assert_eq!(m(60, 5, 15), 10);
    assert_eq!(m(10, 1, 1), 10);
}

/// An invalid value in `base` is reported even where every cell overrides it with an axis.
#[test]
fn base_values_overridden_by_axes_are_still_checked() {
    let g = grid(
        json!({"sampler": {"lr": -1, "epochs": 0}, "temperature": -2}),
        json!([{"path": "sampler.lr", "values": [0.1]}, {"path": "temperature", "values": [1.0, 0.5]}]),
    );
    let mut got = paths(&g);
    got.sort();
    assert_eq!(got, ["base.sampler.epochs", "base.sampler.lr", "base.temperature"]);
}

#[test]
fn duplicate_keys_are_refused_with_line_and_column() {
    let text = "{\"name\": \"quickstart\",\n \"base\": {\"data\": {\"dataset\": \"digits\"}, \"model\": {\"kind\": \"mlp\", \"hidden\": [8]}},\n \"axes\": [{\"path\": \"seed\", \"values\": [1, 2, 3]}],\n \"axes\": []}";
    let err = Grid::from_json_str(text).unwrap_err();
    assert_eq!(err.problems.len(), 1, "{err}");
    assert_eq!(err.problems[0].path, "axes");
    assert!(err.problems[0].message.contains("line 4, column 2 (first at line 3, column 2)"), "{err}");
    let nested = "{\"name\": \"x\", \"base\": {\"data\": {\"dataset\": \"digits\", \"dataset\": \"mnist\"}, \"model\": {\"kind\": \"mlp\", \"hidden\": [8]}}}";
    let err = Grid::from_json_str(nested).unwrap_err();
    assert_eq!(err.problems[0].path, "base.data.dataset", "{err}");
}

/// Structural problems and the plugin references come back together, so that a caller reports
/// plugin problems in the same pass.
#[test]
fn plugin_references_survive_structural_problems() {
    let g = json!({"name": "x", "base": {"data": {"dataset": "digits"}, "model": {"kind": "mlp", "hidden": [8]},
        "prior": {"name": "no-such-prior"}, "sampler": {"bogus": 1}}, "axes": [{"path": "nope", "values": [1]}]});
    let checked = Grid::check_value(&g);
    assert!(checked.problems.iter().any(|p| p.path == "axes[0].path"), "{:?}", checked.problems);
    let prior: Vec<_> = checked.plugins.iter().filter(|u| u.kind == "prior").collect();
    assert_eq!(prior.len(), 1);
    assert_eq!((prior[0].name.as_str(), prior[0].source.as_str()), ("no-such-prior", "base.prior"));

    // With cells, one reference per distinct plugin setting, from the cells.
    let g = grid(
        json!({"prior": {"name": "gaussian"}}),
        json!([{"path": "prior.params.scale", "values": [1.0, 2.0]}, {"path": "seed", "values": [1, 2, 3]}]),
    );
    let checked = Grid::check_value(&g);
    assert!(checked.problems.is_empty());
    let priors: Vec<&str> = checked.plugins.iter().filter(|u| u.kind == "prior").map(|u| u.source.as_str()).collect();
    // The reference itself sits in `base`; the CLI adds the axis that sets each parameter.
    assert_eq!(priors, ["base.prior", "base.prior"]);
    let scales: Vec<&Value> =
        checked.plugins.iter().filter(|u| u.kind == "prior").map(|u| &u.params["scale"]).collect();
    assert_eq!(scales, [&json!(1.0), &json!(2.0)]);
    assert_eq!(checked.plugins.len(), 5);
}

#[test]
fn limits_are_enforced_before_expansion_and_checks_are_linear() {
    // 1,000,001 seeds: refused at once (this used to run for minutes: a quadratic duplicate scan).
    let g = grid(json!({}), json!([{"path": "seed", "values": (0..=MAX_CELLS as u64).collect::<Vec<_>>()}]));
    let t = Instant::now();
    let err = Grid::from_value(&g).unwrap_err();
    assert!(
        err.problems.iter().any(|p| p.path == "axes[0].values" && p.message.contains("at most 1000000 cells")),
        "{err}"
    );
    assert!(t.elapsed().as_secs_f64() < 20.0, "{:?}", t.elapsed());

    // 1000 x 1000 axes: over the limit by the product, refused before expansion.
    let v: Vec<u64> = (0..1001).collect();
    let g = grid(json!({}), json!([{"path": "seed", "values": v}, {"path": "data.subset_seed", "values": v}]));
    let t = Instant::now();
    assert!(Grid::from_value(&g).is_err());
    assert!(t.elapsed().as_secs_f64() < 5.0, "{:?}", t.elapsed());

    // Many axes with one value each: the collision checks are hash look-ups.
    let axes: Vec<Value> = (0..20_000).map(|i| json!({"path": format!("prior.params.p{i}"), "values": [1]})).collect();
    let t = Instant::now();
    let checked = Grid::check_value(&grid(json!({"prior": {"name": "gaussian"}}), Value::Array(axes)));
    assert!(checked.problems.is_empty(), "{:?}", &checked.problems[..1]);
    assert!(t.elapsed().as_secs_f64() < 20.0, "{:?}", t.elapsed());

    // Too much text or too many exclude entries.
    let big = format!("{{\"name\": \"x\"{}}}", " ".repeat(ablate_grid::MAX_GRID_BYTES));
    let err = Grid::from_json_str(&big).unwrap_err();
    assert!(err.problems[0].message.contains("limited to"), "{err}");
    let mut g = grid(json!({}), json!([{"path": "seed", "values": [1, 2]}]));
    g["exclude"] = Value::Array((0..=ablate_grid::MAX_EXCLUDE).map(|_| json!({"seed": 1})).collect());
    assert_eq!(paths(&g), ["exclude"]);
}

/// Every cell's labels hold its resolved `temperature` and `seed`: an axis shown under one of
/// those names (varying something else) would vanish from the labels, and its cells would be
/// averaged as seeds of one temperature. Refused at the axis's name; the axes of those very
/// paths may keep the name.
#[test]
fn axis_names_temperature_and_seed_are_reserved_for_their_own_paths() {
    for reserved in ["temperature", "seed"] {
        let g = grid(json!({}), json!([{"path": "sampler.lr", "values": [0.1, 0.05], "name": reserved}]));
        assert_eq!(paths(&g), ["axes[0].name"], "{reserved}");
        let e = Grid::from_value(&g).unwrap_err();
        assert!(e.problems[0].message.contains("reserved") && e.problems[0].hint.contains("\"lr\""), "{e}");
        let own = grid(json!({}), json!([{"path": reserved, "values": [1, 2], "name": reserved}]));
        assert_eq!(paths(&own), Vec::<String>::new(), "{reserved}");
    }
}

/// A grid file saved with a UTF-8 byte order mark reads like the same file without it.
#[test]
fn a_byte_order_mark_is_ignored() {
    let g = grid(json!({}), json!([{"path": "temperature", "values": [0.1, 1.0]}]));
    let text = format!("\u{feff}{g}");
    let checked = Grid::check_str(&text);
    assert!(checked.problems.is_empty(), "{:?}", checked.problems);
    assert_eq!(checked.grid.unwrap().cells.len(), 2);
}
