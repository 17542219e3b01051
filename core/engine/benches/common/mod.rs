//! What the engine's benchmarks share: where their data is, and the K-chain cells they run.

use std::path::PathBuf;

use ablate_grid::config::CellConfig;

/// A dataset folder: `$var` if set, else the `ablate data fetch` cache entry; `None` if absent.
pub fn data_dir(var: &str, dataset: &str) -> Option<PathBuf> {
    std::env::var(var)
        .map(PathBuf::from)
        .ok()
        .or_else(|| ablate_data::cache_root().ok().map(|c| c.join("data").join(dataset)))
        .filter(|p| p.is_dir())
}

/// K cells of `base` at temperatures spread over 1e-3..1 (the usual grid; T = 1 for K = 1),
/// seeds 1..=K: one batch of chains.
pub fn chains(base: &CellConfig, k: usize) -> Vec<CellConfig> {
    (0..k)
        .map(|j| {
            let mut c = base.clone();
            c.temperature = if k == 1 { 1.0 } else { 10f64.powf(-3.0 * j as f64 / (k - 1) as f64) };
            c.seed = 1 + j as u64;
            c
        })
        .collect()
}
