//! The scheduler of `ablate run`: starts one worker process per batch of cells, at most `jobs`
//! at a time (one per GPU when it deals GPUs), follows their events, records each cell's outcome
//! when its worker exits, and stops every worker on Ctrl-C or SIGTERM.

use std::collections::{HashMap, VecDeque};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Child, ExitStatus};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ablate_grid::Cell;
use ablate_store::{CellState, CellStatus, RunDir};
use anyhow::{Context, Result};
use indicatif::ProgressBar;

use crate::progress::Progress;
use crate::signals;
use crate::worker_protocol::{self, Event, Tail, WorkerSpec};

/// What happened to the cells of this run.
#[derive(Debug, Default)]
pub struct Counts {
    pub done: usize,
    pub failed: usize,
    pub diverged: usize,
    pub skipped: usize,
    /// Of the skipped cells, those that failed in an earlier run (not retried until their
    /// `status.json` is deleted): the run still exits with status 1 for them.
    pub skipped_failed: usize,
    pub interrupted: usize,
}

/// One worker's batch of cells: `discard` lists those already finished, which run again as
/// chains (so that the batch is the one they ran in) but whose outputs are thrown away.
pub struct Batch<'g> {
    pub cells: Vec<&'g Cell>,
    pub discard: Vec<String>,
}

impl Batch<'_> {
    /// Cells whose outputs count.
    pub fn unfinished(&self) -> usize {
        self.cells.len() - self.discard.len()
    }
}

/// A running worker.
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

/// How workers are started.
pub struct Scheduler<'a> {
    pub exe: PathBuf,
    pub run: &'a RunDir,
    pub cells: &'a [Cell],
    pub device: tch::Device,
    /// GPUs to deal, one worker each (0: none; `--device cuda:N` pins instead).
    pub gpus: usize,
    pub jobs: usize,
    pub threads: usize,
    pub plugin_dirs: &'a [PathBuf],
    pub verbose: u8,
}

/// The scheduler's moving parts during a run.
struct State {
    running: HashMap<u32, Worker>,
    free_gpus: Vec<usize>,
    tx: Sender<(u32, Event)>,
    rx: Receiver<(u32, Event)>,
}

impl Scheduler<'_> {
    /// Runs `pending` to the end (or until interrupted: what was not started stays in it).
    pub fn run(&self, pending: &mut VecDeque<Batch<'_>>, progress: &Progress, counts: &mut Counts) -> Result<()> {
        signals::install();
        let (tx, rx) = mpsc::channel::<(u32, Event)>();
        let mut st = State { running: HashMap::new(), free_gpus: (0..self.gpus).rev().collect(), tx, rx };
        loop {
            while !signals::interrupted() && st.running.len() < self.jobs {
                let Some(batch) = pending.pop_front() else {
                    break;
                };
                if batch.unfinished() == 0 {
                    continue;
                }
                let gpu = if self.gpus > 0 { st.free_gpus.pop() } else { None };
                let (pid, worker) = self.start(&batch, gpu, &st.tx, progress)?;
                st.running.insert(pid, worker);
                progress.counts(counts, st.running.len());
            }
            if st.running.is_empty() && (pending.is_empty() || signals::interrupted()) {
                return Ok(());
            }
            if let Ok((pid, ev)) = st.rx.recv_timeout(Duration::from_millis(100)) {
                if let Some(w) = st.running.get_mut(&pid) {
                    on_event(w, ev);
                }
            }
            if signals::interrupted() {
                progress.say(
                    "ablate: interrupted; stopping the workers (their cells stay `running` and rerun next time)".into(),
                );
                stop_all(&mut st.running);
                for (_, w) in st.running.drain() {
                    counts.interrupted += w.cells.len();
                    w.bar.finish_and_clear();
                }
                return Ok(());
            }
            self.reap(&mut st, progress, counts)?;
        }
    }

    /// Starts the worker of `batch` (on GPU `gpu` when the runner deals GPUs).
    fn start(
        &self,
        batch: &Batch<'_>,
        gpu: Option<usize>,
        tx: &Sender<(u32, Event)>,
        progress: &Progress,
    ) -> Result<(u32, Worker)> {
        let runs = |c: &Cell| !batch.discard.contains(&c.id);
        let first = batch.cells.iter().find(|c| runs(c)).copied().context("a batch without a cell to run")?;
        let device = match (gpu, self.device) {
            (Some(_), _) => "cuda:0".to_owned(),
            (None, tch::Device::Cuda(i)) => format!("cuda:{i}"),
            _ => "cpu".to_owned(),
        };
        let parent = std::env::var("CUDA_VISIBLE_DEVICES").ok();
        let spec = WorkerSpec {
            exe: &self.exe,
            run_dir: self.run.path(),
            cells: &batch.cells,
            discard: &batch.discard,
            device,
            threads: self.threads,
            plugin_dirs: self.plugin_dirs,
            verbose: self.verbose,
            // Each worker sees its own GPU only (as device 0).
            visible_gpu: gpu.map(|g| worker_visible_gpu(parent.as_deref(), g)),
        };
        let mut child = worker_protocol::command(&spec)
            .spawn()
            .with_context(|| format!("starting a worker ({}) for cell {}", self.exe.display(), first.id))?;
        let pid = child.id();
        let tail = Arc::new(Mutex::new(Tail::default()));
        let n = batch.cells.len();
        let chains = if n > 1 { format!(" +{} batched", n - 1) } else { String::new() };
        let label = format!("cell {} {}{chains}", first.id, short_labels(first));
        let readers = worker_protocol::spawn_readers(&mut child, pid, label, tx, &tail);
        let bar = progress
            .cell_bar(format!("{} {}{chains}", first.id, short_labels(first)), first.config.sampler.epochs as u64);
        let worker = Worker {
            cells: batch.cells.iter().filter(|c| runs(c)).map(|c| c.index).collect(),
            child,
            bar,
            started: Instant::now(),
            gpu,
            stderr_tail: tail,
            readers,
            last: HashMap::new(),
        };
        Ok((pid, worker))
    }

    /// Records the cells of every worker that exited.
    fn reap(&self, st: &mut State, progress: &Progress, counts: &mut Counts) -> Result<()> {
        let exited: Vec<(u32, ExitStatus)> =
            st.running.iter_mut().filter_map(|(pid, w)| w.child.try_wait().ok().flatten().map(|s| (*pid, s))).collect();
        for (pid, status) in exited {
            let Some(mut w) = st.running.remove(&pid) else {
                continue;
            };
            for r in w.readers.drain(..) {
                let _ = r.join();
            }
            // Events still queued for this worker (its final line).
            while let Ok((p, ev)) = st.rx.try_recv() {
                if let (true, Event::End { cell, accuracy, nll, .. }) = (p == pid, ev) {
                    w.last.insert(cell, (accuracy, nll));
                }
            }
            if let Some(g) = w.gpu {
                st.free_gpus.push(g);
            }
            let killed_by_interrupt = status.signal().is_some_and(|s| s == signals::SIGINT || s == signals::SIGTERM);
            if signals::interrupted() || killed_by_interrupt && status.signal() == Some(signals::SIGINT) {
                signals::set_interrupted();
                counts.interrupted += w.cells.len();
                w.bar.finish_and_clear();
                continue;
            }
            progress.remove(&w.bar);
            for &i in &w.cells {
                let line = finish_cell(self.run, &self.cells[i], &w, status, counts)?;
                progress.cell_done(counts, st.running.len(), &line);
            }
        }
        Ok(())
    }
}

fn on_event(w: &mut Worker, ev: Event) {
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
                    let message = s.message.as_deref().unwrap_or("(no message)");
                    // The worker's message starts with the cell's name, which the line begins with.
                    let message = message.strip_prefix(&format!("{}: ", cell_name(cell))).unwrap_or(message);
                    format!("{} {labels} FAILED: {message}", cell.id)
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
                dir.write_status(&interrupted(message, wall))?;
                counts.interrupted += 1;
                return Ok(format!(
                    "{} {labels} INTERRUPTED: worker killed by {} (out of memory?); it reruns next time",
                    cell.id,
                    signals::name(sig)
                ));
            }
            if status.code() == Some(i32::from(crate::worker::EXIT_TRANSIENT)) {
                let tail = w.stderr_tail.lock().map(|t| t.cause_text(4)).unwrap_or_default();
                let tail = tail.trim().trim_start_matches("error: ").to_owned();
                let message = format!(
                    "interrupted: its worker could not read or write the run folder (a full disk, or grid.json \
                     changed during the run): {}; the next run of the grid runs it again",
                    tail.trim()
                );
                // On a full disk this status may not be written either; the cell then stays
                // `running`, which the next run reruns just the same.
                let _ = dir.write_status(&interrupted(message, wall));
                counts.interrupted += 1;
                return Ok(format!(
                    "{} {labels} INTERRUPTED: {}; it reruns next time",
                    cell.id,
                    tail.lines().last().unwrap_or("the run folder could not be written").trim()
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
                provenance: None,
            })?;
            counts.failed += 1;
            Ok(format!("{} {labels} FAILED: {how}", cell.id))
        }
    }
}

/// The status of a cell whose worker ended before recording an outcome, for a reason that
/// passes: the next run of the grid runs it again.
fn interrupted(message: String, wall: f64) -> CellStatus {
    CellStatus {
        status: CellState::Interrupted,
        message: Some(message),
        wall_seconds: wall,
        diverged_at_step: None,
        finished_at: None,
        batch: Vec::new(),
        provenance: None,
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

/// A cell's labels as `name=value` pairs, each axis by its name or (`short`) by the last part
/// of it (`prior.name` -> `name`).
fn label_pairs(cell: &Cell, short: bool) -> Vec<String> {
    cell.labels
        .iter()
        .map(|(k, v)| {
            let v = match v {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let k = if short { short_key(k) } else { k };
            format!("{k}={v}")
        })
        .collect()
}

/// A label's key on a progress line: its last path segment (`sampler.lr` → `lr`), or for a
/// plugin's name the plugin kind (`integrator.name` → `integrator`, not `name`, which every
/// plugin axis would show).
fn short_key(key: &str) -> &str {
    let mut parts = key.rsplit('.');
    match (parts.next(), parts.next()) {
        (Some("name"), Some(kind)) => kind,
        (Some(last), _) => last,
        (None, _) => key,
    }
}

/// The labels of a progress line: `temperature=0.1 seed=2`.
pub fn short_labels(cell: &Cell) -> String {
    label_pairs(cell, true).join(" ")
}

/// A cell as error messages name it: `cell 0123456789abcdef (prior.name=laplace,
/// temperature=0.1, seed=2)`.
pub fn cell_name(cell: &Cell) -> String {
    format!("cell {} ({})", cell.id, label_pairs(cell, false).join(", "))
}

#[cfg(test)]
mod tests {
    #[test]
    fn progress_keys_tell_plugin_axes_apart() {
        assert_eq!(super::short_key("integrator.name"), "integrator");
        assert_eq!(super::short_key("prior.name"), "prior");
        assert_eq!(super::short_key("sampler.lr"), "lr");
        assert_eq!(super::short_key("temperature"), "temperature");
    }

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
