//! `ablate slurm`: a job-array script that runs a grid in N shards, a dependent report job, and
//! (`--submit`) both submitted.
//!
//! Everything goes to `<out>/<grid>/slurm/`: `array.sbatch`, `report.sbatch`, the task logs
//! (`logs/`, created here, before submission: Slurm opens a task's log before its script runs)
//! and `plan.json` (shards, batch cap, each shard's cells, submitted job ids), which
//! `ablate status` reads.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use ablate_engine::planner;
use anyhow::{bail, Context, Result};
use clap::Args;
use serde::{Deserialize, Serialize};

#[derive(Debug, Args)]
pub struct SlurmArgs {
    /// The grid file.
    grid: PathBuf,
    /// Number of shards (array tasks); batches of chains are dealt to them so that each gets a share.
    #[arg(long)]
    shards: usize,
    /// Slurm partition.
    #[arg(long)]
    partition: Option<String>,
    /// Time limit per array task, HH:MM:SS (or D-HH:MM:SS).
    #[arg(long, default_value = "04:00:00")]
    time: String,
    /// GPUs per array task (0 = CPU only); the task runs with `--device cuda`, one worker per GPU.
    #[arg(long, default_value_t = 0)]
    gpus: usize,
    /// CPUs per array task (workers and threads follow SLURM_CPUS_PER_TASK).
    #[arg(long, default_value_t = 4)]
    cpus: usize,
    /// Most chains per batch (default 32, cut so that every array task gets a batch).
    #[arg(long, value_name = "K")]
    batch_chains: Option<usize>,
    /// Parent folder of run folders (as for `ablate run --out`).
    #[arg(long, default_value = "runs")]
    out: PathBuf,
    /// Also write the array script here (it is always written to `<OUT>/<grid>/slurm/array.sbatch`;
    /// without --output or --submit it is also printed).
    #[arg(long, short = 'o')]
    output: Option<PathBuf>,
    /// Submit the array and a report job that runs after it (`sbatch --dependency=afterany`).
    #[arg(long)]
    submit: bool,
    /// With --submit: submit only these array tasks (e.g. `1,2`), as `ablate status` suggests.
    #[arg(long, value_name = "LIST", requires = "submit")]
    array: Option<String>,
    #[command(flatten)]
    plugins: crate::PluginDirs,
}

/// `<run>/slurm/plan.json`: what `ablate slurm` planned and submitted (read by `ablate status`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SlurmPlan {
    pub grid_file: String,
    pub shards: usize,
    pub batch_chains: usize,
    pub array_script: String,
    pub report_script: String,
    /// Cell ids of each shard, in grid order.
    pub shard_cells: Vec<Vec<String>>,
    /// Submissions, oldest first.
    #[serde(default)]
    pub submitted: Vec<Submission>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Submission {
    pub array_job: String,
    pub report_job: String,
    pub tasks: String,
    pub at: String,
}

pub const SLURM_DIR: &str = "slurm";
pub const PLAN_FILE: &str = "plan.json";

impl SlurmPlan {
    pub fn read(run_dir: &Path) -> Result<Option<SlurmPlan>> {
        let path = run_dir.join(SLURM_DIR).join(PLAN_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(Some(serde_json::from_str(&text).with_context(|| {
                format!(
                    "reading {}: not a plan written by `ablate slurm`; write it again with `ablate slurm`",
                    path.display()
                )
            })?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    fn write(&self, run_dir: &Path) -> Result<()> {
        let path = run_dir.join(SLURM_DIR).join(PLAN_FILE);
        let text = serde_json::to_string_pretty(self).context("serialising the Slurm plan")?;
        ablate_store::atomic::write_atomic(&path, format!("{text}\n").as_bytes())
            .with_context(|| format!("writing {}", path.display()))
    }
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

pub fn quote(s: &str) -> String {
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "/._-+:=,".contains(c)) {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

fn check_time(time: &str) -> Result<()> {
    let (days, hms) = time.split_once('-').unwrap_or(("0", time));
    let parts: Vec<&str> = hms.split(':').collect();
    let valid = days.chars().all(|c| c.is_ascii_digit())
        && (1..=3).contains(&parts.len())
        && parts.iter().all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()));
    if !valid {
        bail!("--time {time:?} is not a Slurm time limit; write HH:MM:SS or D-HH:MM:SS, e.g. --time 04:00:00");
    }
    Ok(())
}

/// Seconds before the time limit at which a task is told to stop and requeue itself.
const SIGNAL_BEFORE_S: u32 = 120;

pub fn run(args: SlurmArgs) -> Result<ExitCode> {
    if args.shards == 0 {
        bail!("--shards must be at least 1");
    }
    check_time(&args.time)?;
    let (grid, registry) = crate::common::load_checked(&args.grid, &args.plugins.dirs)?;
    // The tasks run with --device cpu without --gpus: refuse what a CPU cannot compute now, not
    // in every array task.
    let task_device = if args.gpus > 0 { tch::Device::Cuda(0) } else { tch::Device::Cpu };
    crate::cmd_run::refuse_unrunnable_precision(&grid, task_device)?;
    let run_dir = absolute(&args.out).join(&grid.name);
    // The plan every array task computes again from the same grid and cap.
    let compute_bound = grid.cells.iter().any(|c| planner::compute_bound(&c.config));
    let per_task = if args.gpus > 0 {
        args.gpus
    } else if compute_bound {
        args.cpus
    } else {
        1
    };
    let min_batches = if args.batch_chains.is_some() { 1 } else { args.shards * per_task.max(1) };
    let opts = planner::PlanOptions { max_chains: args.batch_chains.unwrap_or(32), conv: args.gpus > 0, min_batches };
    let plan = planner::plan(&grid.cells, &opts, &registry);
    drop(registry);
    let shard_cells: Vec<Vec<String>> = (0..args.shards)
        .map(|i| {
            let mut ids: Vec<usize> = plan.shard(i, args.shards).into_iter().flatten().copied().collect();
            ids.sort_unstable();
            ids.into_iter().map(|c| grid.cells[c].id.clone()).collect()
        })
        .collect();
    let slurm_dir = run_dir.join(SLURM_DIR);
    let logs = slurm_dir.join("logs");
    std::fs::create_dir_all(&logs)
        .with_context(|| format!("creating the log folder {} (Slurm opens task logs there)", logs.display()))?;
    // The canonical copy (the one `ablate status` resubmits), plus --output or stdout.
    let array_path = slurm_dir.join("array.sbatch");
    let report_path = slurm_dir.join("report.sbatch");
    let exe = std::env::current_exe().context("finding the ablate binary")?;
    let script = array_script(&args, &grid, &plan, &run_dir, &exe);
    std::fs::write(&array_path, &script).with_context(|| format!("writing {}", array_path.display()))?;
    std::fs::write(&report_path, report_script(&args, &grid.name, &run_dir, &exe))
        .with_context(|| format!("writing {}", report_path.display()))?;
    match &args.output {
        Some(p) => std::fs::write(p, &script).with_context(|| format!("writing {}", p.display()))?,
        None if !args.submit => print!("{script}"),
        None => {}
    }
    let mut slurm_plan = SlurmPlan {
        grid_file: absolute(&args.grid).display().to_string(),
        shards: args.shards,
        batch_chains: plan.cap,
        array_script: array_path.display().to_string(),
        report_script: report_path.display().to_string(),
        shard_cells,
        submitted: SlurmPlan::read(&run_dir).ok().flatten().map(|p| p.submitted).unwrap_or_default(),
    };
    eprintln!(
        "wrote {} ({} array tasks) and {}\n{}",
        array_path.display(),
        args.shards,
        report_path.display(),
        split_text(&plan, args.shards, grid.cells.len())
    );
    if !args.submit {
        slurm_plan.write(&run_dir)?;
        eprintln!(
            "submit both with: ablate slurm {} --submit (same options), or by hand:\n  \
             jid=$(sbatch --parsable {}) && sbatch --dependency=afterany:${{jid%;*}} {}",
            args.grid.display(),
            quote(&array_path.display().to_string()),
            quote(&report_path.display().to_string())
        );
        return Ok(ExitCode::SUCCESS);
    }
    let tasks = args.array.clone().unwrap_or_else(|| format!("0-{}", args.shards - 1));
    let submission = submit(&array_path, &report_path, &tasks)?;
    println!(
        "submitted array job {} (tasks {tasks}) and report job {} (runs after the array: afterany)\n  \
         follow with: ablate status {}",
        submission.array_job,
        submission.report_job,
        run_dir.display()
    );
    slurm_plan.submitted.push(submission);
    slurm_plan.write(&run_dir)?;
    Ok(ExitCode::SUCCESS)
}

/// How the batches are split over the shards, one line per shard.
fn split_text(plan: &planner::Plan, shards: usize, cells: usize) -> String {
    let mut s = format!("{cells} cells in {} batch(es) of at most {} chains:", plan.batches.len(), plan.cap);
    for i in 0..shards {
        let mine = plan.shard(i, shards);
        let n: usize = mine.iter().map(|b| b.len()).sum();
        let _ = write!(s, "\n  shard {i}: {n} cells in {} batch(es)", mine.len());
        if n == 0 {
            s.push_str(" (nothing to do: fewer batches than shards)");
        }
    }
    s
}

fn array_script(
    args: &SlurmArgs,
    grid: &ablate_grid::Grid,
    plan: &planner::Plan,
    run_dir: &Path,
    exe: &Path,
) -> String {
    let n = args.shards;
    let name = quote(&grid.name);
    let logs = run_dir.join(SLURM_DIR).join("logs");
    let mut s = String::new();
    let _ = writeln!(s, "#!/bin/bash");
    let _ = writeln!(
        s,
        "# Slurm job array for the ablate grid `{}` ({} cells in {} batch(es) of at most {} chains, {n} shards).",
        grid.name,
        grid.cells.len(),
        plan.batches.len(),
        plan.cap
    );
    let _ = writeln!(s, "# Written by: {}", ablate_store::command_line());
    let _ = writeln!(s, "# Submit with the report job: `ablate slurm ... --submit`, or");
    let _ = writeln!(s, "#   jid=$(sbatch --parsable THIS) && sbatch --dependency=afterany:${{jid%;*}} report.sbatch");
    let _ = writeln!(s, "# The merge alone: ablate report {}", quote(&run_dir.display().to_string()));
    let _ = writeln!(
        s,
        "# Status and the command that resubmits unfinished tasks: ablate status {}",
        quote(&run_dir.display().to_string())
    );
    let _ = writeln!(s, "#SBATCH --job-name=ablate-{name}");
    let _ = writeln!(s, "#SBATCH --array=0-{}", n - 1);
    let _ = writeln!(s, "#SBATCH --time={}", args.time);
    let _ = writeln!(s, "#SBATCH --cpus-per-task={}", args.cpus);
    if let Some(p) = &args.partition {
        let _ = writeln!(s, "#SBATCH --partition={}", quote(p));
    }
    if args.gpus > 0 {
        let _ = writeln!(s, "#SBATCH --gres=gpu:{}", args.gpus);
    }
    let _ = writeln!(s, "#SBATCH --output={}/%A_%a.out", quote(&logs.display().to_string()));
    let _ = writeln!(s, "#SBATCH --open-mode=append");
    let _ = writeln!(s, "#SBATCH --requeue");
    let _ = writeln!(s, "#SBATCH --signal=B:USR1@{SIGNAL_BEFORE_S}");
    let _ = writeln!(s);
    let _ = writeln!(s, "set -uo pipefail");
    let _ = writeln!(s, "mkdir -p {}", quote(&logs.display().to_string()));
    let _ = writeln!(s, "ABLATE=${{ABLATE:-{}}}", quote(&exe.display().to_string()));
    let device = if args.gpus > 0 { "cuda" } else { "cpu" };
    let mut cmd = format!(
        "\"$ABLATE\" run {} --out {} --shard \"$SLURM_ARRAY_TASK_ID/{n}\" --batch-chains {} --no-report --device {device}",
        quote(&absolute(&args.grid).display().to_string()),
        quote(&absolute(&args.out).display().to_string()),
        plan.cap,
    );
    if args.gpus > 0 {
        cmd.push_str(" --batch-conv");
    }
    for d in &args.plugins.dirs {
        let _ = write!(cmd, " --plugins {}", quote(&absolute(d).display().to_string()));
    }
    // The runner runs in the background so that the shell can take the time-limit signal (bash
    // runs traps only between commands): it stops the runner, whose interrupted cells stay
    // unfinished and run again from scratch, and requeues the task.
    let _ = writeln!(s, "task=\"${{SLURM_ARRAY_JOB_ID}}_${{SLURM_ARRAY_TASK_ID}}\"");
    let _ = writeln!(
        s,
        "on_time_limit() {{ echo \"ablate: task $task near its time limit: stopping and requeueing\"; kill -TERM \"$pid\"; wait \"$pid\"; scontrol requeue \"$task\"; exit 0; }}"
    );
    let _ = writeln!(s, "trap on_time_limit USR1");
    let _ = writeln!(s, "{cmd} &");
    let _ = writeln!(s, "pid=$!");
    let _ = writeln!(s, "wait \"$pid\"");
    let _ = writeln!(s, "exit $?");
    s
}

fn report_script(args: &SlurmArgs, name: &str, run_dir: &Path, exe: &Path) -> String {
    let logs = run_dir.join(SLURM_DIR).join("logs");
    let mut s = String::new();
    let _ = writeln!(s, "#!/bin/bash");
    let _ = writeln!(s, "# Merges the shards of the ablate grid `{name}` into one report (submit after the array).");
    let _ = writeln!(s, "#SBATCH --job-name=ablate-{}-report", quote(name));
    let _ = writeln!(s, "#SBATCH --time=01:00:00");
    let _ = writeln!(s, "#SBATCH --cpus-per-task=1");
    if let Some(p) = &args.partition {
        let _ = writeln!(s, "#SBATCH --partition={}", quote(p));
    }
    let _ = writeln!(s, "#SBATCH --output={}/report-%j.out", quote(&logs.display().to_string()));
    let _ = writeln!(s, "ABLATE=${{ABLATE:-{}}}", quote(&exe.display().to_string()));
    let _ = writeln!(s, "exec \"$ABLATE\" report {}", quote(&run_dir.display().to_string()));
    s
}

/// `sbatch --parsable` the array (tasks `tasks`), then the report job after it.
fn submit(array: &Path, report: &Path, tasks: &str) -> Result<Submission> {
    let array_job = sbatch(&[format!("--array={tasks}"), array.display().to_string()])?;
    let report_job = sbatch(&[format!("--dependency=afterany:{array_job}"), report.display().to_string()])?;
    Ok(Submission { array_job, report_job, tasks: tasks.to_owned(), at: ablate_store::now_rfc3339() })
}

fn sbatch(args: &[String]) -> Result<String> {
    let out = Command::new("sbatch").arg("--parsable").args(args).output().with_context(|| {
        format!("running `sbatch --parsable {}`: is Slurm installed and sbatch on PATH?", args.join(" "))
    })?;
    if !out.status.success() {
        bail!(
            "`sbatch --parsable {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    // `--parsable` prints `jobid` or `jobid;cluster`.
    let id = text.trim().split(';').next().unwrap_or("").to_owned();
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_digit()) {
        bail!("`sbatch --parsable {}` printed {:?}, not a job id", args.join(" "), text.trim());
    }
    Ok(id)
}
