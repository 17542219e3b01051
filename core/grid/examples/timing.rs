fn main() {
    let n: usize = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(10000);
    let vals: Vec<f64> = (0..n).map(|i| i as f64 / n as f64).collect();
    let v = serde_json::json!({"name": "t", "base": {"data": {"dataset": "digits"}, "model": {"kind": "mlp", "hidden": [50]}, "sampler": {"epochs": 20}},
        "axes": [{"path": "temperature", "values": vals}]});
    let text = v.to_string();
    let t = std::time::Instant::now();
    let c = ablate_grid::Grid::check_str(&text);
    eprintln!("{} cells, {} problems: {:?}", c.grid.map_or(0, |g| g.cells.len()), c.problems.len(), t.elapsed());
}

#[allow(dead_code)]
fn parts() {}
