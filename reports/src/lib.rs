//! Reports of `ablate`: turn a run folder into tables, a Markdown report and plots.
//!
//! A run folder (written by the store crate; its records, file names and `.npy` format are
//! defined once in `ablate_records`, which this crate reads with, and on no other workspace
//! crate) looks like
//!
//! ```text
//! <run>/manifest.json                 versions, device, machine, plugin checksums, command
//! <run>/grid.json                     the grid file (name, description, base, axes)
//! <run>/cells/<cell_id>/labels.json   axis display name -> value; always temperature and seed
//! <run>/cells/<cell_id>/status.json   running | done | failed | diverged, message, wall time
//! <run>/cells/<cell_id>/epochs.csv    per-epoch training trace and thermometers
//! <run>/cells/<cell_id>/metrics.json  ensemble metrics, growth curve, diagnostics (done cells)
//! ```
//!
//! [`write_report`] reads it ([`load`]), aggregates it with Polars ([`aggregate`]: long format,
//! mean ± standard error over seeds per factor level × temperature), decides the cold-posterior
//! verdicts ([`verdict`]), renders `report.md` by hand ([`markdown`]) and draws SVG plots with
//! plotters ([`plots`]). Everything lands in `<run>/report/` unless another folder is given:
//!
//! | file | what |
//! | --- | --- |
//! | `results.parquet`, `results.csv` | long format, one row per (cell, metric) |
//! | `growth.csv` | long format, one row per (cell, ensemble size, metric) |
//! | `summary.csv` | per factor level × temperature: counts, mean and SE of accuracy, nll, brier, ece |
//! | `report.md` | run facts, tables, verdicts, diagnostics, missing cells, column reference |
//! | `plots/*.svg` | accuracy and NLL against log-temperature, NLL against ensemble size |
//!
//! The column reference ([`COLUMNS_MD`]) is embedded in `report.md` as well.
//!
//! The verdict rule ([`verdict::RULE`]): the cold posterior effect is *present* for a metric if
//! the ensemble value at the best temperature 0 < T < 1 beats the value at T = 1 by more than two
//! combined standard errors, `sqrt(se_best² + se_1²)`; *absent* if T = 1 is at least as good or
//! the difference is within two standard errors; *undetermined* without a T = 1 cell (or without
//! any 0 < T < 1 cell, or without standard errors).

use std::path::{Path, PathBuf};

pub mod aggregate;
pub mod atomic;
pub mod load;
pub mod markdown;
pub mod npy;
pub mod plots;
pub mod predictions;
pub mod predictions_md;
pub mod stats;
pub mod verdict;

pub use verdict::{Direction, Outcome, Verdict};

/// The column reference of the files written by [`write_report`] (Markdown).
pub const COLUMNS_MD: &str = include_str!("COLUMNS.md");

/// Options of [`write_report`].
#[derive(Debug, Clone, Default)]
pub struct ReportOptions {
    /// Ids of all cells the grid expands to. With it, cells that have no finished status
    /// (absent folder, no `status.json`, or still `running`) are listed as missing; without it,
    /// only the cell folders found on disk are considered.
    pub expected_cells: Option<Vec<String>>,
    /// Cells of the grid whose folder holds another cell's `config.json` or `labels.json`
    /// (id, what differs), found by the caller (which has the grid): left out of every table
    /// and named in report.md, as their numbers are not this cell's.
    pub foreign_cells: Vec<(String, String)>,
    /// Where to write; `<run>/report/` when `None`.
    pub out_dir: Option<PathBuf>,
    /// Skip the SVG plots.
    pub skip_plots: bool,
}

/// The verdicts of one factor level.
#[derive(Debug, Clone, PartialEq)]
pub struct LevelVerdict {
    /// Human-readable level, e.g. `prior=gaussian, dataset=mnist` (or `all cells`).
    pub level: String,
    pub nll: Verdict,
    pub accuracy: Verdict,
}

/// What [`write_report`] wrote and found.
#[derive(Debug, Clone)]
pub struct ReportSummary {
    pub out_dir: PathBuf,
    pub report_md: PathBuf,
    pub results_parquet: PathBuf,
    pub results_csv: PathBuf,
    pub growth_csv: PathBuf,
    pub summary_csv: PathBuf,
    pub plots: Vec<PathBuf>,
    /// Cell folders found on disk.
    pub cells_found: usize,
    pub cells_done: usize,
    pub cells_failed: usize,
    pub cells_diverged: usize,
    /// Cells without a finished status (expected but absent, no status, or running).
    pub missing: Vec<String>,
    /// Cell folders in the run that the grid does not have (with `expected_cells`): left out of
    /// every table and named in report.md.
    pub outside_grid: Vec<String>,
    pub verdicts: Vec<LevelVerdict>,
}

/// Errors of the report crate; each names the file or the step it concerns.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("cannot read {}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("cannot parse {}: {source}", path.display())]
    Json { path: PathBuf, source: serde_json::Error },
    #[error("{}: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
    #[error("cannot write {}: {source}{}", path.display(), write_hint(source))]
    Write { path: PathBuf, source: std::io::Error },
    #[error("polars failed on {}: {source}{}", path.display(), polars_hint(source))]
    Polars {
        /// The file being produced (or read) when Polars failed.
        path: PathBuf,
        source: polars::prelude::PolarsError,
    },
    #[error("cannot draw {}: {message}", path.display())]
    Plot { path: PathBuf, message: String },
}

/// What to do about a failed write: a full disk or an unwritable folder (`ablate report --out`
/// writes elsewhere).
fn write_hint(e: &std::io::Error) -> &'static str {
    match e.kind() {
        std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem => {
            " (the folder is not writable here: pass `--out DIR` to write the report elsewhere)"
        }
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded => {
            " (the disk or quota is full: free space, or pass `--out DIR` to write the report elsewhere)"
        }
        _ => "",
    }
}

/// [`write_hint`] for a Polars error that wraps an I/O error.
fn polars_hint(e: &polars::prelude::PolarsError) -> &'static str {
    match e {
        polars::prelude::PolarsError::IO { error, .. } => write_hint(error),
        _ => "",
    }
}

/// Read the run folder `run_dir`, aggregate it and write the report files.
///
/// The default folder `<run>/report/` is replaced as a whole: the report is written into a
/// hidden sibling and swapped in when complete, so a write that fails partway (a full disk)
/// leaves the previous report as it was, not new tables beside an old report.md. A folder
/// given with `out_dir` (which may hold other files) is written in place.
pub fn write_report(run_dir: &Path, opts: &ReportOptions) -> Result<ReportSummary, ReportError> {
    if opts.out_dir.is_some() {
        return write_into(run_dir, opts, None);
    }
    let final_dir = run_dir.join("report");
    sweep_stale_staging(run_dir);
    // Unique across hosts and PID namespaces sharing the run folder (shards, containers).
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let tag = format!("{}-{}-{nanos}", ablate_records::hostname(), std::process::id());
    let staged = run_dir.join(format!(".report-{tag}"));
    let summary = write_into(run_dir, opts, Some(&staged)).inspect_err(|_| {
        let _ = std::fs::remove_dir_all(&staged);
    })?;
    replace_dir(&staged, &final_dir, &run_dir.join(format!(".report-old-{tag}"))).inspect_err(|_| {
        let _ = std::fs::remove_dir_all(&staged);
    })?;
    let moved = |p: &Path| p.strip_prefix(&staged).map_or_else(|_| p.to_path_buf(), |rel| final_dir.join(rel));
    Ok(ReportSummary {
        out_dir: final_dir.clone(),
        report_md: moved(&summary.report_md),
        results_parquet: moved(&summary.results_parquet),
        results_csv: moved(&summary.results_csv),
        growth_csv: moved(&summary.growth_csv),
        summary_csv: moved(&summary.summary_csv),
        plots: summary.plots.iter().map(|p| moved(p)).collect(),
        ..summary
    })
}

/// Puts the complete folder `staged` where `target` is, the previous `target` (if any) moved
/// aside to `old` first and removed after. Another writer swapping in its own report at the
/// same moment can put one back between the two renames: then it is moved aside again (the
/// later report wins), a few times at most.
fn replace_dir(staged: &Path, target: &Path, old: &Path) -> Result<(), ReportError> {
    let mut attempts = 0;
    loop {
        let _ = std::fs::remove_dir_all(old);
        match std::fs::rename(target, old) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(ReportError::Write { path: target.to_path_buf(), source }),
        }
        match std::fs::rename(staged, target) {
            Ok(()) => break,
            Err(_) if attempts < 3 && target.exists() => attempts += 1,
            Err(source) => return Err(ReportError::Write { path: target.to_path_buf(), source }),
        }
    }
    let _ = std::fs::remove_dir_all(old);
    Ok(())
}

/// Staging folders (`.report-*`) a killed writer left behind more than a day ago.
fn sweep_stale_staging(run_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(run_dir) else { return };
    let day = std::time::Duration::from_secs(24 * 3600);
    for entry in entries.flatten() {
        let stale = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > day);
        if stale && entry.file_name().to_string_lossy().starts_with(".report-") {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// [`write_report`] into `staged` (the default folder's stand-in) or the options' folder.
fn write_into(run_dir: &Path, opts: &ReportOptions, staged: Option<&Path>) -> Result<ReportSummary, ReportError> {
    let mut run = load::Run::read(run_dir)?;
    // A cell folder the grid does not have (copied in, or left by another grid in a folder that
    // lost its manifest) would be averaged in as one more seed of its labels.
    let outside_grid: Vec<String> = match &opts.expected_cells {
        Some(ids) => {
            let ids: std::collections::HashSet<&str> = ids.iter().map(String::as_str).collect();
            let (kept, outside): (Vec<_>, Vec<_>) = run.cells.drain(..).partition(|c| ids.contains(c.id.as_str()));
            run.cells = kept;
            outside.into_iter().map(|c| c.id).collect()
        }
        None => Vec::new(),
    };
    if !opts.foreign_cells.is_empty() {
        run.cells.retain(|c| !opts.foreign_cells.iter().any(|(id, _)| id == &c.id));
        tracing::warn!(
            cells = %opts.foreign_cells.iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>().join(", "),
            "{} cell folder(s) in {} hold another cell's config.json or labels.json; they are left out of the report \
             (the next `ablate run` of the grid runs them again)",
            opts.foreign_cells.len(),
            run_dir.display()
        );
    }
    if !outside_grid.is_empty() {
        tracing::warn!(
            cells = %outside_grid.join(", "),
            "{} cell folder(s) in {} are not cells of its grid; they are left out of the report",
            outside_grid.len(),
            run_dir.display()
        );
    }
    let out_dir =
        staged.map(Path::to_path_buf).or_else(|| opts.out_dir.clone()).unwrap_or_else(|| run_dir.join("report"));
    create_dir(&out_dir)?;
    tracing::info!(run = %run_dir.display(), cells = run.cells.len(), out = %out_dir.display(), "writing report");

    let results_parquet = out_dir.join("results.parquet");
    let results_csv = out_dir.join("results.csv");
    let growth_csv = out_dir.join("growth.csv");
    let summary_csv = out_dir.join("summary.csv");
    let report_md = out_dir.join("report.md");

    let tables = aggregate::Tables::build(&run, &summary_csv)?;
    aggregate::write_parquet(&tables.results, &results_parquet)?;
    aggregate::write_csv(&tables.results, &results_csv)?;
    aggregate::write_csv(&tables.growth, &growth_csv)?;
    aggregate::write_csv(&tables.summary, &summary_csv)?;

    let levels = aggregate::levels(&tables, &summary_csv)?;
    let verdicts: Vec<LevelVerdict> = levels
        .iter()
        .map(|l| LevelVerdict {
            level: l.name.clone(),
            nll: verdict::decide(&l.points("nll"), Direction::LowerIsBetter),
            accuracy: verdict::decide(&l.points("accuracy"), Direction::HigherIsBetter),
        })
        .collect();

    let missing = run.missing_cells(opts.expected_cells.as_deref());

    let plots = if opts.skip_plots {
        Vec::new()
    } else {
        let dir = out_dir.join("plots");
        create_dir(&dir)?;
        plots::draw_all(&levels, &dir)?
    };

    let sections = predictions::compute(&run)?;
    let mut plots = plots;
    plots.extend(predictions_md::write_files(&sections, &out_dir, !opts.skip_plots)?);
    let text = markdown::render(&markdown::Input {
        run: &run,
        levels: &levels,
        verdicts: &verdicts,
        missing: &missing,
        expected: opts.expected_cells.as_ref().map(Vec::len),
        plots: &plots,
        out_dir: &out_dir,
    });
    let mut extra = predictions_md::render(&sections);
    extra.push_str(&provenance_sections(&run, &outside_grid, &opts.foreign_cells));
    let text = insert_sections(text, &extra, &run);
    atomic::write_bytes(&report_md, text.as_bytes())?;

    let count = |s: load::Status| run.cells.iter().filter(|c| c.status == s).count();
    Ok(ReportSummary {
        cells_found: run.cells.len(),
        cells_done: count(load::Status::Done),
        cells_failed: count(load::Status::Failed),
        cells_diverged: count(load::Status::Diverged),
        out_dir,
        report_md,
        results_parquet,
        results_csv,
        growth_csv,
        summary_csv,
        plots,
        missing,
        outside_grid,
        verdicts,
    })
}

/// The report.md sections on where the cells came from: cell folders outside the grid (already
/// left out of the tables) and finished cells computed by another build than the manifest's.
fn provenance_sections(run: &load::Run, outside_grid: &[String], foreign: &[(String, String)]) -> String {
    let mut extra = String::new();
    if !foreign.is_empty() {
        extra.push_str(&format!(
            "## Cells holding another cell's files\n\n{} cell folder(s) hold a `config.json` or `labels.json` that is \
             not the one their cell writes (a folder copied from another cell, or labels edited by hand), so their \
             numbers are not their cell's. They are left out of every table and verdict; the next `ablate run` of the \
             grid runs them again.\n\n| cell | what differs |\n| --- | --- |\n{}\n",
            foreign.len(),
            foreign.iter().map(|(id, why)| format!("| `{id}` | {why} |\n")).collect::<String>()
        ));
    }
    if !outside_grid.is_empty() {
        extra.push_str(&format!(
            "## Cells outside the grid\n\n{} cell folder(s) under `cells/` are not cells of this run's grid and are \
             left out of every table and verdict (copied in, or left by another grid): {}. Move them away, or run \
             their own grid into another folder.\n\n",
            outside_grid.len(),
            outside_grid.iter().map(|id| format!("`{id}`")).collect::<Vec<_>>().join(", ")
        ));
    }
    let other_builds = run.other_builds();
    if !other_builds.is_empty() {
        tracing::warn!(
            cells = %other_builds.iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>().join(", "),
            "{} finished cell(s) in {} were computed by another build than its manifest.json records, or on \
             other data than their peers; report.md names them and what differs",
            other_builds.len(),
            run.dir.display()
        );
        extra.push_str(&format!(
            "## Cells from another build\n\n{} finished cell(s) were computed by another build than the one \
             `manifest.json` records, or on other data than the other cells of their data configuration (each \
             cell's `status.json` names the libraries and the data that computed it). They are in the tables, but \
             their numbers may differ from this run's beyond seed noise; to report one build only, delete their \
             `status.json` and run the grid again.\n\n| cell | what differs |\n| --- | --- |\n{}\n",
            other_builds.len(),
            other_builds.iter().map(|(id, why)| format!("| `{id}` | {why} |\n")).collect::<String>()
        ));
    }
    extra
}

/// Puts the sections from stored predictions before `## Missing cells` (or `## Plots`, or at the
/// end), and says which metrics were recomputed from stored predictions.
fn insert_sections(mut text: String, sections: &str, run: &load::Run) -> String {
    let recomputed =
        run.cells.iter().filter(|c| c.metrics.as_ref().is_some_and(|m| m.recomputed_from.is_some())).count();
    let mut extra = sections.to_string();
    if recomputed > 0 {
        extra.push_str(&format!(
            "## Recomputed metrics\n\nThe ensemble metrics, growth curve and per-member test log-likelihood of \
             {recomputed} cell(s) were recomputed from their stored predictions (`ablate report --recompute`); \
             diagnostics and acceptance come from the run. The reference, OOD and convergence sections always use \
             the stored predictions.\n\n"
        ));
    }
    if extra.is_empty() {
        return text;
    }
    let at = ["## Missing cells", "## Plots"].iter().find_map(|h| text.find(&format!("\n{h}")).map(|i| i + 1));
    match at {
        Some(i) => text.insert_str(i, &extra),
        None => text.push_str(&extra),
    }
    text
}

fn create_dir(dir: &Path) -> Result<(), ReportError> {
    std::fs::create_dir_all(dir).map_err(|source| ReportError::Write { path: dir.to_path_buf(), source })
}

#[cfg(test)]
mod write_errors {
    use super::ReportError;

    /// A write the folder refuses, or a full disk, says how to write the report elsewhere.
    #[test]
    fn a_refused_or_full_write_names_the_remedy() {
        let path = std::path::PathBuf::from("/runs/x/report");
        for kind in [std::io::ErrorKind::PermissionDenied, std::io::ErrorKind::StorageFull] {
            let e = ReportError::Write { path: path.clone(), source: kind.into() };
            assert!(e.to_string().contains("pass `--out DIR` to write the report elsewhere"), "{e}");
        }
        let e = ReportError::Write { path, source: std::io::ErrorKind::Interrupted.into() };
        assert!(!e.to_string().contains("--out"), "{e}");
    }
}
