//! Aggregation with Polars: the long tables (`results`, `growth`), the per-level summary
//! (mean ± standard error over seeds, pivoted wide), and the typed [`Level`] view of it that the
//! Markdown, the plots and the verdicts read.
//!
//! Standard error over seeds: `sd / sqrt(k)` (sample sd, ddof = 1) with `k` the number of done
//! cells of a factor level × temperature; for `k = 1` the test-set standard error of that one cell
//! (`accuracy_se`, `nll_se` of `metrics.json`; none for brier and ece). Only `done` cells enter
//! the summary; failed and diverged cells are counted.

use std::path::Path;
use std::sync::Arc;

use polars::frame::PivotColumnNaming;
use polars::prelude::*;

use ablate_records::float::present;

use crate::load::{Cell, Run, Status};
use crate::verdict::Point;
use crate::ReportError;

/// The metrics of the summary (mean ± se per level × temperature), in column order.
pub const SUMMARY_METRICS: [&str; 4] = ["accuracy", "nll", "brier", "ece"];

/// Columns of the long tables that a factor name must not shadow.
const RESERVED: [&str; 11] =
    ["cell_id", "status", "temperature", "seed", "metric", "value", "se", "members", "n_cells", "n_done", "n_failed"];

/// The column name of a factor: the label name, or `label_<name>` where it would clash with one
/// of the fixed columns.
pub fn factor_column(name: &str) -> String {
    if RESERVED.contains(&name) || name.starts_with("n_") || name.ends_with("_mean") {
        format!("label_{name}")
    } else {
        name.to_string()
    }
}

/// The Polars tables of a run.
#[derive(Debug, Clone)]
pub struct Tables {
    /// Factor column names (see [`factor_column`]), in the run's factor order.
    pub factors: Vec<String>,
    /// Long format, one row per (cell, metric).
    pub results: DataFrame,
    /// Long format, one row per (cell, ensemble size, metric).
    pub growth: DataFrame,
    /// Wide: factors, temperature, counts, `<metric>_mean`, `<metric>_se`.
    pub summary: DataFrame,
    /// factors, temperature, members, metric, mean (over done seeds), k.
    pub growth_summary: DataFrame,
}

fn polars_err(path: &Path) -> impl Fn(PolarsError) -> ReportError + '_ {
    move |source| ReportError::Polars { path: path.to_path_buf(), source }
}

/// Accumulates the identifying columns (cell, status, factors, temperature, seed) of rows.
struct Keys {
    cell_id: Vec<String>,
    status: Vec<String>,
    factors: Vec<Vec<Option<String>>>,
    temperature: Vec<f64>,
    seed: Vec<u64>,
}

impl Keys {
    fn new(n_factors: usize) -> Self {
        Keys {
            cell_id: Vec::new(),
            status: Vec::new(),
            factors: vec![Vec::new(); n_factors],
            temperature: Vec::new(),
            seed: Vec::new(),
        }
    }

    fn push(&mut self, cell: &Cell, factor_names: &[String]) {
        self.cell_id.push(cell.id.clone());
        self.status.push(cell.status.as_str().to_string());
        for (col, name) in self.factors.iter_mut().zip(factor_names) {
            col.push(cell.factor(name));
        }
        self.temperature.push(cell.temperature);
        self.seed.push(cell.seed);
    }

    fn into_columns(self, factor_cols: &[String]) -> Vec<Column> {
        let mut cols = vec![Column::new("cell_id".into(), self.cell_id), Column::new("status".into(), self.status)];
        for (name, values) in factor_cols.iter().zip(self.factors) {
            cols.push(Column::new(name.as_str().into(), values));
        }
        cols.push(Column::new("temperature".into(), self.temperature));
        cols.push(Column::new("seed".into(), self.seed));
        cols
    }
}

/// `(metric, value, se)` of one cell, values that are present only.
fn cell_metrics(cell: &Cell) -> Vec<(&'static str, f64, Option<f64>)> {
    let mut out: Vec<(&'static str, Option<f64>, Option<f64>)> = Vec::new();
    if let Some(m) = &cell.metrics {
        let e = &m.ensemble;
        out.extend([
            ("accuracy", present(e.accuracy), present(e.accuracy_se)),
            ("nll", present(e.nll), present(e.nll_se)),
            ("brier", present(e.brier), None),
            ("ece", present(e.ece), None),
            ("gibbs_accuracy", present(e.gibbs_accuracy), None),
            ("gibbs_nll", present(e.gibbs_nll), None),
            ("brier_reliability", present(e.brier_reliability), None),
            ("brier_resolution", present(e.brier_resolution), None),
            ("brier_uncertainty", present(e.brier_uncertainty), None),
            ("members", Some(m.members as f64), None),
        ]);
    }
    let d = cell.diagnostics();
    out.extend([
        ("kinetic_in_band_fraction", d.kinetic_in_band_fraction, None),
        ("kinetic_temperature", d.kinetic_temperature, None),
        ("configurational_temperature", d.configurational_temperature, None),
        ("wall_seconds", cell.wall_seconds, None),
    ]);
    out.into_iter().filter_map(|(k, v, se)| v.map(|v| (k, v, se))).collect()
}

impl Tables {
    /// Build all tables; `summary_path` names the output in errors.
    pub fn build(run: &Run, summary_path: &Path) -> Result<Tables, ReportError> {
        let err = polars_err(summary_path);
        let factors: Vec<String> = run.factors.iter().map(|f| factor_column(f)).collect();

        // results: one row per (cell, metric)
        let mut keys = Keys::new(factors.len());
        let (mut metric, mut value, mut se) = (Vec::new(), Vec::new(), Vec::new());
        for cell in &run.cells {
            for (m, v, s) in cell_metrics(cell) {
                keys.push(cell, &run.factors);
                metric.push(m);
                value.push(v);
                se.push(s);
            }
        }
        let mut cols = keys.into_columns(&factors);
        cols.push(Column::new("metric".into(), metric));
        cols.push(Column::new("value".into(), value));
        cols.push(Column::new("se".into(), se));
        let results = DataFrame::new_infer_height(cols).map_err(&err)?;

        // growth: one row per (cell, members, metric)
        let mut keys = Keys::new(factors.len());
        let (mut members, mut metric, mut value) = (Vec::new(), Vec::new(), Vec::new());
        for cell in &run.cells {
            let Some(m) = &cell.metrics else { continue };
            for g in &m.growth {
                for (name, v) in [("accuracy", g.accuracy), ("nll", g.nll), ("brier", g.brier), ("ece", g.ece)] {
                    if let Some(v) = present(v) {
                        keys.push(cell, &run.factors);
                        members.push(g.members as i64);
                        metric.push(name);
                        value.push(v);
                    }
                }
            }
        }
        let mut cols = keys.into_columns(&factors);
        cols.push(Column::new("members".into(), members));
        cols.push(Column::new("metric".into(), metric));
        cols.push(Column::new("value".into(), value));
        let growth = DataFrame::new_infer_height(cols).map_err(&err)?;

        // one row per cell found, for the counts
        let mut keys = Keys::new(factors.len());
        for cell in &run.cells {
            keys.push(cell, &run.factors);
        }
        let cells = DataFrame::new_infer_height(keys.into_columns(&factors)).map_err(&err)?;

        let summary = summarise(&results, &cells, &factors).map_err(&err)?;
        let growth_summary = summarise_growth(&growth, &factors).map_err(&err)?;
        Ok(Tables { factors, results, growth, summary, growth_summary })
    }
}

fn key_exprs(factors: &[String], extra: &[&str]) -> Vec<Expr> {
    factors.iter().map(|f| col(f.as_str())).chain(extra.iter().map(|e| col(*e))).collect()
}

fn sort_names(factors: &[String], extra: &[&str]) -> Vec<String> {
    factors.iter().cloned().chain(extra.iter().map(|e| e.to_string())).collect()
}

/// Counts per level × temperature, joined with the pivoted mean/se of [`SUMMARY_METRICS`].
fn summarise(results: &DataFrame, cells: &DataFrame, factors: &[String]) -> PolarsResult<DataFrame> {
    let keys = key_exprs(factors, &["temperature"]);
    let is = |s: Status| col("status").eq(lit(s.as_str()));
    let counts = cells.clone().lazy().group_by(keys.clone()).agg([
        len().cast(DataType::Int64).alias("n_cells"),
        is(Status::Done).sum().cast(DataType::Int64).alias("n_done"),
        is(Status::Failed).sum().cast(DataType::Int64).alias("n_failed"),
        is(Status::Diverged).sum().cast(DataType::Int64).alias("n_diverged"),
        (is(Status::Running).or(is(Status::NotStarted))).sum().cast(DataType::Int64).alias("n_unfinished"),
    ]);

    let wanted = SUMMARY_METRICS
        .iter()
        .map(|m| col("metric").eq(lit(*m)))
        .reduce(|a, b| a.or(b))
        .expect("non-empty metric list");
    let mut stat_keys = keys.clone();
    stat_keys.push(col("metric"));
    let stats = results
        .clone()
        .lazy()
        .filter(is(Status::Done).and(wanted))
        .group_by(stat_keys)
        .agg([
            col("value").mean().alias("mean"),
            col("value").std(1).alias("sd"),
            col("value").count().cast(DataType::Int64).alias("k"),
            col("se").first().alias("se_test"),
        ])
        .with_column(
            when(col("k").gt(lit(1)))
                .then(col("sd") / col("k").cast(DataType::Float64).sqrt())
                .otherwise(col("se_test"))
                .alias("se"),
        );
    let metric_names = DataFrame::new_infer_height(vec![Column::new("metric".into(), SUMMARY_METRICS.to_vec())])?;
    let index = sort_names(factors, &["temperature"]);
    let wide = stats
        .pivot(
            cols(["metric"]),
            Arc::new(metric_names),
            cols(index.clone()),
            cols(["mean", "se"]),
            element().first(),
            true,
            "_".into(),
            PivotColumnNaming::Combine,
        )
        .select(
            keys.iter()
                .cloned()
                .chain(SUMMARY_METRICS.iter().flat_map(|m| {
                    [
                        col(format!("mean_{m}")).alias(format!("{m}_mean")),
                        col(format!("se_{m}")).alias(format!("{m}_se")),
                    ]
                }))
                .collect::<Vec<_>>(),
        );

    let args = JoinArgs { nulls_equal: true, ..JoinArgs::new(JoinType::Left) };
    counts.join(wide, keys.clone(), keys, args).sort(index, SortMultipleOptions::default()).collect()
}

/// Mean over done seeds of each growth metric per level × temperature × ensemble size.
fn summarise_growth(growth: &DataFrame, factors: &[String]) -> PolarsResult<DataFrame> {
    let keys = key_exprs(factors, &["temperature", "members", "metric"]);
    growth
        .clone()
        .lazy()
        .filter(col("status").eq(lit(Status::Done.as_str())))
        .group_by(keys)
        .agg([col("value").mean().alias("mean"), col("value").count().cast(DataType::Int64).alias("k")])
        .sort(sort_names(factors, &["temperature", "members", "metric"]), SortMultipleOptions::default())
        .collect()
}

/// Write `df` as Parquet.
pub fn write_parquet(df: &DataFrame, path: &Path) -> Result<(), ReportError> {
    crate::atomic::write_with(path, |file| {
        ParquetWriter::new(file).finish(&mut df.clone()).map_err(polars_err(path))?;
        Ok(())
    })
}

/// Write `df` as CSV with a header (nulls as empty fields).
pub fn write_csv(df: &DataFrame, path: &Path) -> Result<(), ReportError> {
    crate::atomic::write_with(path, |file| {
        CsvWriter::new(file).include_header(true).finish(&mut df.clone()).map_err(polars_err(path))
    })
}

/// Mean and standard error of one metric.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Stat {
    pub mean: Option<f64>,
    pub se: Option<f64>,
}

/// One row of the summary: a temperature of a level.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub temperature: f64,
    pub n_cells: i64,
    pub n_done: i64,
    pub n_failed: i64,
    pub n_diverged: i64,
    pub n_unfinished: i64,
    /// In [`SUMMARY_METRICS`] order.
    pub stats: Vec<(&'static str, Stat)>,
}

impl Row {
    pub fn stat(&self, metric: &str) -> Stat {
        self.stats.iter().find(|(m, _)| *m == metric).map(|(_, s)| *s).unwrap_or_default()
    }
}

/// Mean growth metrics of one temperature at one ensemble size.
#[derive(Debug, Clone, PartialEq)]
pub struct GrowthRow {
    pub temperature: f64,
    pub members: i64,
    pub metric: String,
    pub mean: f64,
}

/// One factor level (a combination of all labels but temperature and seed).
#[derive(Debug, Clone, PartialEq)]
pub struct Level {
    /// `a=x, b=y`, or `all cells` when the grid has no factor besides temperature and seed.
    pub name: String,
    /// (factor column, value) pairs.
    pub values: Vec<(String, Option<String>)>,
    /// Sorted by temperature.
    pub rows: Vec<Row>,
    pub growth: Vec<GrowthRow>,
}

impl Level {
    /// Temperatures with a mean of `metric` (T = 0 included).
    pub fn points(&self, metric: &str) -> Vec<Point> {
        self.rows
            .iter()
            .filter_map(|r| {
                let s = r.stat(metric);
                s.mean.map(|mean| Point { temperature: r.temperature, mean, se: s.se })
            })
            .collect()
    }

    /// The SGD reference (T = 0) of `metric`, if present.
    pub fn sgd(&self, metric: &str) -> Option<Stat> {
        self.rows.iter().find(|r| r.temperature == 0.0).map(|r| r.stat(metric)).filter(|s| s.mean.is_some())
    }

    /// Growth means of `metric` for one temperature, sorted by ensemble size.
    pub fn growth_curve(&self, metric: &str, temperature: f64) -> Vec<(i64, f64)> {
        let mut v: Vec<(i64, f64)> = self
            .growth
            .iter()
            .filter(|g| g.metric == metric && g.temperature == temperature)
            .map(|g| (g.members, g.mean))
            .collect();
        v.sort_by_key(|(m, _)| *m);
        v
    }

    /// Temperatures that have a growth curve, ascending.
    pub fn growth_temperatures(&self) -> Vec<f64> {
        let mut t: Vec<f64> = self.growth.iter().map(|g| g.temperature).collect();
        t.sort_by(f64::total_cmp);
        t.dedup();
        t
    }
}

fn str_at(df: &DataFrame, name: &str, i: usize) -> PolarsResult<Option<String>> {
    Ok(df.column(name)?.str()?.get(i).map(str::to_string))
}

fn f64_at(df: &DataFrame, name: &str, i: usize) -> PolarsResult<Option<f64>> {
    Ok(df.column(name)?.f64()?.get(i))
}

fn i64_at(df: &DataFrame, name: &str, i: usize) -> PolarsResult<Option<i64>> {
    Ok(df.column(name)?.i64()?.get(i))
}

fn level_name(values: &[(String, Option<String>)]) -> String {
    if values.is_empty() {
        return "all cells".to_string();
    }
    values.iter().map(|(k, v)| format!("{k}={}", v.as_deref().unwrap_or("(none)"))).collect::<Vec<_>>().join(", ")
}

/// The summary as typed levels (in the summary's sort order); `path` names errors.
pub fn levels(tables: &Tables, path: &Path) -> Result<Vec<Level>, ReportError> {
    levels_inner(tables).map_err(polars_err(path))
}

fn levels_inner(tables: &Tables) -> PolarsResult<Vec<Level>> {
    let df = &tables.summary;
    let key_at = |df: &DataFrame, i: usize| -> PolarsResult<Vec<(String, Option<String>)>> {
        tables.factors.iter().map(|f| Ok((f.clone(), str_at(df, f, i)?))).collect()
    };
    let mut levels: Vec<Level> = Vec::new();
    for i in 0..df.height() {
        let values = key_at(df, i)?;
        let row = Row {
            temperature: f64_at(df, "temperature", i)?.unwrap_or(f64::NAN),
            n_cells: i64_at(df, "n_cells", i)?.unwrap_or(0),
            n_done: i64_at(df, "n_done", i)?.unwrap_or(0),
            n_failed: i64_at(df, "n_failed", i)?.unwrap_or(0),
            n_diverged: i64_at(df, "n_diverged", i)?.unwrap_or(0),
            n_unfinished: i64_at(df, "n_unfinished", i)?.unwrap_or(0),
            stats: SUMMARY_METRICS
                .iter()
                .map(|m| {
                    Ok((
                        *m,
                        Stat { mean: f64_at(df, &format!("{m}_mean"), i)?, se: f64_at(df, &format!("{m}_se"), i)? },
                    ))
                })
                .collect::<PolarsResult<_>>()?,
        };
        match levels.iter_mut().find(|l| l.values == values) {
            Some(l) => l.rows.push(row),
            None => levels.push(Level { name: level_name(&values), values, rows: vec![row], growth: Vec::new() }),
        }
    }
    let g = &tables.growth_summary;
    for i in 0..g.height() {
        let values = key_at(g, i)?;
        let (Some(temperature), Some(members), Some(metric), Some(mean)) =
            (f64_at(g, "temperature", i)?, i64_at(g, "members", i)?, str_at(g, "metric", i)?, f64_at(g, "mean", i)?)
        else {
            continue;
        };
        if let Some(l) = levels.iter_mut().find(|l| l.values == values) {
            l.growth.push(GrowthRow { temperature, members, metric, mean });
        }
    }
    for l in &mut levels {
        l.rows.sort_by(|a, b| a.temperature.total_cmp(&b.temperature));
    }
    Ok(levels)
}
