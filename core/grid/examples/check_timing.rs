//! Time `Grid::check_str` on a grid of N temperatures x 1 (default N = 100000):
//! `cargo run -p ablate-grid --example check_timing -- 1000000`.
// Tests may unwrap (a panic is the failure report) and be long (one scenario per test).
#![allow(clippy::unwrap_used, clippy::too_many_lines)]

fn main() {
    let n: usize = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(100_000);
    let values: Vec<f64> = (0..n).map(|i| i as f64 / n as f64).collect();
    let grid = serde_json::json!({
        "name": "timing",
        "base": {"data": {"dataset": "digits"}, "model": {"kind": "mlp", "hidden": [50]}, "sampler": {"epochs": 20}},
        "axes": [{"path": "temperature", "values": values}]
    });
    let text = grid.to_string();
    let t = std::time::Instant::now();
    let checked = ablate_grid::Grid::check_str(&text);
    let cells = checked.grid.map_or(0, |g| g.cells.len());
    eprintln!("{cells} cells, {} problems, {:.2} s", checked.problems.len(), t.elapsed().as_secs_f64());
}
