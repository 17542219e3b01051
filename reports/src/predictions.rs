//! Report sections computed from stored predictions and per-member records: the comparison with
//! the grid's reference cells, out-of-distribution detection, and convergence across chains.
//!
//! - **Reference** (grid key `reference`): the reference predictive is the mean of the member
//!   probabilities of every reference cell (all seeds pooled). For each cell, its ensemble
//!   predictive (mean over its members) is compared with it on the test set: agreement and total
//!   variation ([`crate::stats::predictive`]), then mean ± SE over seeds per factor level and
//!   temperature. A reference cell is compared with the pool of the *other* reference cells
//!   (leave one out), which gives the distance between independent reference ensembles: the
//!   floor below which no cell can be told apart from the reference.
//! - **Verdict per level**: T = 1 is *closer* than the best cold T (the 0 < T < 1 with the
//!   smallest mean TV) if its TV is smaller by more than 2 combined SEs, *farther* if larger by
//!   more than that, else *within noise*.
//! - **OOD** (`eval.ood`): scores of the ensemble predictive, predictive entropy and
//!   1 − max-probability, with the OOD test points as positives; AUROC and AUPRC
//!   ([`crate::stats::ranking`]), mean ± SE over seeds.
//! - **Convergence** (cells that differ only in seed): split-R-hat and ESS
//!   ([`crate::stats::mcmc`]) of the per-member test log-likelihood (one chain per seed, one draw
//!   per member) and of the training NLL per epoch from the epoch of the first member on.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use crate::aggregate::{Level, Row, Stat};
use crate::load::{label_string, Cell, Run, Status};
use crate::stats::{mcmc, predictive as pv, ranking};
use crate::ReportError;

/// File names of a cell's stored predictions (written by the worker).
pub use ablate_records::npy::{OOD_PREDICTIONS, PREDICTIONS, TEST_LABELS};

/// What one cell's stored files give.
#[derive(Debug, Clone)]
pub struct Stored {
    pub classes: usize,
    pub labels: Vec<i64>,
    pub members: usize,
    /// Ensemble predictive on the test set, N×K.
    pub test: Vec<f64>,
    /// Ensemble predictive on the OOD test set, when stored.
    pub ood: Option<Vec<f64>>,
    /// Each member's mean test log-likelihood.
    pub member_log_likelihood: Vec<f64>,
}

/// Reads a cell's stored predictions; `None` when it has none.
pub fn read_stored(dir: &Path) -> Result<Option<Stored>, ReportError> {
    let path = dir.join(PREDICTIONS);
    let Some(p) = crate::npy::read_f32(&path)? else { return Ok(None) };
    let [m, n, k] = p.shape[..] else {
        return Err(ReportError::Invalid { path, message: format!("has shape {:?}, expected 3 dimensions", p.shape) });
    };
    let labels_path = dir.join(TEST_LABELS);
    let labels = crate::npy::read_i64(&labels_path)?
        .ok_or_else(|| ReportError::Invalid {
            path: labels_path.clone(),
            message: format!("is missing beside {PREDICTIONS}"),
        })?
        .data;
    if labels.len() != n || labels.iter().any(|&y| y < 0 || y as usize >= k) {
        return Err(ReportError::Invalid {
            path: labels_path,
            message: format!("does not hold {n} labels in 0..{k} (the rows of {PREDICTIONS})"),
        });
    }
    let members: Vec<&[f32]> = p.data.chunks_exact((n * k).max(1)).collect();
    let member_log_likelihood = members
        .iter()
        .map(|mp| {
            labels.iter().enumerate().map(|(i, &y)| f64::from(mp[i * k + y as usize]).max(1e-30).ln()).sum::<f64>()
                / n.max(1) as f64
        })
        .collect();
    let ood = match crate::npy::read_f32(&dir.join(OOD_PREDICTIONS))? {
        Some(o) if o.shape.len() == 3 && o.shape[0] == m && o.shape[2] == k => {
            let rows = o.shape[1];
            let parts: Vec<&[f32]> = o.data.chunks_exact((rows * k).max(1)).collect();
            Some(pv::mean_predictive(&parts))
        }
        Some(o) => {
            return Err(ReportError::Invalid {
                path: dir.join(OOD_PREDICTIONS),
                message: format!("has shape {:?}; expected [{m}, examples, {k}] like {PREDICTIONS}", o.shape),
            })
        }
        None => None,
    };
    Ok(Some(Stored { classes: k, labels, members: m, test: pv::mean_predictive(&members), ood, member_log_likelihood }))
}

/// The cells that the grid's `reference` object names (`grid.json` in the run folder): every
/// pair `axis: value` must match the cell's label for that axis (by label, or by the value
/// whose label it is). Empty without a `reference`.
pub fn reference_ids(run: &Run) -> Result<Vec<String>, ReportError> {
    let path = run.dir.join("grid.json");
    let text = std::fs::read_to_string(&path).map_err(|source| ReportError::Read { path: path.clone(), source })?;
    let grid: Value = serde_json::from_str(&text).map_err(|source| ReportError::Json { path: path.clone(), source })?;
    let Some(reference) = grid.get("reference").and_then(Value::as_object) else { return Ok(Vec::new()) };
    let axes = grid.get("axes").and_then(Value::as_array).cloned().unwrap_or_default();
    // For each reference key: the axis display name and the labels that match.
    let mut wanted: Vec<(String, Vec<String>)> = Vec::new();
    for (key, v) in reference {
        let axis = axes.iter().find(|a| {
            a.get("name").and_then(Value::as_str) == Some(key.as_str())
                || a.get("path").and_then(Value::as_str) == Some(key.as_str())
        });
        let Some(axis) = axis else {
            return Err(ReportError::Invalid { path, message: format!("reference names {key:?}, which is no axis") });
        };
        let name = axis.get("name").or_else(|| axis.get("path")).and_then(Value::as_str).unwrap_or(key).to_string();
        let mut accept = vec![label_string(v)];
        let values = axis.get("values").and_then(Value::as_array).cloned().unwrap_or_default();
        let labels = axis.get("labels").and_then(Value::as_array).cloned().unwrap_or_default();
        for (j, value) in values.iter().enumerate() {
            if json_eq(value, v) {
                accept.push(labels.get(j).map_or_else(|| label_string(value), label_string));
            }
        }
        wanted.push((name, accept));
    }
    let matches = |c: &Cell| {
        wanted.iter().all(|(name, accept)| {
            c.labels.iter().any(|(k, v)| k == name && (accept.contains(&label_string(v)) || num_in(v, accept)))
        })
    };
    Ok(run.cells.iter().filter(|c| matches(c)).map(|c| c.id.clone()).collect())
}

fn json_eq(a: &Value, b: &Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

fn num_in(v: &Value, accept: &[String]) -> bool {
    v.as_f64().is_some_and(|x| accept.iter().any(|a| a.parse::<f64>().ok() == Some(x)))
}

/// The factor level of a cell, named as the report's levels are (`a=x, b=y` or `all cells`).
pub fn level_of(run: &Run, cell: &Cell) -> String {
    if run.factors.is_empty() {
        return "all cells".into();
    }
    run.factors
        .iter()
        .map(|f| format!("{f}={}", cell.factor(f).unwrap_or_else(|| "(none)".into())))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Mean and standard error (sd/sqrt(n), ddof 1) of finite values; SE is `None` for one value.
pub fn mean_se(values: &[f64]) -> Stat {
    let v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return Stat::default();
    }
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let se = (v.len() > 1).then(|| (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0) / n).sqrt());
    Stat { mean: Some(mean), se }
}

/// Per-level, per-temperature values of several metrics, each a list over seeds.
pub type Grouped = BTreeMap<String, BTreeMap<u64, (f64, BTreeMap<&'static str, Vec<f64>>)>>;

fn push(g: &mut Grouped, level: &str, t: f64, metric: &'static str, v: f64) {
    let row = g.entry(level.to_string()).or_default().entry(t.to_bits()).or_insert_with(|| (t, BTreeMap::new()));
    row.1.entry(metric).or_default().push(v);
}

/// Grouped values as report [`Level`]s (rows sorted by temperature) for tables and plots.
pub fn to_levels(g: &Grouped) -> Vec<Level> {
    g.iter()
        .map(|(name, rows)| {
            let mut rows: Vec<Row> = rows
                .values()
                .map(|(t, metrics)| Row {
                    temperature: *t,
                    n_cells: metrics.values().map(Vec::len).max().unwrap_or(0) as i64,
                    n_done: metrics.values().map(Vec::len).max().unwrap_or(0) as i64,
                    n_failed: 0,
                    n_diverged: 0,
                    n_unfinished: 0,
                    stats: metrics.iter().map(|(m, v)| (*m, mean_se(v))).collect(),
                })
                .collect();
            rows.sort_by(|a, b| a.temperature.total_cmp(&b.temperature));
            Level { name: name.clone(), values: Vec::new(), rows, growth: Vec::new() }
        })
        .collect()
}

/// Everything the sections need, read once.
pub struct Sections {
    /// Reference cell ids (empty without a `reference`).
    pub reference: Vec<String>,
    /// Agreement and TV against the reference, per level and temperature.
    pub comparison: Grouped,
    /// Why the comparison is missing, when the grid has a reference but it could not be made.
    pub comparison_note: Option<String>,
    /// OOD AUROC/AUPRC per level and temperature.
    pub ood: Grouped,
    /// Convergence rows: (level, temperature, chains, draws, R-hat LL, ESS LL, R-hat train, ESS train).
    pub convergence: Vec<Convergence>,
    /// Cells whose stored predictions were read.
    pub stored_cells: usize,
    /// With a `reference`: done cells without stored predictions (left out of the comparison).
    pub without_predictions: Vec<String>,
}

/// Split-R-hat and ESS of one group of cells that differ only in seed.
#[derive(Debug, Clone, PartialEq)]
pub struct Convergence {
    pub level: String,
    pub temperature: f64,
    pub chains: usize,
    pub member_draws: usize,
    pub rhat_log_likelihood: f64,
    pub ess_log_likelihood: f64,
    pub train_draws: usize,
    pub rhat_train_nll: f64,
    pub ess_train_nll: f64,
}

/// Per-member test log-likelihood of a cell: from its stored predictions when present, else
/// from `metrics.json`.
fn member_ll(cell: &Cell, stored: Option<&Stored>) -> Option<Vec<f64>> {
    stored
        .map(|s| s.member_log_likelihood.clone())
        .or_else(|| cell.metrics.as_ref().and_then(|m| m.member_test_log_likelihood.clone()))
}

/// The training NLL per epoch from the first member on (`members` ≥ 1 in `epochs.csv`).
fn train_trace(cell: &Cell) -> Option<Vec<f64>> {
    let e = cell.epochs.as_ref()?;
    Some(e.iter().filter(|r| r.members >= 1).map(|r| r.train_nll).collect())
}

/// Reads the stored predictions of every done cell and computes the sections.
pub fn compute(run: &Run) -> Result<Sections, ReportError> {
    let reference = reference_ids(run)?;
    let done: Vec<&Cell> = run.cells.iter().filter(|c| c.status == Status::Done).collect();
    let mut stored: BTreeMap<String, Stored> = BTreeMap::new();
    for c in &done {
        if let Some(s) = read_stored(&run.dir.join("cells").join(&c.id))? {
            stored.insert(c.id.clone(), s);
        }
    }
    let (comparison, comparison_note) = compare(run, &done, &stored, &reference);
    let mut ood = Grouped::new();
    for c in &done {
        let Some(s) = stored.get(&c.id) else { continue };
        let Some(o) = &s.ood else { continue };
        let level = level_of(run, c);
        let k = s.classes;
        let positive: Vec<bool> =
            std::iter::repeat_n(false, s.labels.len()).chain(std::iter::repeat_n(true, o.len() / k)).collect();
        let entropy: Vec<f64> = pv::entropy(&s.test, k).into_iter().chain(pv::entropy(o, k)).collect();
        let unsure: Vec<f64> =
            pv::max_probability(&s.test, k).into_iter().chain(pv::max_probability(o, k)).map(|p| 1.0 - p).collect();
        push(&mut ood, &level, c.temperature, "auroc_entropy", ranking::auroc(&entropy, &positive));
        push(&mut ood, &level, c.temperature, "auprc_entropy", ranking::auprc(&entropy, &positive));
        push(&mut ood, &level, c.temperature, "auroc_max_prob", ranking::auroc(&unsure, &positive));
        push(&mut ood, &level, c.temperature, "auprc_max_prob", ranking::auprc(&unsure, &positive));
    }
    let convergence = convergence(run, &done, &stored);
    let without_predictions = if reference.is_empty() {
        Vec::new()
    } else {
        done.iter().filter(|c| !stored.contains_key(&c.id)).map(|c| c.id.clone()).collect()
    };
    Ok(Sections {
        reference,
        comparison,
        comparison_note,
        ood,
        convergence,
        stored_cells: stored.len(),
        without_predictions,
    })
}

fn compare(
    run: &Run,
    done: &[&Cell],
    stored: &BTreeMap<String, Stored>,
    reference: &[String],
) -> (Grouped, Option<String>) {
    let mut out = Grouped::new();
    if reference.is_empty() {
        return (out, None);
    }
    let refs: Vec<&Stored> = reference.iter().filter_map(|id| stored.get(id)).collect();
    let Some(first) = refs.first() else {
        return (out, Some("no reference cell is done with stored predictions".into()));
    };
    let (k, labels) = (first.classes, &first.labels);
    if let Some(c) = done.iter().find(|c| stored.get(&c.id).is_some_and(|s| s.classes != k || &s.labels != labels)) {
        return (out, Some(format!("cell {} predicted another test set than the reference cells", c.id)));
    }
    // Pool by members: a cell's weight is its member count, so the pool is the mean of all members.
    let pooled = |skip: Option<&str>| -> Option<Vec<f64>> {
        let mut acc = vec![0.0; first.test.len()];
        let mut count = 0.0;
        for (id, s) in reference.iter().filter_map(|id| stored.get(id).map(|s| (id, s))) {
            if Some(id.as_str()) == skip {
                continue;
            }
            acc.iter_mut().zip(&s.test).for_each(|(a, v)| *a += v * s.members as f64);
            count += s.members as f64;
        }
        (count > 0.0).then(|| acc.into_iter().map(|a| a / count).collect())
    };
    let all = pooled(None);
    for c in done {
        let Some(s) = stored.get(&c.id) else { continue };
        let is_ref = reference.contains(&c.id);
        let target = if is_ref { pooled(Some(&c.id)) } else { all.clone() };
        let Some(target) = target else { continue };
        let level = level_of(run, c);
        push(&mut out, &level, c.temperature, "agreement", pv::agreement(&s.test, &target, k));
        push(&mut out, &level, c.temperature, "tv", pv::total_variation(&s.test, &target, k));
    }
    (out, None)
}

/// Chains shorter than this get no ESS in the report: their split halves have fewer than 5
/// draws, too few for Geyer's sequence to look at any lag, and ArviZ's value is then the floor
/// m·n·log10(m·n) whatever the draws.
pub const MIN_DRAWS_FOR_ESS: usize = 10;

fn ess_or_nan(chains: &[Vec<f64>]) -> f64 {
    if chains.iter().map(Vec::len).min().unwrap_or(0) < MIN_DRAWS_FOR_ESS {
        f64::NAN
    } else {
        mcmc::ess(chains)
    }
}

fn convergence(run: &Run, done: &[&Cell], stored: &BTreeMap<String, Stored>) -> Vec<Convergence> {
    type Chains = (Vec<Vec<f64>>, Vec<Vec<f64>>);
    let mut groups: BTreeMap<(String, u64), (f64, Chains)> = BTreeMap::new();
    for c in done {
        let g = groups
            .entry((level_of(run, c), c.temperature.to_bits()))
            .or_insert_with(|| (c.temperature, Default::default()));
        if let Some(ll) = member_ll(c, stored.get(&c.id)) {
            g.1 .0.push(ll);
        }
        if let Some(tr) = train_trace(c) {
            g.1 .1.push(tr);
        }
    }
    groups
        .into_iter()
        .filter(|(_, (_, (ll, _)))| ll.len() >= 2)
        .map(|((level, _), (t, (ll, tr)))| Convergence {
            level,
            temperature: t,
            chains: ll.len(),
            member_draws: ll.iter().map(Vec::len).min().unwrap_or(0),
            rhat_log_likelihood: mcmc::split_rhat(&ll),
            ess_log_likelihood: ess_or_nan(&ll),
            train_draws: tr.iter().map(Vec::len).min().unwrap_or(0),
            rhat_train_nll: mcmc::split_rhat(&tr),
            ess_train_nll: ess_or_nan(&tr),
        })
        .collect()
}
