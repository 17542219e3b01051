//! `ablate status RUN_DIR`: per shard and overall, which cells are done, running (and for how
//! long), failed (with the message), interrupted or missing, and the commands that finish the
//! run: the resubmission of exactly the unfinished array tasks (from `slurm/plan.json`, written
//! by `ablate slurm`) or the `ablate run` that resumes a local run.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::SystemTime;

use ablate_store::{CellState, ClaimInfo, RunDir};
use anyhow::{bail, Context, Result};
use clap::Args;

use crate::cmd_slurm::{quote, SlurmPlan, SLURM_DIR};

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The run folder (`runs/<grid name>`).
    run_dir: PathBuf,
}

/// Where one cell stands.
#[derive(Debug, Clone, PartialEq)]
enum CellView {
    Done,
    Diverged,
    Failed(String),
    /// Claimed by a live runner (or one on another host): `(what, age in seconds)`.
    Running(String, f64),
    /// Started by a runner that is gone (killed, timed out, preempted): runs again from scratch.
    Interrupted,
    /// Its files say it finished, but they cannot be read (a garbage status.json, a done cell
    /// without readable metrics.json): the next run computes it again. Why.
    Damaged(String),
    Missing,
}

impl CellView {
    fn finished(&self) -> bool {
        matches!(self, CellView::Done | CellView::Diverged)
    }
}

/// The counts of one shard (or of the whole run).
#[derive(Debug, Default)]
struct Tally {
    done: usize,
    diverged: usize,
    failed: usize,
    running: usize,
    interrupted: usize,
    damaged: usize,
    missing: usize,
}

impl Tally {
    fn add(&mut self, v: &CellView) {
        match v {
            CellView::Done => self.done += 1,
            CellView::Diverged => self.diverged += 1,
            CellView::Failed(_) => self.failed += 1,
            CellView::Running(..) => self.running += 1,
            CellView::Interrupted => self.interrupted += 1,
            CellView::Damaged(_) => self.damaged += 1,
            CellView::Missing => self.missing += 1,
        }
    }

    fn text(&self) -> String {
        let mut parts = vec![format!("{} done", self.done)];
        for (n, what) in [
            (self.diverged, "diverged"),
            (self.failed, "failed"),
            (self.running, "running"),
            (self.interrupted, "interrupted"),
            (self.damaged, "damaged (run again by the next run)"),
            (self.missing, "missing"),
        ] {
            if n > 0 {
                parts.push(format!("{n} {what}"));
            }
        }
        parts.join(", ")
    }
}

pub fn run(args: StatusArgs) -> Result<ExitCode> {
    let dir = &args.run_dir;
    let plan = SlurmPlan::read(dir)?;
    let grid_path = if dir.join(ablate_store::GRID).is_file() {
        dir.join(ablate_store::GRID)
    } else if let Some(p) = &plan {
        PathBuf::from(&p.grid_file)
    } else {
        bail!(
            "{} is not a run folder (no grid.json and no slurm/plan.json); pass the folder `ablate run` or \
             `ablate slurm` wrote, e.g. runs/<grid name>",
            dir.display()
        );
    };
    let grid = crate::common::load_grid(&grid_path)?;
    // The cells are read even when the manifest is gone (`ablate run` then refuses the folder).
    let run = match RunDir::open(dir) {
        Ok(r) => Some(r),
        Err(_) if dir.join(ablate_store::CELLS).is_dir() => Some(RunDir::open_cells(dir)),
        Err(_) => None,
    };
    let claims: Vec<ClaimInfo> = match &run {
        Some(r) => r.claims().with_context(|| format!("reading the claims of {}", dir.display()))?,
        None => Vec::new(),
    };
    let queued = plan.as_ref().and_then(queued_tasks);
    let claims: Vec<ClaimInfo> = claims.into_iter().filter(|c| claim_is_live(c, queued.as_ref())).collect();
    let views: Vec<(String, CellView)> = grid
        .cells
        .iter()
        .map(|c| Ok((c.id.clone(), view(run.as_ref(), &c.id, c.index, &claims)?)))
        .collect::<Result<_>>()?;
    let shards: Vec<Vec<String>> = match &plan {
        Some(p) => p.shard_cells.clone(),
        None => vec![grid.cells.iter().map(|c| c.id.clone()).collect()],
    };
    let mut out = format!("ablate: run `{}` ({}): {} cells\n", grid.name, dir.display(), grid.cells.len());
    let mut unfinished_tasks = Vec::new();
    let mut failed_cells = Vec::new();
    for (i, ids) in shards.iter().enumerate() {
        let mine: Vec<&(String, CellView)> = views.iter().filter(|(id, _)| ids.contains(id)).collect();
        let (line, task_unfinished) = shard_line(i, plan.is_some(), &mine, dir);
        out.push_str(&line);
        if task_unfinished {
            unfinished_tasks.push(i);
        }
        failed_cells.extend(mine.iter().filter(|(_, v)| matches!(v, CellView::Failed(_))).map(|(id, _)| id.clone()));
    }
    let mut total = Tally::default();
    views.iter().for_each(|(_, v)| total.add(v));
    let _ = writeln!(out, "overall: {}", total.text());
    // Without a readable manifest neither `ablate run` nor `ablate report` takes the folder.
    let manifest_problem = match &plan {
        Some(_) => None,
        None if !dir.join(ablate_store::MANIFEST).is_file() => Some(
            "manifest.json is missing: `ablate run` will not resume this folder (which grid, ablate and plugins made \
             its cells cannot be checked); restore manifest.json, or move the folder away"
                .to_owned(),
        ),
        None => run.as_ref().and_then(|r| r.manifest().err()).map(|e| {
            format!("{e} (until then `ablate run` will not resume this folder and `ablate report` cannot report it)")
        }),
    };
    if let Some(problem) = &manifest_problem {
        let _ = writeln!(out, "{problem}");
    }
    let complete = views.iter().all(|(_, v)| v.finished());
    if complete && manifest_problem.is_some() {
        // Nothing to run; the manifest line above says what to do.
    } else if complete {
        let _ =
            writeln!(out, "every cell is finished; the report: ablate report {}", quote(&dir.display().to_string()));
    } else {
        out.push_str(&fix_commands(
            dir,
            plan.as_ref(),
            &unfinished_tasks,
            &failed_cells,
            run.as_ref(),
            total.running > 0,
        ));
    }
    print!("{out}");
    Ok(if complete { ExitCode::SUCCESS } else { ExitCode::from(3) })
}

/// Is the runner of `claim` alive? On this host its pid says; a runner on another host is
/// alive while its array task is still in Slurm's queue (when `squeue` answered), else it is
/// assumed alive.
fn claim_is_live(claim: &ClaimInfo, queued: Option<&HashSet<usize>>) -> bool {
    if claim.is_stale() {
        return false;
    }
    if claim.hostname == ablate_store::hostname() {
        return true;
    }
    let task =
        claim.what.strip_prefix("shard ").and_then(|s| s.split_once('/')).and_then(|(i, _)| i.parse::<usize>().ok());
    match (queued, task) {
        (Some(q), Some(i)) => q.contains(&i),
        _ => true,
    }
}

/// The array tasks of this run's submissions that Slurm still has queued or running (`squeue`);
/// `None` when nothing was submitted or `squeue` cannot answer.
fn queued_tasks(plan: &SlurmPlan) -> Option<HashSet<usize>> {
    let jobs: Vec<&str> = plan.submitted.iter().map(|s| s.array_job.as_str()).collect();
    if jobs.is_empty() {
        return None;
    }
    // Every job in the queue (`-j` fails on ids Slurm already forgot): array job id, task id.
    let out = std::process::Command::new("squeue")
        .args(["-h", "-r", "-o", "%F %K"])
        .output()
        .ok()
        .filter(|o| o.status.success())?;
    let text = String::from_utf8_lossy(&out.stdout);
    let tasks = text
        .lines()
        .filter_map(|l| l.trim().split_once(' '))
        .filter(|(job, _)| jobs.contains(job))
        .filter_map(|(_, task)| task.trim().parse().ok())
        .collect();
    Some(tasks)
}

/// The state of one cell from its `status.json` and the live claims.
fn view(run: Option<&RunDir>, id: &str, position: usize, claims: &[ClaimInfo]) -> Result<CellView> {
    let claim = claims.iter().find(|c| c.cells.iter().any(|r| (r[0]..r[1]).contains(&position)));
    let cell = match run.map(|r| r.existing_cell(id)).transpose() {
        Ok(cell) => cell.flatten(),
        Err(e @ ablate_store::StoreError::LinkedCell { .. }) => return Ok(CellView::Damaged(e.to_string())),
        Err(e) => return Err(e.into()),
    };
    let status = match &cell {
        Some(dir) => match dir.read_status() {
            Ok(s) => s,
            Err(e) => return Ok(CellView::Damaged(format!("its status.json cannot be read ({e})"))),
        },
        None => None,
    };
    Ok(match status.map(|s| (s.status, s.message)) {
        Some((CellState::Done, _)) if !cell.as_ref().is_some_and(|d| d.is_complete().unwrap_or(false)) => {
            CellView::Damaged("done, but its metrics.json is missing or cannot be read".into())
        }
        Some((CellState::Done, _)) => CellView::Done,
        Some((CellState::Diverged, _)) => CellView::Diverged,
        Some((CellState::Failed, m)) => CellView::Failed(m.unwrap_or_else(|| "(no message)".into())),
        other => match claim {
            Some(c) => {
                let age = ablate_store::machine::parse_rfc3339(&c.started)
                    .and_then(|t| SystemTime::now().duration_since(t).ok())
                    .map_or(0.0, |d| d.as_secs_f64());
                CellView::Running(format!("{} (pid {} on {})", c.what, c.pid, c.hostname), age)
            }
            None if other.is_some() => CellView::Interrupted,
            None => CellView::Missing,
        },
    })
}

/// One shard's lines; and whether its task must be submitted again (something unfinished and
/// nothing running).
fn shard_line(i: usize, slurm: bool, cells: &[&(String, CellView)], dir: &Path) -> (String, bool) {
    let mut tally = Tally::default();
    cells.iter().for_each(|(_, v)| tally.add(v));
    let name = if slurm { format!("shard {i}") } else { "cells".to_owned() };
    let state = if cells.iter().all(|(_, v)| v.finished()) {
        "done"
    } else if tally.running > 0 {
        "running"
    } else if tally.failed > 0 {
        "failed"
    } else if tally.done + tally.diverged + tally.interrupted > 0 {
        "stopped"
    } else {
        "missing"
    };
    let mut s = format!("{name}: {state}: {} cells: {}\n", cells.len(), tally.text());
    if let Some((_, CellView::Running(who, age))) = cells.iter().find(|(_, v)| matches!(v, CellView::Running(..))) {
        let _ = writeln!(s, "  running for {}: {who}", crate::cmd_run::human_duration(*age));
    }
    for (id, v) in cells {
        if let CellView::Failed(m) = v {
            // The first line says what failed; a crash's cause is the last of the stderr lines
            // that follow it.
            let lines: Vec<&str> =
                ablate_records::message_without_cell(m, id).lines().map(str::trim).filter(|l| !l.is_empty()).collect();
            let text = match lines.as_slice() {
                [] => String::new(),
                [one] => (*one).to_owned(),
                [first, .., last] => format!("{first} … {last}"),
            };
            let _ = writeln!(s, "  failed {id}: {text}");
        }
        if let CellView::Damaged(why) = v {
            let _ = writeln!(s, "  damaged {id}: {why}");
        }
    }
    let needs_task = tally.running == 0 && !cells.iter().all(|(_, v)| v.finished());
    if slurm && needs_task {
        if let Some(line) = last_log_line(dir, i) {
            let _ = writeln!(s, "  its last log line: {line}");
        }
    }
    (s, needs_task)
}

/// The last non-empty line of the newest log of array task `i` (`slurm/logs/<job>_<i>.out`).
fn last_log_line(dir: &Path, i: usize) -> Option<String> {
    let logs = dir.join(SLURM_DIR).join("logs");
    let suffix = format!("_{i}.out");
    let newest = std::fs::read_dir(&logs)
        .ok()?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(&suffix))
        .max_by_key(|e| e.metadata().and_then(|m| m.modified()).ok())?;
    let text = std::fs::read_to_string(newest.path()).ok()?;
    text.lines().rev().find(|l| !l.trim().is_empty()).map(|l| format!("{} ({})", l.trim(), newest.path().display()))
}

/// How to resume a local run: the command that started it, from the folder it started in
/// (relative paths in it are read from there), and, for a run folder moved since, the grid file
/// run into the folder's present parent.
fn resume_commands(dir: &Path, manifest: Option<&ablate_store::Manifest>) -> String {
    let Some(m) = manifest else {
        return "resume with the command that started the run (finished cells are skipped):\n  ablate run GRID_FILE\n"
            .to_owned();
    };
    let Some(cwd) = &m.cwd else {
        return format!(
            "resume with the command that started the run (finished cells are skipped):\n  {}\n",
            m.command
        );
    };
    let grid = Path::new(cwd).join(&m.grid_file);
    let parent = std::path::absolute(dir).ok().and_then(|d| d.parent().map(Path::to_path_buf));
    let moved = parent.map_or(String::new(), |p| {
        format!(
            "  (if the run folder has moved: ablate run {} --out {}, with the command's other options)\n",
            quote(&grid.display().to_string()),
            quote(&p.display().to_string())
        )
    });
    format!(
        "resume with the command that started the run, from its folder (finished cells are skipped):\n  cd {} && {}\n{moved}",
        quote(cwd),
        m.command
    )
}

fn fix_commands(
    dir: &Path,
    plan: Option<&SlurmPlan>,
    tasks: &[usize],
    failed: &[String],
    run: Option<&RunDir>,
    running: bool,
) -> String {
    let mut s = String::new();
    if !failed.is_empty() {
        let files: Vec<String> = failed
            .iter()
            .map(|id| quote(&dir.join(ablate_store::CELLS).join(id).join(ablate_store::STATUS).display().to_string()))
            .collect();
        let _ = writeln!(
            s,
            "failed cells keep their status until you retry them: fix the cause (see the messages above and \
             worker.log in their folders), then:\n  rm {}",
            files.join(" ")
        );
    }
    match plan {
        Some(p) if !tasks.is_empty() => {
            let list: Vec<String> = tasks.iter().map(usize::to_string).collect();
            let _ = writeln!(
                s,
                "resubmit the unfinished array tasks and the merge after them:\n  \
                 jid=$(sbatch --parsable --array={} {}) && sbatch --dependency=afterany:${{jid%;*}} {}",
                list.join(","),
                quote(&p.array_script),
                quote(&p.report_script)
            );
        }
        // A Slurm run with no task to resubmit, or a local run whose runner is live.
        _ if plan.is_some() || running => {
            let _ = writeln!(s, "the unfinished cells are running; check again later");
        }
        _ => {
            let _ = write!(s, "{}", resume_commands(dir, run.and_then(|r| r.manifest().ok()).as_ref()));
        }
    }
    s
}
