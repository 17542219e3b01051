//! `ablate slurm`: a job-array script that runs a grid in N shards.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Args;

#[derive(Debug, Args)]
pub struct SlurmArgs {
    /// The grid file.
    grid: PathBuf,
    /// Number of shards (array tasks); each runs the cells at positions i, i+N, ...
    #[arg(long)]
    shards: usize,
    /// Slurm partition.
    #[arg(long)]
    partition: Option<String>,
    /// Time limit per array task, HH:MM:SS (or D-HH:MM:SS).
    #[arg(long, default_value = "04:00:00")]
    time: String,
    /// GPUs per array task (0 = CPU only).
    #[arg(long, default_value_t = 0)]
    gpus: usize,
    /// CPUs per array task.
    #[arg(long, default_value_t = 4)]
    cpus: usize,
    /// Parent folder of run folders (as for `ablate run --out`).
    #[arg(long, default_value = "runs")]
    out: PathBuf,
    /// Write the script to this file instead of stdout.
    #[arg(long, short = 'o')]
    output: Option<PathBuf>,
    #[command(flatten)]
    plugins: crate::PluginDirs,
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

fn quote(s: &str) -> String {
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "/._-+:=,".contains(c)) {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

pub fn run(args: SlurmArgs) -> Result<ExitCode> {
    if args.shards == 0 {
        bail!("--shards must be at least 1");
    }
    let valid_time = {
        let (days, hms) = args.time.split_once('-').unwrap_or(("0", &args.time));
        let parts: Vec<&str> = hms.split(':').collect();
        days.chars().all(|c| c.is_ascii_digit())
            && (1..=3).contains(&parts.len())
            && parts.iter().all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
    };
    if !valid_time {
        bail!("--time {:?} is not a Slurm time limit; write HH:MM:SS or D-HH:MM:SS, e.g. --time 04:00:00", args.time);
    }
    let grid = crate::common::load_grid(&args.grid)?;
    if args.shards > grid.cells.len() {
        tracing::warn!(
            shards = args.shards,
            cells = grid.cells.len(),
            "more shards than cells: some array tasks will have nothing to do"
        );
    }
    let exe = std::env::current_exe().context("finding the ablate binary")?;
    let grid_abs = absolute(&args.grid);
    let out_abs = absolute(&args.out);
    let run_dir = out_abs.join(&grid.name);
    let n = args.shards;
    let mut s = String::new();
    let _ = writeln!(s, "#!/bin/bash");
    let _ = writeln!(
        s,
        "# Slurm job array for the ablate grid `{}` ({} cells in {n} shards).",
        grid.name,
        grid.cells.len()
    );
    let _ = writeln!(s, "# Written by: {}", ablate_store::command_line());
    let _ = writeln!(
        s,
        "# Submit:     sbatch {}",
        args.output.as_deref().map(|p| p.display().to_string()).unwrap_or_else(|| "job.sbatch".into())
    );
    let _ = writeln!(s, "#SBATCH --job-name=ablate-{}", quote(&grid.name));
    let _ = writeln!(s, "#SBATCH --array=0-{}", n - 1);
    let _ = writeln!(s, "#SBATCH --time={}", args.time);
    let _ = writeln!(s, "#SBATCH --cpus-per-task={}", args.cpus);
    if let Some(p) = &args.partition {
        let _ = writeln!(s, "#SBATCH --partition={}", quote(p));
    }
    if args.gpus > 0 {
        let _ = writeln!(s, "#SBATCH --gres=gpu:{}", args.gpus);
    }
    let _ = writeln!(s, "#SBATCH --output={}/slurm-%A_%a.out", quote(&out_abs.display().to_string()));
    let _ = writeln!(s);
    let _ = writeln!(s, "set -euo pipefail");
    let _ = writeln!(s, "mkdir -p {}", quote(&out_abs.display().to_string()));
    let _ = writeln!(s, "ABLATE=${{ABLATE:-{}}}", quote(&exe.display().to_string()));
    // Workers and threads: ablate's defaults follow the CPUs and GPUs Slurm gives the task
    // (one worker per GPU; on CPU, one single-threaded worker per core).
    let device = if args.gpus > 0 { "cuda" } else { "cpu" };
    let mut cmd = format!(
        "\"$ABLATE\" run {} --out {} --shard \"$SLURM_ARRAY_TASK_ID/{n}\" --no-report --device {device}",
        quote(&grid_abs.display().to_string()),
        quote(&out_abs.display().to_string()),
    );
    for d in &args.plugins.dirs {
        let _ = write!(cmd, " --plugins {}", quote(&absolute(d).display().to_string()));
    }
    let _ = writeln!(s, "{cmd}");
    let _ = writeln!(s);
    let _ = writeln!(s, "# When every array task has finished, merge the shards into one report:");
    let _ = writeln!(s, "#   ablate report {}", quote(&run_dir.display().to_string()));
    let _ = writeln!(
        s,
        "# (or submit it after the array: sbatch --dependency=afterany:<jobid> --wrap \"ablate report {}\")",
        run_dir.display()
    );
    let _ = writeln!(
        s,
        "# A failed or timed-out task can be rerun alone: sbatch --array=<i> this script (finished cells are skipped)."
    );
    match &args.output {
        Some(path) => {
            std::fs::write(path, &s).with_context(|| format!("writing {}", path.display()))?;
            eprintln!("wrote {} ({n} array tasks); submit with: sbatch {}", path.display(), path.display());
        }
        None => print!("{s}"),
    }
    Ok(ExitCode::SUCCESS)
}
