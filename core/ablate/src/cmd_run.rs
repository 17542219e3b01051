//! `ablate run`: check everything, plan the batches, then run the grid's cells in worker
//! processes. The parts: [`ablate_engine::planner`] (which cells share a worker),
//! [`crate::scheduler`] (starting and following workers), [`crate::progress`] (the display),
//! [`crate::worker_protocol`] (the runner's side of `ablate __cell`); this file wires them:
//! [`prepare`] (device, grid, plan, run folder, claim), [`pending_batches`] (what is left to run),
//! [`sizing`] (workers and threads) and [`finish`] (the summary and the report).

use std::collections::VecDeque;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use ablate_engine::planner::Plan;
use ablate_engine::DeviceChoice;
use ablate_grid::{Cell, Grid, Shard};
use ablate_store::{Claim, MachineInfo, Manifest, RunDir};
use anyhow::{bail, Context, Result};
use clap::Args;

use crate::common;
use crate::progress::Progress;
use crate::scheduler::{Batch, Counts, Scheduler};
use crate::signals;

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The grid file (JSON; `ablate grid schema` prints its format).
    grid: PathBuf,
    /// Parent folder of run folders; the run goes to `<OUT>/<grid name>/`.
    #[arg(long, default_value = "runs")]
    out: PathBuf,
    /// Cells run at the same time (default: cores / threads on CPU, one per GPU on CUDA).
    #[arg(long, short = 'j')]
    jobs: Option<usize>,
    /// Where tensors live: auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto", env = "ABLATE_DEVICE")]
    device: String,
    #[command(flatten)]
    plugins: crate::PluginDirs,
    /// Run only shard i of N (the batches of chains are dealt to N shards, largest first to the
    /// shard with the fewest chains; `ablate slurm` shows the split); `env` takes it from
    /// SLURM_ARRAY_TASK_ID/SLURM_ARRAY_TASK_COUNT, `env/N` from JOB_COMPLETION_INDEX.
    #[arg(long, value_name = "i/N")]
    shard: Option<String>,
    /// Do not write the report at the end (for shards; merge later with `ablate report`).
    #[arg(long)]
    no_report: bool,
    /// libtorch threads per worker (default: max(1, cores / jobs)).
    #[arg(long)]
    threads: Option<usize>,
    /// Most cells per worker run as batched chains (cells that differ only in temperature and
    /// seed, with a batchable integrator and prior); 1 runs every cell alone. Default: up to 32,
    /// cut so that every worker gets a batch for compute-bound MLPs on the CPU (one per core)
    /// and on CUDA (one per GPU). Give the K the run printed to reproduce its plan.
    #[arg(long, value_name = "K")]
    batch_chains: Option<usize>,
    /// Batch convolutional models on the CPU too (the default on CUDA). Off by default because
    /// libtorch's grouped convolutions on a CPU can make a batch slower than its chains run one
    /// by one (reports/results/performance.md)
    #[arg(long)]
    batch_conv: bool,
}

fn parse_shard(s: &str) -> Result<Option<Shard>> {
    if s == "env" || s.starts_with("env/") {
        let count = match s.strip_prefix("env/") {
            Some(n) => Some(n.parse::<usize>().with_context(|| format!("--shard {s}: {n:?} is not a shard count"))?),
            None => None,
        };
        let shard = Shard::from_env(count)?;
        if shard.is_none() {
            bail!("--shard {s}: neither SLURM_ARRAY_TASK_ID nor JOB_COMPLETION_INDEX is set; use --shard i/N");
        }
        return Ok(shard);
    }
    Ok(Some(Shard::parse(s)?))
}

/// Everything decided before the first worker starts.
struct Setup {
    shard: Option<Shard>,
    device: tch::Device,
    /// GPUs the scheduler deals (0 on the CPU and with `--device cuda:N`).
    deal_gpus: usize,
    /// GPUs visible (0 on the CPU).
    gpus: usize,
    cores: usize,
    grid: Grid,
    plan: Plan,
    /// Indices into `plan.batches` of this runner's batches.
    mine: Vec<usize>,
    run: RunDir,
}

pub fn run(args: RunArgs, verbosity: crate::Verbosity) -> Result<ExitCode> {
    let wall = Instant::now();
    let (setup, claim) = prepare(&args)?;
    let mut counts = Counts::default();
    let (mut pending, note) = pending_batches(&setup, &mut counts)?;
    check_cell_data(&setup.run, &setup.grid.cells, &pending)?;
    let to_run: usize = pending.iter().map(Batch::unfinished).sum();
    let (jobs, threads) = sizing(&args, &setup, pending.len());
    let progress = Progress::new(verbosity.quiet, to_run);
    let selected: usize = setup.mine.iter().map(|&b| setup.plan.batches[b].len()).sum();
    progress.say(format!(
        "ablate: grid `{}`: {} cells{}, {} finished (skipped), {} to run{note} on {} with {} worker(s) x {} thread(s) -> {}",
        setup.grid.name,
        setup.grid.cells.len(),
        setup.shard.map(|s| format!(" ({selected} in shard {s})")).unwrap_or_default(),
        counts.skipped,
        to_run,
        ablate_engine::device::name(setup.device),
        jobs,
        threads,
        setup.run.path().display()
    ));
    if setup.plan.batches.iter().any(|b| b.len() > 1) {
        progress.say(format!(
            "ablate: plan: {} batch(es) of at most {} chains over the grid (`--batch-chains {}` reproduces it)",
            setup.plan.batches.len(),
            setup.plan.cap,
            setup.plan.cap
        ));
    }
    let scheduler = Scheduler {
        exe: std::env::current_exe().context("finding the ablate binary to start workers")?,
        run: &setup.run,
        cells: &setup.grid.cells,
        device: setup.device,
        gpus: setup.deal_gpus,
        jobs,
        threads,
        plugin_dirs: &args.plugins.dirs,
        verbose: verbosity.verbose,
    };
    scheduler.run(&mut pending, &progress, &mut counts)?;
    progress.finish();
    drop(claim);
    let not_started: usize = pending.iter().map(Batch::unfinished).sum();
    finish(&args, &setup, &counts, wall.elapsed().as_secs_f64(), not_started)
}

/// Device, checked grid and plugins, the plan and this runner's share of it, the run folder
/// (manifest, grid copy) and the claim on its cells (held until the workers are done).
fn prepare(args: &RunArgs) -> Result<(Setup, Claim)> {
    let shard = args.shard.as_deref().map(parse_shard).transpose()?.flatten();
    let choice: DeviceChoice = args.device.parse()?;
    let device = ablate_engine::device::resolve(choice)?;
    let gpus = match device {
        tch::Device::Cuda(_) => tch::Cuda::device_count().max(1) as usize,
        _ => 0,
    };
    // `--device cuda:N` pins every worker to GPU N; auto/cuda spreads them over all GPUs.
    let deal_gpus = if args.device.starts_with("cuda:") { 0 } else { gpus };
    let (grid, registry) = common::load_checked(&args.grid, &args.plugins.dirs)?;
    refuse_unrunnable_precision(&grid, device)?;
    let grid_text = std::fs::read_to_string(&args.grid).with_context(|| format!("reading {}", args.grid.display()))?;
    // Batches over the whole grid, so that shards and reruns form the same batches.
    let cores = common::cores();
    let plan = plan_batches(&grid.cells, args, device, cores, deal_gpus, &registry);
    let mine: Vec<usize> = match shard {
        Some(s) => {
            let owner = ablate_engine::planner::deal(&plan.sizes(), s.count);
            (0..plan.batches.len()).filter(|&b| owner[b] == s.index).collect()
        }
        None => (0..plan.batches.len()).collect(),
    };
    let run_path = args.out.join(&grid.name);
    let manifest = Manifest {
        grid_file: args.grid.display().to_string(),
        grid_sha256: ablate_store::sha256_bytes(grid_text.as_bytes()),
        ablate_version: common::VERSION.to_owned(),
        git_revision: common::git_revision(),
        libtorch_version: Some(common::libtorch_version()),
        device: ablate_engine::device::name(device),
        plugins: common::plugin_infos(&registry),
        machine: MachineInfo::current(),
        created: ablate_store::now_rfc3339(),
        command: ablate_store::command_line(),
        cwd: std::env::current_dir().ok().map(|d| d.display().to_string()),
    };
    let run = RunDir::create_or_open(&run_path, &manifest, &grid_text)
        .with_context(|| format!("preparing run folder {}", run_path.display()))?;
    run.check_cell_builds(&|kind, name| common::loaded_library(&registry, kind, name), &|id| {
        grid.cells.iter().any(|c| c.id == id)
    })
    .with_context(|| format!("resuming run folder {}", run_path.display()))?;
    drop(registry);
    // One scheme for whole runs and shards: the runner claims its cells; a live runner holding
    // any of them refuses this one (shards of one split share the folder).
    let what = match shard {
        Some(s) if s.count > 1 => format!("shard {s}"),
        _ => "whole grid".to_owned(),
    };
    let cells: Vec<(usize, &str)> =
        mine.iter().flat_map(|&b| plan.batches[b].iter().map(|&i| (i, grid.cells[i].id.as_str()))).collect();
    let claim = run.claim(&what, &cells).with_context(|| format!("claiming the cells of {}", run.path().display()))?;
    Ok((Setup { shard, device, deal_gpus, gpus, cores, grid, plan, mine, run }, claim))
}

/// Refuses to resume when the cells this runner is about to run would load other data than
/// finished cells of the same data configuration were computed on (their recorded
/// fingerprint): a data file replaced, or a relative `data.path` read from another current
/// folder. One load per data configuration that has both a pending cell and a record.
fn check_cell_data(run: &RunDir, cells: &[ablate_grid::Cell], pending: &VecDeque<Batch>) -> Result<()> {
    let key = |c: &ablate_grid::Cell| ablate_engine::data_key(&c.config);
    let to_run: std::collections::HashSet<String> =
        pending.iter().flat_map(|b| b.cells.iter().filter(|c| !b.discard.contains(&c.id)).map(|c| key(c))).collect();
    if to_run.is_empty() {
        return Ok(());
    }
    let recorded = run.recorded_data()?;
    let mut checked = std::collections::HashSet::new();
    for (id, sha) in &recorded {
        let Some(cell) = cells.iter().find(|c| &c.id == id) else { continue };
        let k = key(cell);
        if !to_run.contains(&k) || !checked.insert(k) {
            continue;
        }
        let now = ablate_engine::load_cell_data(&cell.config)
            .with_context(|| format!("loading the data of finished cell {id} to check it has not changed"))?
            .sha256();
        if &now != sha {
            let d = &cell.config.data;
            let path = d.path.as_deref().map(|p| {
                let shown = std::path::absolute(p).map(|a| a.display().to_string()).unwrap_or_else(|_| p.to_owned());
                format!(" from {p} (read as {shown})")
            });
            bail!(
                "run folder {}: finished cell {id} was computed on other data than dataset `{}`{} gives now \
                 (sha256 {} recorded, {} now): the data changed, or a relative data.path is read from another \
                 folder than before. Resuming would mix two datasets in one report: restore the data (or run from \
                 the folder the run started in), or run into another folder (`--out OTHER`)",
                run.path().display(),
                d.dataset,
                path.unwrap_or_default(),
                &sha[..12.min(sha.len())],
                &now[..12]
            );
        }
    }
    Ok(())
}

/// Cells whose `precision` the device cannot compute (`tf32` off CUDA) stop the run (or the
/// job-array script) before anything runs, naming how many and the first one.
pub fn refuse_unrunnable_precision(grid: &ablate_grid::Grid, device: tch::Device) -> Result<()> {
    let mut bad = grid
        .cells
        .iter()
        .filter_map(|c| ablate_engine::compute::device_problem(c.config.precision, device).map(|p| (c, p)));
    if let Some((first, problem)) = bad.next() {
        let labels = serde_json::to_string(&first.labels).unwrap_or_default();
        anyhow::bail!(
            "{}: {} cell(s) cannot run here, e.g. cell {} {labels}: {problem}",
            grid.name,
            1 + bad.count(),
            first.id
        );
    }
    Ok(())
}

/// This runner's batches that still have an unfinished cell. A batch with an unfinished cell
/// runs whole: its finished cells run again as chains whose outputs are discarded, so every
/// chain sees the batch it had the first time (plugins that draw from libtorch's generator, or
/// grouped convolutions, make a chain depend on its mates). Also the note for the first line.
fn pending_batches<'s>(setup: &'s Setup, counts: &mut Counts) -> Result<(VecDeque<Batch<'s>>, String)> {
    let mut pending: VecDeque<Batch> = VecDeque::new();
    let (mut damaged_cells, mut foreign_cells) = (0, 0);
    for &b in &setup.mine {
        let mut batch = Batch { cells: Vec::new(), discard: Vec::new() };
        for &i in &setup.plan.batches[b] {
            let cell = &setup.grid.cells[i];
            // Finished with intact results: a `done` cell without readable metrics runs again,
            // and so does a finished folder that holds another cell's config or labels (copied
            // in, or edited by hand). (A failed cell is finished too: it is skipped, and counted
            // apart.)
            let (finished, damaged, failed) = match setup.run.existing_cell(&cell.id)? {
                Some(dir) => {
                    let status = dir.read_status().ok().flatten();
                    let mut complete = dir.is_complete()?;
                    // Results (not a failure, which may have come before the worker wrote its
                    // files) must be this cell's.
                    if complete && status.as_ref().is_some_and(ablate_store::CellStatus::has_results) {
                        if let Some(why) = dir.other_cells_files(&cell.config, &cell.labels)? {
                            tracing::warn!(cell = %cell.id, "{}: {why}; the cell runs again", dir.path().display());
                            foreign_cells += 1;
                            complete = false;
                        }
                    }
                    let was_finished = status.as_ref().is_some_and(ablate_store::CellStatus::is_finished);
                    let failed = status.is_some_and(|s| s.status == ablate_store::CellState::Failed);
                    (complete, !complete && was_finished, complete && failed)
                }
                None => (false, false, false),
            };
            damaged_cells += usize::from(damaged);
            if finished {
                counts.skipped += 1;
                counts.skipped_failed += usize::from(failed);
                batch.discard.push(cell.id.clone());
            }
            batch.cells.push(cell);
        }
        if batch.unfinished() > 0 {
            pending.push_back(batch);
        }
    }
    let mut note = format!("{}{}", pending_note(&pending), setup.plan.note);
    let unreadable = damaged_cells - foreign_cells;
    if unreadable > 0 {
        note.push_str(&format!(" [{unreadable} cell(s) marked finished without a readable metrics.json run again]"));
    }
    if foreign_cells > 0 {
        note.push_str(&format!(
            " [{foreign_cells} finished cell folder(s) holding another cell's config.json or labels.json run again]"
        ));
    }
    Ok((pending, note))
}

/// Workers and threads per worker: `--jobs`/`--threads` when given; else one worker per GPU on
/// CUDA (one with `--device cuda:N`), one per core on the CPU; never more workers than batches;
/// threads share the cores.
fn sizing(args: &RunArgs, setup: &Setup, batches: usize) -> (usize, usize) {
    let jobs = match (args.jobs, args.threads) {
        (Some(j), _) => j.max(1),
        (None, _) if setup.gpus > 0 => setup.deal_gpus.max(1),
        (None, Some(t)) => (setup.cores / t.max(1)).max(1),
        (None, None) => setup.cores,
    }
    .min(batches.max(1));
    let threads = args.threads.unwrap_or((setup.cores / jobs).max(1)).max(1);
    (jobs, threads)
}

/// The last lines (interrupted, or finished with the counts) and the report; the exit status.
fn finish(args: &RunArgs, setup: &Setup, counts: &Counts, elapsed: f64, not_started: usize) -> Result<ExitCode> {
    let run = &setup.run;
    if signals::interrupted() {
        eprintln!(
            "ablate: interrupted after {}: {} done, {} failed, {} diverged, {} skipped, {} stopped, {not_started} not started.\n  \
             Resume with the same command: {}",
            human_duration(elapsed),
            counts.done,
            counts.failed,
            counts.diverged,
            counts.skipped,
            counts.interrupted,
            ablate_store::command_line()
        );
        return Ok(ExitCode::from(130));
    }
    println!(
        "ablate: grid `{}` finished in {}: {} done, {} failed, {} diverged, {} skipped (already finished)\n  outputs: {}",
        setup.grid.name,
        human_duration(elapsed),
        counts.done,
        counts.failed,
        counts.diverged,
        counts.skipped,
        run.path().join(ablate_store::CELLS).display()
    );
    if counts.failed > 0 {
        println!("  failed cells: see status.json (and worker.log, where the worker wrote to stderr) in their folders; fix the cause and rerun to retry them after deleting their status.json");
    }
    if counts.skipped_failed > 0 {
        println!(
            "  {} of the skipped cells failed in an earlier run and were not retried (`ablate status {}` lists them); \
             fix the cause, delete their status.json and rerun to retry them",
            counts.skipped_failed,
            run.path().display()
        );
    }
    if counts.interrupted > 0 {
        println!(
            "  {} cell(s) interrupted: their worker was killed from outside (the out-of-memory killer? see `dmesg`) \
             or could not write the run folder (a full disk; the lines above say which); the same command runs them \
             again: {}",
            counts.interrupted,
            ablate_store::command_line()
        );
    }
    if args.no_report {
        println!("  report skipped (--no-report); merge with: ablate report {}", run.path().display());
    } else {
        let expected: Vec<String> = setup.grid.cells.iter().map(|c| c.id.clone()).collect();
        let summary = ablate_reports::write_report(
            run.path(),
            &ablate_reports::ReportOptions {
                expected_cells: Some(expected),
                foreign_cells: common::foreign_cells(run, &setup.grid.cells)?,
                out_dir: None,
                skip_plots: false,
            },
        )
        .with_context(|| format!("writing the report of {}", run.path().display()))?;
        println!("  report: {}", summary.report_md.display());
        if !summary.missing.is_empty() {
            println!("  missing cells (other shards or unfinished): {}", summary.missing.len());
        }
    }
    let failed = counts.failed + counts.skipped_failed;
    Ok(if failed > 0 || counts.interrupted > 0 { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

/// What the pending batches run, for the run's first line: how many cells run as batched
/// chains and how many finished batch-mates run again (discarded) to re-form their batch.
fn pending_note(pending: &VecDeque<Batch<'_>>) -> String {
    let batched: Vec<&Batch> = pending.iter().filter(|b| b.cells.len() > 1).collect();
    if batched.is_empty() {
        return String::new();
    }
    let chains: usize = batched.iter().map(|b| b.cells.len() - b.discard.len()).sum();
    let again: usize = batched.iter().map(|b| b.discard.len()).sum();
    let mates = if again > 0 {
        format!(", with {again} finished batch-mate(s) recomputed and discarded so that each batch is the one it was")
    } else {
        String::new()
    };
    format!(" ({chains} of them as {} batch(es) of chains{mates})", batched.len())
}

/// The plan of this run ([`ablate_engine::planner`]): `--batch-chains K` caps batches at K
/// exactly; without it the cap (at most 32) leaves every worker a batch when the grid's chains
/// are compute-bound on the CPU (one single-threaded worker per core beats one batch on all
/// threads there) and every GPU one on CUDA. The plan does not depend on `--shard`, so a shard
/// forms the batches of the whole run (`ablate slurm` writes the K that splits a grid for its
/// array tasks into the script).
fn plan_batches(
    cells: &[Cell],
    args: &RunArgs,
    device: tch::Device,
    cores: usize,
    gpus: usize,
    registry: &ablate_plugin_host::Registry,
) -> ablate_engine::planner::Plan {
    let workers = if device.is_cuda() {
        args.jobs.unwrap_or(gpus.max(1))
    } else if cells.iter().any(|c| ablate_engine::planner::compute_bound(&c.config)) {
        args.jobs.unwrap_or(cores / args.threads.unwrap_or(1).max(1))
    } else {
        1
    };
    let opts = ablate_engine::planner::PlanOptions {
        max_chains: args.batch_chains.unwrap_or(32),
        conv: args.batch_conv || device.is_cuda(),
        min_batches: if args.batch_chains.is_some() { 1 } else { workers.max(1) },
    };
    let plan = ablate_engine::planner::plan(cells, &opts, registry);
    tracing::info!(cap = plan.cap, batches = plan.batches.len(), "batch plan");
    plan
}

pub fn human_duration(s: f64) -> String {
    if s < 120.0 {
        format!("{s:.1}s")
    } else if s < 7200.0 {
        format!("{:.1} min", s / 60.0)
    } else {
        format!("{:.1} h", s / 3600.0)
    }
}
