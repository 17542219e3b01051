//! The run planner: which cells of a grid share a worker as batched chains, how many chains a
//! batch holds, and which batches go to which shard (Slurm array task) or GPU.
//!
//! One policy for every runner, so that the shards of a split run, a rerun and `ablate slurm`
//! (which shows the split when it writes the script) all compute the same plan independently:
//!
//! 1. **Buckets.** Cells that differ only in temperature and seed ([`crate::batch_key`]) and
//!    whose plugins allow it ([`crate::batch_problem`]) form a bucket; on the CPU only MLP cells
//!    are bucketed unless `conv`. Every other cell runs alone.
//! 2. **Batch size.** Buckets are cut into balanced batches of at most `cap` chains, where `cap`
//!    is the largest size up to `max_chains` that still yields `min_batches` batches (when the
//!    grid has that many cells): `ablate slurm` asks for one per array task (and per worker in
//!    it), `ablate run` for one per worker when chains are compute-bound or on CUDA.
//! 3. **Cost model.** [`compute_bound`] says whether one chain's step already keeps a core busy
//!    (an MNIST-sized MLP) or is dominated by per-operation overhead (a digits MLP). Dispatch-bound
//!    chains gain most from one large batch; compute-bound chains run faster as one batch per
//!    core, one thread each (measured on 2 cores: 18 MNIST chains as one batch on 2 threads took
//!    1.5x the time of two single-threaded workers). The caller turns this into `min_batches`.
//! 4. **Dealing.** [`deal`] gives each batch to the shard with the fewest chains so far, largest
//!    batches first (ties to the lower index): deterministic and balanced.
//!
//! The plan depends on the grid and the options only; a batch's floating-point results depend
//! on its composition (the chains share GEMMs), so two runs compare byte for byte when they use
//! the same plan (`ablate run --batch-chains K` reproduces a plan whose cap was K).

use ablate_grid::config::ModelConfig;
use ablate_grid::{Cell, CellConfig};
use ablate_plugin_host::Registry;

/// What the planner is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlanOptions {
    /// Most chains per batch (`--batch-chains`); 1 runs every cell alone.
    pub max_chains: usize,
    /// Bucket convolutional models too (the default on CUDA).
    pub conv: bool,
    /// Fewest batches wanted (shards x workers); buckets are cut smaller until there are at
    /// least this many, or every cell runs alone.
    pub min_batches: usize,
}

/// The batches of a grid (indices into its cells, each batch in grid order, batches ordered by
/// their first cell).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub batches: Vec<Vec<usize>>,
    /// The batch-size cap used (`--batch-chains` reproduces this plan).
    pub cap: usize,
    /// Why cells were not batched, for the run's first line (empty when all could be).
    pub note: String,
}

impl Plan {
    /// The batches of shard `index` of `count` ([`deal`]).
    pub fn shard(&self, index: usize, count: usize) -> Vec<&Vec<usize>> {
        let owner = deal(&self.sizes(), count);
        self.batches.iter().zip(owner).filter(|&(_, o)| o == index).map(|(b, _)| b).collect()
    }

    /// Chains per batch.
    pub fn sizes(&self) -> Vec<usize> {
        self.batches.iter().map(Vec::len).collect()
    }
}

/// Per-step work of one chain above which it is compute-bound (parameters x minibatch rows):
/// the digits MLP of the quickstart is 3760 x 50 = 0.19 M (dispatch-bound: one batch of 17
/// chains ran 2.4-5.3x faster than single chains), the MNIST MLP 784-100-100-10 is
/// 89610 x 100 = 9.0 M (compute-bound: batching gained 1.0-2.0x on 2 threads, less than two
/// processes).
pub const COMPUTE_BOUND_WORK: f64 = 1.0e6;

/// Does one MLP chain of `cfg` keep a CPU core busy on its own ([`COMPUTE_BOUND_WORK`])?
/// Convolutional networks are not batched on the CPU unless asked (`--batch-conv`), and then
/// as asked: the model answers `false` for them.
pub fn compute_bound(cfg: &CellConfig) -> bool {
    match &cfg.model {
        ModelConfig::Mlp { hidden, .. } => {
            let inputs: usize = match cfg.data.dataset.as_str() {
                "digits" => 64,
                "cifar10" => 3072,
                _ => 784,
            };
            let mut params = 0usize;
            let mut width = inputs;
            for &h in hidden.iter().chain(std::iter::once(&10)) {
                params = params.saturating_add(width.saturating_add(1).saturating_mul(h));
                width = h;
            }
            params as f64 * cfg.sampler.batch_size as f64 >= COMPUTE_BOUND_WORK
        }
        _ => false,
    }
}

/// Forms the batches of `cells` (see the module docs).
pub fn plan(cells: &[Cell], opts: &PlanOptions, registry: &Registry) -> Plan {
    let (buckets, refused) = buckets(cells, opts, registry);
    let sizes: Vec<usize> = buckets.iter().map(Vec::len).collect();
    let cap = cap_for(&sizes, opts.max_chains, opts.min_batches);
    let mut batches: Vec<Vec<usize>> = buckets.iter().flat_map(|b| balanced_chunks(b, cap)).collect();
    batches.sort_by_key(|b| b[0]);
    // The largest batch as the cap: the same batches, and the smallest K that reproduces them.
    let cap = batches.iter().map(Vec::len).max().unwrap_or(cap).min(cap);
    let mut note = String::new();
    if let Some(first) = refused.first() {
        tracing::info!(reasons = ?refused, "cells not batched");
        note.push_str(&format!(" [not batched: {first}]"));
    }
    Plan { batches, cap, note }
}

/// Cells that may share a batch, grouped (each cell alone when it may not), and the reasons
/// buckets were refused.
fn buckets(cells: &[Cell], opts: &PlanOptions, registry: &Registry) -> (Vec<Vec<usize>>, Vec<String>) {
    let mut keyed: Vec<(Option<String>, Vec<usize>)> = Vec::new();
    // Batch keys of convolutional cells kept alone (CPU without --batch-conv): the run says so
    // when two of them could have shared a batch.
    let mut conv_alone: std::collections::HashSet<String> = std::collections::HashSet::new();
    let mut conv_could_batch = false;
    for (i, cell) in cells.iter().enumerate() {
        let mlp = matches!(cell.config.model, ModelConfig::Mlp { .. });
        if opts.max_chains > 1 && !mlp && !opts.conv {
            if let Some(k) = crate::batch_key(&cell.config) {
                conv_could_batch |= !conv_alone.insert(k);
            }
        }
        let key = if opts.max_chains > 1 && (mlp || opts.conv) { crate::batch_key(&cell.config) } else { None };
        match keyed.iter_mut().find(|(k, _)| key.is_some() && *k == key) {
            Some((_, members)) => members.push(i),
            None => keyed.push((key, vec![i])),
        }
    }
    let mut out = Vec::new();
    let mut refused = Vec::new();
    if conv_could_batch {
        refused.push(
            "convolutional models run alone on the CPU (grouped convolutions were slower there than separate \
             runs); --batch-conv batches them"
                .to_owned(),
        );
    }
    for (_, members) in keyed {
        let configs: Vec<CellConfig> = members.iter().map(|&i| cells[i].config.clone()).collect();
        match (members.len() > 1).then(|| crate::batch_problem(&configs, registry)).flatten() {
            Some(problem) => {
                refused.push(problem);
                out.extend(members.into_iter().map(|i| vec![i]));
            }
            None => out.push(members),
        }
    }
    (out, refused)
}

/// The largest cap in `1..=max` that cuts buckets of `sizes` into at least
/// `min(min_batches, cells)` batches.
pub fn cap_for(sizes: &[usize], max: usize, min_batches: usize) -> usize {
    let cells: usize = sizes.iter().sum();
    let want = min_batches.min(cells);
    let count = |cap: usize| sizes.iter().map(|&n| n.div_ceil(cap)).sum::<usize>();
    (1..=max.max(1)).rev().find(|&cap| count(cap) >= want).unwrap_or(1)
}

/// `members` cut into `ceil(len / cap)` consecutive batches whose sizes differ by at most one
/// (the first ones take the extra chain).
pub fn balanced_chunks(members: &[usize], cap: usize) -> Vec<Vec<usize>> {
    if members.is_empty() {
        return Vec::new();
    }
    let parts = members.len().div_ceil(cap.max(1));
    let (base, extra) = (members.len() / parts, members.len() % parts);
    let mut out = Vec::with_capacity(parts);
    let mut start = 0;
    for p in 0..parts {
        let len = base + usize::from(p < extra);
        out.push(members[start..start + len].to_vec());
        start += len;
    }
    out
}

/// The shard (or GPU) of each batch, given the batches' chain counts: largest batch first
/// (ties in order), each to the shard with the fewest chains so far (ties to the lower index).
/// With at least `count` batches no shard is empty.
pub fn deal(sizes: &[usize], count: usize) -> Vec<usize> {
    let count = count.max(1);
    let mut order: Vec<usize> = (0..sizes.len()).collect();
    order.sort_by(|&a, &b| sizes[b].cmp(&sizes[a]).then(a.cmp(&b)));
    let mut load = vec![(0usize, 0usize); count]; // (chains, batches)
    let mut owner = vec![0; sizes.len()];
    for i in order {
        let s = (0..count).min_by_key(|&s| (load[s], s)).unwrap_or(0);
        load[s].0 += sizes[i];
        load[s].1 += 1;
        owner[i] = s;
    }
    owner
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (number of batches, largest batch) of buckets `sizes` planned with `max` and `min`.
    fn shape(sizes: &[usize], max: usize, min: usize) -> (usize, usize) {
        let cap = cap_for(sizes, max, min);
        let batches: Vec<Vec<usize>> =
            sizes.iter().flat_map(|&n| balanced_chunks(&(0..n).collect::<Vec<_>>(), cap)).collect();
        (batches.len(), batches.iter().map(Vec::len).max().unwrap_or(0))
    }

    #[test]
    fn cap_gives_every_shard_a_batch() {
        // The quickstart: one bucket of 24 chains.
        assert_eq!(shape(&[24], 32, 1), (1, 24));
        assert_eq!(shape(&[24], 32, 2), (2, 12));
        assert_eq!(shape(&[24], 32, 3), (3, 8));
        assert_eq!(shape(&[24], 32, 5), (5, 5)); // 5, 5, 5, 5, 4
        assert_eq!(shape(&[24], 8, 1), (3, 8));
        // More shards than cells: every cell alone.
        assert_eq!(shape(&[3], 32, 7), (3, 1));
        // Cells that run alone count as batches.
        assert_eq!(shape(&[1, 1, 10], 32, 3), (3, 10));
        assert_eq!(shape(&[1, 1, 10], 32, 4), (4, 5));
        assert_eq!(shape(&[], 32, 4), (0, 0));
        // The largest cap that still gives enough batches.
        assert_eq!(cap_for(&[24], 32, 2), 23);
        assert_eq!(cap_for(&[24], 32, 1), 32);
    }

    fn config(data: &str, model: &str, batch: usize) -> CellConfig {
        let text = format!(
            r#"{{"name": "g", "base": {{"data": {data}, "model": {model}, "sampler": {{"batch_size": {batch}}}}}, "axes": []}}"#
        );
        ablate_grid::Grid::from_json_str(&text).unwrap().cells.remove(0).config
    }

    #[test]
    fn cost_model_separates_the_digits_and_mnist_mlps() {
        let digits = r#"{"dataset": "digits"}"#;
        let mnist = r#"{"dataset": "mnist", "train_size": 10000}"#;
        // The quickstart MLP 64-50-10, batch 50: 3760 x 50 = 0.19 M.
        assert!(!compute_bound(&config(digits, r#"{"kind": "mlp", "hidden": [50]}"#, 50)));
        // The MNIST MLP 784-100-100-10, batch 100: 89610 x 100 = 9.0 M.
        assert!(compute_bound(&config(mnist, r#"{"kind": "mlp", "hidden": [100, 100]}"#, 100)));
        // The boundary: 784-10-10 has 7960 parameters; batch 125 is 0.995 M, batch 126 1.003 M.
        assert!(!compute_bound(&config(mnist, r#"{"kind": "mlp", "hidden": [10]}"#, 125)));
        assert!(compute_bound(&config(mnist, r#"{"kind": "mlp", "hidden": [10]}"#, 126)));
        // Convolutional cells batch only as asked.
        assert!(!compute_bound(&config(mnist, r#"{"kind": "cnn", "channels": [16, 32]}"#, 100)));
    }

    #[test]
    fn chunks_are_balanced_and_cover_the_bucket() {
        let members: Vec<usize> = (0..24).collect();
        for cap in 1..30 {
            let chunks = balanced_chunks(&members, cap);
            assert_eq!(chunks.len(), 24usize.div_ceil(cap));
            assert_eq!(chunks.concat(), members);
            let (lo, hi) = (chunks.iter().map(Vec::len).min().unwrap(), chunks.iter().map(Vec::len).max().unwrap());
            assert!(hi <= cap && hi - lo <= 1, "cap {cap}: {lo}..{hi}");
        }
        assert_eq!(balanced_chunks(&[7, 8, 9, 10, 11], 2), vec![vec![7, 8], vec![9, 10], vec![11]]);
    }

    #[test]
    fn dealing_is_balanced_and_leaves_no_shard_empty() {
        assert_eq!(deal(&[8, 8, 8], 3), vec![0, 1, 2]);
        assert_eq!(deal(&[12, 12], 2), vec![0, 1]);
        // Largest first, each to the lightest shard: 10 -> 0, 5 -> 1, 5 -> 1, then 1 -> 0 (equal
        // chains, fewer batches).
        assert_eq!(deal(&[1, 10, 5, 5], 2), vec![0, 0, 1, 1]);
        for n in 1..40 {
            for count in 1..9 {
                let sizes: Vec<usize> = (0..n).map(|i| 1 + (i * 7) % 5).collect();
                let owner = deal(&sizes, count);
                let mut chains = vec![0; count];
                for (i, &o) in owner.iter().enumerate() {
                    chains[o] += sizes[i];
                }
                if n >= count {
                    assert!(chains.iter().all(|&c| c > 0), "{n} batches, {count} shards: {chains:?}");
                }
                // Greedy balance: no shard exceeds the lightest by more than the largest batch.
                let spread = chains.iter().max().unwrap() - chains.iter().min().unwrap();
                assert!(spread <= *sizes.iter().max().unwrap(), "{chains:?}");
                assert_eq!(owner, deal(&sizes, count), "deterministic");
            }
        }
    }
}
