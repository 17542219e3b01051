//! `ablate run`: check everything, then run the grid's cells in worker processes.

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitCode, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ablate_engine::DeviceChoice;
use ablate_grid::{Cell, Shard};
use ablate_records::Event;
use ablate_store::{CellState, CellStatus, MachineInfo, Manifest, RunDir};
use anyhow::{bail, Context, Result};
use clap::Args;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::common;
use crate::signals;

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The grid file (JSON; `ablate grid schema` prints its format).
    grid: PathBuf,
    /// Parent folder of run folders; the run goes to <OUT>/<grid name>/.
    #[allow(rustdoc::invalid_html_tags)] // placeholders of the --help text
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
    /// Batch convolutional models on the CPU too (the default on CUDA). On this project's CPU
    /// machine grouped convolutions made a batch slower than its chains run one by one.
    #[arg(long)]
    batch_conv: bool,
}

struct Worker {
    /// Indices of its cells in the grid (several: batched chains).
    cells: Vec<usize>,
    child: Child,
    bar: ProgressBar,
    started: Instant,
    gpu: Option<usize>,
    stderr_tail: Arc<Mutex<Tail>>,
    readers: Vec<std::thread::JoinHandle<()>>,
    /// Accuracy and NLL each cell reported at its end.
    last: HashMap<String, (Option<f64>, Option<f64>)>,
}

/// The last lines a worker wrote to stderr, and the first lines that say why it failed (a
/// panic's message, a libtorch exception, an `error:` line), which a backtrace
/// (`RUST_BACKTRACE=1`) would push out of the tail.
#[derive(Default)]
struct Tail {
    lines: VecDeque<String>,
    cause: Vec<String>,
    /// Still collecting the lines of a panic message into `cause`.
    in_panic: bool,
}

impl Tail {
    const KEEP: usize = 40;
    const CAUSE_LINES: usize = 6;
    fn push(&mut self, line: String) {
        self.note_cause(&line);
        if self.lines.len() == Self::KEEP {
            self.lines.pop_front();
        }
        self.lines.push_back(line);
    }

    fn note_cause(&mut self, line: &str) {
        let t = line.trim();
        if self.in_panic {
            let backtrace = t.starts_with("stack backtrace:") || t.starts_with("note: ") || is_frame(t);
            if backtrace || t.is_empty() || self.cause.len() >= Self::CAUSE_LINES {
                self.in_panic = false;
            } else {
                self.cause.push(t.to_owned());
            }
            return;
        }
        if !self.cause.is_empty() {
            return; // the first cause wins
        }
        if t.contains(" panicked at ") {
            self.cause.push(t.to_owned());
            self.in_panic = true;
        } else if t.starts_with("what():") || t.starts_with("error:") || t.starts_with("Error:") {
            self.cause.push(t.to_owned());
        }
    }

    /// Why the worker failed, in a few lines: the recorded cause, else the last lines that are
    /// not backtrace frames.
    fn cause_text(&self, n: usize) -> String {
        if !self.cause.is_empty() {
            return self.cause.join("\n");
        }
        let kept: Vec<&String> = self.lines.iter().filter(|l| !is_frame(l.trim())).collect();
        let skip = kept.len().saturating_sub(n);
        kept.into_iter().skip(skip).cloned().collect::<Vec<_>>().join("\n")
    }
    fn text(&self, n: usize) -> String {
        let skip = self.lines.len().saturating_sub(n);
        self.lines.iter().skip(skip).cloned().collect::<Vec<_>>().join("\n")
    }
}

#[derive(Default)]
struct Counts {
    done: usize,
    failed: usize,
    diverged: usize,
    skipped: usize,
    interrupted: usize,
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

// TODO(split): longer than the workspace's too_many_lines threshold.
#[allow(clippy::too_many_lines)]
pub fn run(args: RunArgs, verbosity: crate::Verbosity) -> Result<ExitCode> {
    let wall = Instant::now();
    let shard = args.shard.as_deref().map(parse_shard).transpose()?.flatten();
    let choice: DeviceChoice = args.device.parse()?;
    let device = ablate_engine::device::resolve(choice)?;
    let gpus = match device {
        tch::Device::Cuda(_) => tch::Cuda::device_count().max(1) as usize,
        _ => 0,
    };
    // `--device cuda:N` pins every worker to GPU N; auto/cuda spreads them over all GPUs.
    let pinned_gpu = args.device.starts_with("cuda:");

    let (grid, registry) = common::load_checked(&args.grid, &args.plugins.dirs)?;
    let grid_text = std::fs::read_to_string(&args.grid).with_context(|| format!("reading {}", args.grid.display()))?;
    // Batches over the whole grid, so that shards and reruns form the same batches.
    let cores = common::cores();
    let plan = plan_batches(&grid.cells, &args, device, cores, gpus, &registry);
    let selected: Vec<&Vec<usize>> = match shard {
        Some(s) => plan.shard(s.index, s.count),
        None => plan.batches.iter().collect(),
    };
    let batch_note = plan.note.clone();

    let run_path = args.out.join(&grid.name);
    let manifest = Manifest {
        grid_file: args.grid.display().to_string(),
        grid_sha256: ablate_store::sha256_bytes(grid_text.as_bytes()),
        ablate_version: common::VERSION.to_owned(),
        git_revision: common::git_revision(),
        libtorch_version: Some(common::libtorch_version()),
        device: device_name(device),
        plugins: common::plugin_infos(&registry),
        machine: MachineInfo::current(),
        created: ablate_store::now_rfc3339(),
        command: ablate_store::command_line(),
    };
    let run = RunDir::create_or_open(&run_path, &manifest, &grid_text)
        .with_context(|| format!("preparing run folder {}", run_path.display()))?;
    // One scheme for whole runs and shards: the runner claims its cells; a live runner holding
    // any of them refuses this one (shards of one split share the folder).
    let what = match shard {
        Some(s) if s.count > 1 => format!("shard {s}"),
        _ => "whole grid".to_owned(),
    };
    let mine: Vec<(usize, &str)> =
        selected.iter().flat_map(|g| g.iter().map(|&i| (i, grid.cells[i].id.as_str()))).collect();
    let _claim = run.claim(&what, &mine).with_context(|| format!("claiming the cells of {}", run.path().display()))?;
    drop(registry);

    let mut counts = Counts::default();
    // A batch with an unfinished cell runs whole: its finished cells run again as chains whose
    // outputs are discarded, so every chain sees the batch it had the first time (plugins that
    // draw from libtorch's generator, or grouped convolutions, make a chain depend on its mates).
    let mut pending: VecDeque<Batch> = VecDeque::new();
    let mut to_run = 0;
    let mut damaged_cells = 0;
    for group in &selected {
        let mut batch = Batch { cells: Vec::new(), discard: Vec::new() };
        for &i in group.iter() {
            let cell = &grid.cells[i];
            // Finished with intact results: a `done` cell without readable metrics runs again.
            let (finished, damaged) = match run.existing_cell(&cell.id)? {
                Some(dir) => {
                    let complete = dir.is_complete()?;
                    (complete, !complete && dir.is_finished().unwrap_or(false))
                }
                None => (false, false),
            };
            damaged_cells += usize::from(damaged);
            if finished {
                counts.skipped += 1;
                batch.discard.push(cell.id.clone());
            }
            batch.cells.push(cell);
        }
        let unfinished = batch.cells.len() - batch.discard.len();
        if unfinished > 0 {
            to_run += unfinished;
            pending.push_back(batch);
        }
    }
    let selected_cells: usize = selected.iter().map(|g| g.len()).sum();
    let mut batch_note = format!("{}{batch_note}", pending_note(&pending));
    if damaged_cells > 0 {
        batch_note
            .push_str(&format!(" [{damaged_cells} cell(s) marked finished without a readable metrics.json run again]"));
    }

    let jobs = match (args.jobs, args.threads) {
        (Some(j), _) => j.max(1),
        (None, _) if gpus > 0 => {
            if pinned_gpu {
                1
            } else {
                gpus
            }
        }
        (None, Some(t)) => (cores / t.max(1)).max(1),
        (None, None) => cores,
    }
    .min(pending.len().max(1));
    let threads = args.threads.unwrap_or((cores / jobs).max(1)).max(1);

    let quiet = verbosity.quiet;
    let show_bars = !quiet && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let mp = MultiProgress::with_draw_target(if show_bars {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    });
    let say = |mp: &MultiProgress, line: String| {
        if quiet {
            return;
        }
        if show_bars {
            let _ = mp.println(line);
        } else {
            eprintln!("{line}");
        }
    };
    say(
        &mp,
        format!(
            "ablate: grid `{}`: {} cells{}, {} finished (skipped), {} to run{} on {} with {} worker(s) x {} thread(s) -> {}",
            grid.name,
            grid.cells.len(),
            shard.map(|s| format!(" ({selected_cells} in shard {s})")).unwrap_or_default(),
            counts.skipped,
            to_run,
            batch_note,
            device_name(device),
            jobs,
            threads,
            run.path().display()
        ),
    );

    if plan.batches.iter().any(|b| b.len() > 1) {
        say(
            &mp,
            format!(
                "ablate: plan: {} batch(es) of at most {} chains over the grid (`--batch-chains {}` reproduces it)",
                plan.batches.len(),
                plan.cap,
                plan.cap
            ),
        );
    }

    let grid_bar = mp.add(ProgressBar::new(to_run as u64));
    grid_bar.set_style(
        ProgressStyle::with_template("{prefix:.bold} [{bar:30.cyan/blue}] {pos}/{len} cells  {msg}  ETA {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    grid_bar.set_prefix("grid");
    let cell_style = ProgressStyle::with_template("  {prefix} {bar:20} {pos}/{len} epochs {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar());

    signals::install();
    let exe = std::env::current_exe().context("finding the ablate binary to start workers")?;
    let (tx, rx) = mpsc::channel::<(u32, Event)>();
    let mut running: HashMap<u32, Worker> = HashMap::new();
    let mut free_gpus: Vec<usize> = (0..gpus).rev().collect();
    let total = to_run;
    let update_grid = |bar: &ProgressBar, c: &Counts, running: usize| {
        bar.set_message(format!("done {} failed {} diverged {} running {}", c.done, c.failed, c.diverged, running));
    };

    loop {
        while !signals::interrupted() && running.len() < jobs {
            let Some(batch) = pending.pop_front() else {
                break;
            };
            let group = &batch.cells;
            let runs = |c: &Cell| !batch.discard.contains(&c.id);
            let Some(&cell) = group.iter().find(|c| runs(c)) else {
                continue;
            };
            let gpu = if gpus > 0 && !pinned_gpu { free_gpus.pop() } else { None };
            let dev = match (gpu, device) {
                (Some(_), _) => "cuda:0".to_owned(),
                (None, tch::Device::Cuda(i)) => format!("cuda:{i}"),
                _ => "cpu".to_owned(),
            };
            let mut cmd = Command::new(&exe);
            if let Some(g) = gpu {
                // Each worker sees its own GPU only (as device 0).
                let parent = std::env::var("CUDA_VISIBLE_DEVICES").ok();
                cmd.env("CUDA_VISIBLE_DEVICES", worker_visible_gpu(parent.as_deref(), g));
            }
            cmd.arg("__cell")
                .arg("--run-dir")
                .arg(run.path())
                .args(group.iter().flat_map(|c| ["--cell", c.id.as_str()]))
                .args(batch.discard.iter().flat_map(|id| ["--discard", id.as_str()]))
                .arg("--device")
                .arg(&dev)
                .arg("--threads")
                .arg(threads.to_string())
                .arg("--watch-stdin");
            for d in &args.plugins.dirs {
                cmd.arg("--plugins").arg(d);
            }
            if verbosity.verbose > 0 {
                cmd.arg(format!("-{}", "v".repeat(verbosity.verbose as usize)));
            }
            cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
            let mut child =
                cmd.spawn().with_context(|| format!("starting a worker ({}) for cell {}", exe.display(), cell.id))?;
            let chains = if group.len() > 1 { format!(" +{} batched", group.len() - 1) } else { String::new() };
            let pid = child.id();
            let tail = Arc::new(Mutex::new(Tail::default()));
            let mut readers = Vec::new();
            if let Some(out) = child.stdout.take() {
                let tx = tx.clone();
                readers.push(std::thread::spawn(move || {
                    for line in BufReader::new(out).lines() {
                        let Ok(line) = line else { break };
                        if let Some(ev) = Event::from_line(&line) {
                            let _ = tx.send((pid, ev));
                        }
                    }
                }));
            }
            if let Some(err) = child.stderr.take() {
                let tail = Arc::clone(&tail);
                readers.push(std::thread::spawn(move || read_tail(err, &tail)));
            }
            let bar = mp.insert_before(&grid_bar, ProgressBar::new(cell.config.sampler.epochs as u64));
            bar.set_style(cell_style.clone());
            bar.set_prefix(format!("{} {}{chains}", cell.id, short_labels(cell)));
            running.insert(
                pid,
                Worker {
                    cells: group.iter().filter(|c| runs(c)).map(|c| c.index).collect(),
                    child,
                    bar,
                    started: Instant::now(),
                    gpu,
                    stderr_tail: tail,
                    readers,
                    last: HashMap::new(),
                },
            );
            update_grid(&grid_bar, &counts, running.len());
        }

        if running.is_empty() && (pending.is_empty() || signals::interrupted()) {
            break;
        }

        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok((pid, ev)) => {
                if let Some(w) = running.get_mut(&pid) {
                    match ev {
                        Event::Start { epochs, .. } => w.bar.set_length(epochs),
                        Event::Epoch { epoch, epochs, temperature, train_nll, .. } => {
                            w.bar.set_length(epochs);
                            w.bar.set_position(epoch);
                            w.bar.set_message(format!("loss {train_nll:.4} T {temperature:.3e}"));
                        }
                        Event::End { cell, accuracy, nll, .. } => {
                            w.last.insert(cell, (accuracy, nll));
                        }
                    }
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) | Err(mpsc::RecvTimeoutError::Disconnected) => {}
        }

        if signals::interrupted() {
            say(
                &mp,
                "ablate: interrupted; stopping the workers (their cells stay `running` and rerun next time)".into(),
            );
            stop_all(&mut running);
            for (_, w) in running.drain() {
                counts.interrupted += w.cells.len();
                w.bar.finish_and_clear();
            }
            break;
        }

        let exited: Vec<(u32, ExitStatus)> =
            running.iter_mut().filter_map(|(pid, w)| w.child.try_wait().ok().flatten().map(|s| (*pid, s))).collect();
        for (pid, status) in exited {
            let Some(mut w) = running.remove(&pid) else {
                continue;
            };
            for r in w.readers.drain(..) {
                let _ = r.join();
            }
            // Events still queued for this worker (its final line).
            while let Ok((p, ev)) = rx.try_recv() {
                if let (true, Event::End { cell, accuracy, nll, .. }) = (p == pid, ev) {
                    w.last.insert(cell, (accuracy, nll));
                }
            }
            if let Some(g) = w.gpu {
                free_gpus.push(g);
            }
            let killed_by_interrupt = status.signal().is_some_and(|s| s == signals::SIGINT || s == signals::SIGTERM);
            if signals::interrupted() || killed_by_interrupt && status.signal() == Some(signals::SIGINT) {
                signals::set_interrupted();
                counts.interrupted += w.cells.len();
                w.bar.finish_and_clear();
                continue;
            }
            w.bar.finish_and_clear();
            mp.remove(&w.bar);
            for &i in &w.cells {
                let line = finish_cell(&run, &grid.cells[i], &w, status, &mut counts)?;
                grid_bar.inc(1);
                update_grid(&grid_bar, &counts, running.len());
                say(&mp, format!("[{}/{}] {line}", grid_bar.position(), total));
            }
        }
    }
    grid_bar.finish_and_clear();
    drop(_claim);

    let elapsed = wall.elapsed().as_secs_f64();
    if signals::interrupted() {
        eprintln!(
            "ablate: interrupted after {}: {} done, {} failed, {} diverged, {} skipped, {} stopped, {} not started.\n  \
             Resume with the same command: {}",
            human_duration(elapsed),
            counts.done,
            counts.failed,
            counts.diverged,
            counts.skipped,
            counts.interrupted,
            pending.iter().map(|b| b.cells.len() - b.discard.len()).sum::<usize>(),
            ablate_store::command_line()
        );
        return Ok(ExitCode::from(130));
    }

    println!(
        "ablate: grid `{}` finished in {}: {} done, {} failed, {} diverged, {} skipped (already finished)\n  outputs: {}",
        grid.name,
        human_duration(elapsed),
        counts.done,
        counts.failed,
        counts.diverged,
        counts.skipped,
        run.path().join(ablate_store::CELLS).display()
    );
    if counts.failed > 0 {
        println!("  failed cells: see status.json (and worker.log) in their folders; fix the cause and rerun to retry them after deleting their status.json");
    }
    if counts.interrupted > 0 {
        println!(
            "  {} cell(s) interrupted: their worker was killed from outside (the out-of-memory killer? see `dmesg`); \
             the same command runs them again: {}",
            counts.interrupted,
            ablate_store::command_line()
        );
    }
    if args.no_report {
        println!("  report skipped (--no-report); merge with: ablate report {}", run.path().display());
    } else {
        let expected: Vec<String> = grid.cells.iter().map(|c| c.id.clone()).collect();
        let summary = ablate_reports::write_report(
            run.path(),
            &ablate_reports::ReportOptions { expected_cells: Some(expected), out_dir: None, skip_plots: false },
        )
        .with_context(|| format!("writing the report of {}", run.path().display()))?;
        println!("  report: {}", summary.report_md.display());
        if !summary.missing.is_empty() {
            println!("  missing cells (other shards or unfinished): {}", summary.missing.len());
        }
    }
    Ok(if counts.failed > 0 || counts.interrupted > 0 { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

/// One worker's batch of cells: `discard` lists those already finished, which run again as
/// chains (so that the batch is the one they ran in) but whose outputs are thrown away.
struct Batch<'g> {
    cells: Vec<&'g Cell>,
    discard: Vec<String>,
}

/// What the pending batches run, for the run's first line: how many cells run as batched
/// chains and how many finished batch-mates run again (discarded) to re-form their batch.
fn pending_note(pending: &VecDeque<Batch>) -> String {
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
    let workers = if gpus > 0 {
        args.jobs.unwrap_or(gpus)
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

/// `CUDA_VISIBLE_DEVICES` of the worker given GPU `g` (0-based among the GPUs this process
/// sees): the `g`-th entry of the parent's list when it has one (Slurm sets it to the task's
/// GPUs), else `g` itself.
pub fn worker_visible_gpu(parent: Option<&str>, g: usize) -> String {
    let listed: Vec<&str> =
        parent.map(|p| p.split(',').map(str::trim).filter(|s| !s.is_empty()).collect()).unwrap_or_default();
    match listed.get(g) {
        Some(id) => (*id).to_owned(),
        None => g.to_string(),
    }
}

/// Record the outcome of a worker that exited; returns a one-line summary.
fn finish_cell(run: &RunDir, cell: &Cell, w: &Worker, status: ExitStatus, counts: &mut Counts) -> Result<String> {
    let dir = run.cell(&cell.id)?;
    let recorded = dir.read_status().ok().flatten();
    let wall = w.started.elapsed().as_secs_f64();
    let labels = short_labels(cell);
    match recorded {
        Some(s) if s.is_finished() => {
            let line = match s.status {
                CellState::Done => {
                    counts.done += 1;
                    match w.last.get(&cell.id) {
                        Some((Some(acc), Some(nll))) => {
                            format!("{} {labels} done: accuracy {acc:.4}, nll {nll:.4} ({wall:.1}s)", cell.id)
                        }
                        _ => format!("{} {labels} done ({wall:.1}s)", cell.id),
                    }
                }
                CellState::Diverged => {
                    counts.diverged += 1;
                    format!(
                        "{} {labels} diverged at step {}: {}",
                        cell.id,
                        s.diverged_at_step.unwrap_or(0),
                        s.message.as_deref().unwrap_or("")
                    )
                }
                _ => {
                    counts.failed += 1;
                    format!("{} {labels} FAILED: {}", cell.id, s.message.as_deref().unwrap_or("(no message)"))
                }
            };
            Ok(line)
        }
        _ => {
            // The worker died before recording an outcome: killed from outside (the out-of-memory
            // killer, `kill -9`: transient, the cell reruns next time), a crash (SIGABRT,
            // SIGSEGV, a panic) or an error it could not write down.
            if let Some(sig) = status.signal().filter(|&s| signals::is_external(s)) {
                let message = format!(
                    "interrupted: its worker process was killed by signal {sig} ({}) from outside \
                     (the out-of-memory killer, `kill -9`); the next run of the grid runs it again",
                    signals::name(sig)
                );
                dir.write_status(&CellStatus {
                    status: CellState::Interrupted,
                    message: Some(message),
                    wall_seconds: wall,
                    diverged_at_step: None,
                    finished_at: None,
                    batch: Vec::new(),
                })?;
                counts.interrupted += 1;
                return Ok(format!(
                    "{} {labels} INTERRUPTED: worker killed by {} (out of memory?); it reruns next time",
                    cell.id,
                    signals::name(sig)
                ));
            }
            let how = match (status.code(), status.signal()) {
                (_, Some(sig)) => format!("worker process killed by signal {sig} ({})", signals::name(sig)),
                (Some(code), _) => format!("worker process exited with status {code}"),
                _ => "worker process ended".to_owned(),
            };
            let tail = w.stderr_tail.lock().map(|t| t.cause_text(12)).unwrap_or_default();
            let message =
                if tail.trim().is_empty() { how.clone() } else { format!("{how}; last stderr lines:\n{tail}") };
            if !tail.is_empty() {
                let full = w.stderr_tail.lock().map(|t| t.text(Tail::KEEP)).unwrap_or_default();
                let _ = dir.write_text("worker.log", &full);
            }
            dir.write_status(&CellStatus {
                status: CellState::Failed,
                message: Some(message),
                wall_seconds: wall,
                diverged_at_step: None,
                finished_at: Some(ablate_store::now_rfc3339()),
                batch: Vec::new(),
            })?;
            counts.failed += 1;
            Ok(format!("{} {labels} FAILED: {how}", cell.id))
        }
    }
}

/// SIGTERM every worker, wait up to 5 s, then SIGKILL what is left; close their stdin.
fn stop_all(running: &mut HashMap<u32, Worker>) {
    for (pid, _) in running.iter() {
        signals::send(*pid, signals::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let alive = running.values_mut().map(|w| matches!(w.child.try_wait(), Ok(None)) as usize).sum::<usize>();
        if alive == 0 || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    for w in running.values_mut() {
        if matches!(w.child.try_wait(), Ok(None)) {
            signals::send(w.child.id(), signals::SIGKILL);
        }
        let _ = w.child.wait();
    }
}

/// A line of a Rust or libtorch backtrace (`  12: name`, `at src/x.rs:1:2`, `frame #3: ...`).
fn is_frame(t: &str) -> bool {
    let numbered = t.split_once(": ").is_some_and(|(n, _)| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()));
    numbered || t.starts_with("at ") || t.starts_with("frame #") || t.starts_with("Exception raised from")
}

fn read_tail(mut err: impl Read, tail: &Mutex<Tail>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match err.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                while let Some(pos) = buf.iter().position(|&b| b == b'\n') {
                    let line: Vec<u8> = buf.drain(..=pos).collect();
                    let text = String::from_utf8_lossy(&line[..line.len() - 1]).into_owned();
                    if let Ok(mut t) = tail.lock() {
                        t.push(text);
                    }
                }
            }
        }
    }
    if !buf.is_empty() {
        if let Ok(mut t) = tail.lock() {
            t.push(String::from_utf8_lossy(&buf).into_owned());
        }
    }
}

fn short_labels(cell: &Cell) -> String {
    let parts: Vec<String> = cell
        .labels
        .iter()
        .map(|(k, v)| {
            let v = match v {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            format!("{}={v}", k.rsplit('.').next().unwrap_or(k))
        })
        .collect();
    parts.join(" ")
}

fn device_name(d: tch::Device) -> String {
    match d {
        tch::Device::Cuda(i) => format!("cuda:{i}"),
        tch::Device::Mps => "mps".into(),
        tch::Device::Vulkan => "vulkan".into(),
        _ => "cpu".into(),
    }
}

fn human_duration(s: f64) -> String {
    if s < 120.0 {
        format!("{s:.1}s")
    } else if s < 7200.0 {
        format!("{:.1} min", s / 60.0)
    } else {
        format!("{:.1} h", s / 3600.0)
    }
}

#[cfg(test)]
mod tests {
    use super::worker_visible_gpu;

    #[test]
    fn each_worker_sees_its_own_gpu() {
        // Slurm gave the task GPUs 3 and 5: worker 0 sees 3, worker 1 sees 5.
        assert_eq!(worker_visible_gpu(Some("3,5"), 0), "3");
        assert_eq!(worker_visible_gpu(Some("3,5"), 1), "5");
        assert_eq!(worker_visible_gpu(Some(" 3, 5 "), 1), "5");
        assert_eq!(worker_visible_gpu(Some("GPU-aaaa,GPU-bbbb"), 1), "GPU-bbbb");
        // No list: the ordinals themselves.
        assert_eq!(worker_visible_gpu(None, 2), "2");
        assert_eq!(worker_visible_gpu(Some(""), 1), "1");
    }
}
