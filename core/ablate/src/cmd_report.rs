//! `ablate report`: merge the cells of a run folder (any shards) into a report.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The run folder (`runs/<grid name>`).
    run_dir: PathBuf,
    /// Where to write the report (default: <RUN_DIR>/report).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Skip the SVG plots.
    #[arg(long)]
    no_plots: bool,
    /// First recompute each done cell's ensemble metrics, growth curve and member
    /// log-likelihoods from its stored predictions (`eval.store_predictions`), rewriting its
    /// metrics.json (marked `recomputed_from`); cells without stored predictions keep theirs.
    #[arg(long)]
    recompute: bool,
}

pub fn run(args: ReportArgs) -> Result<ExitCode> {
    let run = ablate_store::RunDir::open(&args.run_dir).with_context(|| {
        format!(
            "{} is not a run folder (no manifest.json); pass the folder `ablate run` wrote, e.g. runs/<grid name>",
            args.run_dir.display()
        )
    })?;
    if args.recompute {
        let (done, without) = recompute(&run)?;
        println!("recomputed the metrics of {done} cell(s) from stored predictions ({without} done cell(s) have none)");
    }
    let grid_path = run.path().join(ablate_store::GRID);
    let mut foreign_cells = Vec::new();
    let expected = match ablate_grid::Grid::from_path(&grid_path) {
        Ok(grid) => {
            foreign_cells = crate::common::foreign_cells(&run, &grid.cells)?;
            Some(grid.cells.iter().map(|c| c.id.clone()).collect::<Vec<_>>())
        }
        Err(e) => {
            tracing::warn!(
                "cannot expand {} ({e}); reporting the cells found without a list of missing ones",
                grid_path.display()
            );
            None
        }
    };
    let n_expected = expected.as_ref().map(Vec::len);
    let summary = ablate_reports::write_report(
        run.path(),
        &ablate_reports::ReportOptions {
            expected_cells: expected,
            foreign_cells,
            out_dir: args.out.clone(),
            skip_plots: args.no_plots,
        },
    )
    .with_context(|| format!("writing the report of {}", run.path().display()))?;
    println!(
        "report of {}: {} cell folders found{}: {} done, {} failed, {} diverged",
        run.path().display(),
        summary.cells_found,
        n_expected.map(|n| format!(" of {n} expected")).unwrap_or_default(),
        summary.cells_done,
        summary.cells_failed,
        summary.cells_diverged
    );
    for v in &summary.verdicts {
        println!(
            "  cold posterior effect, {}: nll {}, accuracy {}",
            v.level,
            v.nll.outcome.as_str(),
            v.accuracy.outcome.as_str()
        );
    }
    if !summary.missing.is_empty() {
        println!(
            "  missing (not finished) cells: {}: {}",
            summary.missing.len(),
            crate::common::preview(&summary.missing, 10)
        );
        println!("  run the remaining shards (or `ablate run` the grid again) to fill them in");
    }
    println!("  report: {}", summary.report_md.display());
    println!("  tables: {}, {}", summary.summary_csv.display(), summary.results_parquet.display());
    Ok(ExitCode::SUCCESS)
}

/// `--recompute`: (cells recomputed, done cells without stored predictions).
fn recompute(run: &ablate_store::RunDir) -> Result<(usize, usize)> {
    use ablate_store::npy::{read_f32, read_i64, PREDICTIONS, TEST_LABELS};
    let (mut done, mut without) = (0, 0);
    for cell in run.list_cells()? {
        if !matches!(cell.read_status()?, Some(s) if s.status == ablate_store::CellState::Done) {
            continue;
        }
        let path = cell.path().join(PREDICTIONS);
        let Some(probs) = read_f32(&path)? else {
            without += 1;
            continue;
        };
        let labels_path = cell.path().join(TEST_LABELS);
        let labels = read_i64(&labels_path)?.with_context(|| {
            format!("{} is missing beside {}; rerun the cell", labels_path.display(), path.display())
        })?;
        let config: ablate_grid::CellConfig = cell
            .read_json(ablate_store::CONFIG)?
            .with_context(|| format!("cell {} has no {}", cell.id(), ablate_store::CONFIG))?;
        let mut metrics: ablate_engine::FinalMetrics = cell
            .read_json(ablate_store::METRICS)?
            .with_context(|| format!("cell {} is done but has no {}", cell.id(), ablate_store::METRICS))?;
        let classes = probs.shape.last().copied().unwrap_or(0);
        ablate_engine::predictions::recompute(
            &mut metrics,
            &probs.data,
            &labels.data,
            classes,
            config.eval.ece_bins,
            PREDICTIONS,
        )
        .with_context(|| format!("recomputing {}", path.display()))?;
        cell.write_json(ablate_store::METRICS, &metrics)?;
        done += 1;
    }
    Ok((done, without))
}
