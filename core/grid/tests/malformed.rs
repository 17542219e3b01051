//! A seeded generator of malformed and hostile grid files (text-level damage and hostile
//! values), run in `cargo test` for a bounded time: no panic, no abort (an abort would end this
//! test process), none slower than 20 s, and every problem located by a JSON path or a
//! line/column. `ABLATE_FUZZ_GRIDS=N` runs N grids instead of 1000 (a longer soak).
// Tests may unwrap (a panic is the failure report) and be long (one scenario per test).
#![allow(clippy::unwrap_used, clippy::too_many_lines)]

use std::time::{Duration, Instant};

use ablate_grid::{Grid, Problem};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};

fn seeds() -> Vec<Value> {
    vec![
        json!({
            "name": "quick",
            "description": "temperature x seed",
            "base": {
                "data": {"dataset": "digits", "train_size": 500, "test_size": 200},
                "model": {"kind": "mlp", "hidden": [32, 16]},
                "sampler": {"epochs": 20, "batch_size": 100, "cycle_length": 5, "cycle_start_sampling": 10},
                "prior": {"name": "gaussian", "params": {"scale": 1.0}},
                "eval": {"ece_bins": 10, "prior_samples": 0}
            },
            "axes": [
                {"path": "temperature", "values": [1.0, 0.1, 0.01]},
                {"path": "prior.params.scale", "name": "scale", "values": [1.0, 0.1], "labels": ["wide", "narrow"]},
                {"path": "seed", "values": [1, 2]},
                {"path": "sampler.lr", "name": "lr", "values": [0.1, 0.05]}
            ],
            "zip": [["seed", "lr"]],
            "exclude": [{"temperature": 0.01, "scale": "narrow"}]
        }),
        json!({
            "name": "cnn",
            "base": {
                "data": {"dataset": "mnist", "train_size": 1000},
                "model": {"kind": "cnn", "channels": [8, 16]},
                "likelihood": {"name": "frn"},
                "noise": {"name": "pretend-batch", "params": {"batch_size": 50}}
            },
            "axes": [{"path": "model.channels", "values": [[4], [8, 8]]}, {"path": "temperature", "values": [0, 1]}]
        }),
    ]
}

/// Hostile values: huge, negative, fractional, wrong types, path tricks.
fn hostile(rng: &mut ChaCha8Rng) -> Value {
    let choices = [
        json!(1e12),
        json!(1_000_000_000u64),
        json!(u64::MAX),
        json!(9_223_372_036_854_775_808u64),
        json!(-1),
        json!(0),
        json!(0.5),
        json!(1e308),
        json!("../../escaped"),
        json!("/abs"),
        json!("."),
        json!(".."),
        json!("a\u{0}b"),
        json!(""),
        json!(null),
        json!([]),
        json!([100_000_000]),
        json!({}),
        json!(true),
        json!("x".repeat(300)),
    ];
    choices[rng.gen_range(0..choices.len())].clone()
}

/// Sets a random leaf (or key) of `v` to a hostile value, or adds a key.
fn mutate_value(v: &mut Value, rng: &mut ChaCha8Rng) {
    match v {
        Value::Object(map) if !map.is_empty() && rng.gen_bool(0.8) => {
            let keys: Vec<String> = map.keys().cloned().collect();
            let k = keys[rng.gen_range(0..keys.len())].clone();
            match rng.gen_range(0..5) {
                0 => {
                    map.insert(k, hostile(rng));
                }
                1 => {
                    map.remove(&k);
                }
                _ => mutate_value(map.get_mut(&k).unwrap(), rng),
            }
        }
        Value::Array(items) if !items.is_empty() && rng.gen_bool(0.8) => {
            let i = rng.gen_range(0..items.len());
            if rng.gen_bool(0.3) {
                items.push(items[i].clone());
            } else {
                mutate_value(&mut items[i], rng);
            }
        }
        other => *other = hostile(rng),
    }
}

const TOKENS: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    "\"",
    ",",
    ":",
    "1e309",
    "-0",
    "1e12",
    "18446744073709551616",
    "\\u0000",
    "\"axes\": [],",
    "\"name\": \"..\",",
    "null",
    "\u{feff}",
    "\u{0}",
    "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[",
    "\n",
];

/// Damages the text: deletes, duplicates or inserts a span, or a token.
fn mutate_text(text: &mut String, rng: &mut ChaCha8Rng) {
    let len = text.len();
    let at = |rng: &mut ChaCha8Rng| {
        let mut i = rng.gen_range(0..=len);
        while !text.is_char_boundary(i) {
            i -= 1;
        }
        i
    };
    let (a, b) = {
        let (x, y) = (at(rng), at(rng));
        (x.min(y), x.max(y))
    };
    match rng.gen_range(0..5) {
        0 => text.replace_range(a..b.min(a + 40), ""),
        1 => {
            let span = text[a..b.min(a + 200)].to_owned();
            text.insert_str(b, &span);
        }
        2 => {
            let deep = "[".repeat(rng.gen_range(100..3000));
            text.insert_str(a, &deep);
        }
        _ => text.insert_str(a, TOKENS[rng.gen_range(0..TOKENS.len())]),
    }
}

fn located(p: &Problem) -> bool {
    !p.path.is_empty() || p.message.starts_with("... and ")
}

#[test]
fn generated_malformed_grids_fail_cleanly_and_quickly() {
    let n: usize = std::env::var("ABLATE_FUZZ_GRIDS").ok().and_then(|s| s.parse().ok()).unwrap_or(1000);
    let mut rng = ChaCha8Rng::seed_from_u64(15);
    let seeds = seeds();
    let (mut accepted, mut rejected, mut slowest) = (0usize, 0usize, Duration::ZERO);
    for i in 0..n {
        let mut v = seeds[i % seeds.len()].clone();
        for _ in 0..rng.gen_range(0..3) {
            mutate_value(&mut v, &mut rng);
        }
        let mut text = if rng.gen_bool(0.5) { serde_json::to_string_pretty(&v).unwrap() } else { v.to_string() };
        for _ in 0..rng.gen_range(0..3) {
            mutate_text(&mut text, &mut rng);
        }
        let t = Instant::now();
        let outcome = std::panic::catch_unwind(|| Grid::check_str(&text));
        let took = t.elapsed();
        slowest = slowest.max(took);
        let checked = outcome.unwrap_or_else(|_| panic!("grid {i} panicked the checker:\n{text}"));
        assert!(took < Duration::from_secs(20), "grid {i} took {took:?}:\n{text}");
        if checked.problems.is_empty() {
            accepted += 1;
            assert!(checked.grid.is_some(), "grid {i}: no problem but no grid");
        } else {
            rejected += 1;
            for p in &checked.problems {
                assert!(located(p), "grid {i}: a problem without a JSON path or line/column: {p}\n{text}");
            }
            let _ = checked.into_result().unwrap_err().to_string();
        }
    }
    eprintln!("{n} generated grids: {accepted} accepted, {rejected} rejected, slowest {slowest:?}");
    assert_eq!(accepted + rejected, n);
    assert!(rejected > n / 2, "the generator must mostly produce malformed grids ({rejected} of {n})");
}
