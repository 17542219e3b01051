//! The runner's side of the worker protocol: the command line that starts a worker (the hidden
//! `ablate __cell`), the JSON lines it prints on stdout ([`Event`]), and the tail of its stderr,
//! kept to say why it failed.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use ablate_grid::Cell;
pub use ablate_records::Event;

/// The last lines a worker wrote to stderr, and the first lines that say why it failed (a
/// panic's message, a libtorch exception, an `error:` line), which a backtrace
/// (`RUST_BACKTRACE=1`) would push out of the tail.
#[derive(Default)]
pub struct Tail {
    lines: VecDeque<String>,
    cause: Vec<String>,
    /// Still collecting the lines of a panic message into `cause`.
    in_panic: bool,
}

impl Tail {
    pub const KEEP: usize = 40;
    const CAUSE_LINES: usize = 6;
    pub fn push(&mut self, line: String) {
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
    pub fn cause_text(&self, n: usize) -> String {
        if !self.cause.is_empty() {
            return self.cause.join("\n");
        }
        let kept: Vec<&String> = self.lines.iter().filter(|l| !is_frame(l.trim())).collect();
        let skip = kept.len().saturating_sub(n);
        kept.into_iter().skip(skip).cloned().collect::<Vec<_>>().join("\n")
    }
    pub fn text(&self, n: usize) -> String {
        let skip = self.lines.len().saturating_sub(n);
        self.lines.iter().skip(skip).cloned().collect::<Vec<_>>().join("\n")
    }
}

/// A line of a Rust or libtorch backtrace (`  12: name`, `at src/x.rs:1:2`, `frame #3: ...`).
fn is_frame(t: &str) -> bool {
    let numbered = t.split_once(": ").is_some_and(|(n, _)| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()));
    numbered || t.starts_with("at ") || t.starts_with("frame #") || t.starts_with("Exception raised from")
}

/// A worker's warning or error record in tracing's plain format (`TIME  LEVEL message fields`),
/// from its level on; `None` for any other line.
pub fn log_record(line: &str) -> Option<&str> {
    let (_, rest) = line.trim_start().split_once(' ')?;
    let rest = rest.trim_start();
    (rest.starts_with("WARN ") || rest.starts_with("ERROR ")).then_some(rest)
}

/// Warnings forwarded per worker at the most (each distinct one once): the runner's stderr is
/// for the user, the whole stream stays in the tail.
const FORWARDED_WARNINGS: usize = 20;

/// Keep the worker's stderr in `tail`, and pass its warnings and errors on to the runner's
/// stderr tagged `worker` (a cell's unstable dynamics, a plugin's complaint): they used to
/// reach the user only when the worker failed.
pub fn read_tail(mut err: impl Read, tail: &Mutex<Tail>, worker: &str) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let mut forwarded = std::collections::HashSet::new();
    loop {
        match err.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                while let Some(pos) = buf.iter().position(|&b| b == b'\n') {
                    let line: Vec<u8> = buf.drain(..=pos).collect();
                    let text = String::from_utf8_lossy(&line[..line.len() - 1]).into_owned();
                    if let Some(record) = log_record(&text) {
                        // Distinct by their first words (the fields carry epochs and values).
                        let key: String = record.chars().take(80).collect();
                        if forwarded.len() < FORWARDED_WARNINGS && forwarded.insert(key) {
                            eprintln!("  {worker}: {record}");
                        }
                    }
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

/// What a worker runs and where.
pub struct WorkerSpec<'a> {
    pub exe: &'a Path,
    pub run_dir: &'a Path,
    /// Its cells (several: batched chains), in grid order.
    pub cells: &'a [&'a Cell],
    /// Ids of finished cells that run again only to re-form the batch (outputs discarded).
    pub discard: &'a [String],
    /// `cpu`, `cuda:N`.
    pub device: String,
    pub threads: usize,
    pub plugin_dirs: &'a [PathBuf],
    pub verbose: u8,
    /// `CUDA_VISIBLE_DEVICES` of the worker (its own GPU), when the runner deals GPUs.
    pub visible_gpu: Option<String>,
}

/// The `ablate __cell ...` command of a worker, with piped stdin (closed: stop), stdout (events)
/// and stderr (the tail).
pub fn command(spec: &WorkerSpec<'_>) -> Command {
    let mut cmd = Command::new(spec.exe);
    if let Some(g) = &spec.visible_gpu {
        cmd.env("CUDA_VISIBLE_DEVICES", g);
    }
    cmd.arg("__cell")
        .arg("--run-dir")
        .arg(spec.run_dir)
        .args(spec.cells.iter().flat_map(|c| ["--cell", c.id.as_str()]))
        .args(spec.discard.iter().flat_map(|id| ["--discard", id.as_str()]))
        .arg("--device")
        .arg(&spec.device)
        .arg("--threads")
        .arg(spec.threads.to_string())
        .arg("--watch-stdin");
    for d in spec.plugin_dirs {
        cmd.arg("--plugins").arg(d);
    }
    if spec.verbose > 0 {
        cmd.arg(format!("-{}", "v".repeat(spec.verbose as usize)));
    }
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd
}

/// Threads that forward the worker's stdout events to `tx` (tagged with `pid`) and keep its
/// stderr in `tail` (its warnings also go to the runner's stderr, tagged `label`).
pub fn spawn_readers(
    child: &mut Child,
    pid: u32,
    label: String,
    tx: &Sender<(u32, Event)>,
    tail: &Arc<Mutex<Tail>>,
) -> Vec<JoinHandle<()>> {
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
        let tail = Arc::clone(tail);
        readers.push(std::thread::spawn(move || read_tail(err, &tail, &label)));
    }
    readers
}
