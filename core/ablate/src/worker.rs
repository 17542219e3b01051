//! `ablate __cell`: one cell, or one batch of cells run as batched chains, in its own process
//! (started by `ablate run`).
//!
//! Writes into each `cells/<id>/`: `config.json`, `labels.json`, `status.json` = running, then
//! `epochs.csv` after every epoch (atomically rewritten), then `metrics.json` and the final
//! status (done, diverged, or failed with a one-line message that names the cell). Progress
//! goes to stdout as JSON lines for the parent ([`ablate_records::Event`]: start, epoch, end).
//!
//! The batch runs inside `catch_unwind`: a panic the engine's checks missed (a `tch` call that
//! unwrapped a libtorch error) fails every cell of the batch with the panic's message and
//! location, instead of killing the worker with the cells left `running`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::Instant;

use ablate_engine::predictions::Predictions;
use ablate_engine::{ChainStatus as EngineStatus, DeviceChoice, EpochRow, Observer};
use ablate_records::{epochs_csv, Event};
use ablate_store::{CellDir, CellState, CellStatus, RunDir, CONFIG, EPOCHS, LABELS, METRICS};
use anyhow::{anyhow, Context, Result};
use clap::Args;

#[derive(Debug, Args)]
pub struct CellArgs {
    /// The run folder (made by `ablate run`).
    #[arg(long)]
    run_dir: PathBuf,
    /// Id of the cell to run; several: run them as one batch of chains.
    #[arg(long, required = true)]
    cell: Vec<String>,
    /// A cell of the batch that is already finished: it runs as a chain (so that the batch is
    /// the one it ran in) but none of its files is written.
    #[arg(long)]
    discard: Vec<String>,
    /// auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    device: String,
    /// libtorch intra-op threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    #[command(flatten)]
    plugins: crate::PluginDirs,
    /// Exit when stdin reaches end of file (the parent died).
    #[arg(long)]
    watch_stdin: bool,
}

/// Test hook: a worker for this cell id aborts (SIGABRT) right after marking itself running,
/// standing in for a plugin that crashes the process; `panic:<id>` panics instead (outside the
/// batch's `catch_unwind`), `tch-panic:<id>` makes a `tch` call panic where the batch runs, in
/// every batch that holds the cell, `sleep:<id>` waits 60 s (to be killed from outside), and
/// `touch-grid:<id>` appends a line break to the run's `grid.json` before the worker reads it
/// (a user editing the file while the run goes on).
const CRASH_FOR_TESTS: &str = "ABLATE_WORKER_CRASH_FOR_TESTS";

/// Where the last panic happened ([`panic_site`]), noted by the panic hook for the message.
static PANIC_LOCATION: Mutex<Option<String>> = Mutex::new(None);

/// The worker's exit status when it could not read or write the run folder for a reason that
/// passes (a full disk or quota, `grid.json` changed while the run was going): the runner marks
/// its unfinished cells `interrupted`, so the next run of the grid runs them again, instead of
/// `failed` for good (`EX_TEMPFAIL` of sysexits.h).
pub const EXIT_TRANSIENT: u8 = 75;

pub fn run(args: CellArgs) -> Result<ExitCode> {
    match run_cells_of(args) {
        Err(e) if is_transient(&e) => {
            eprintln!("error: {}", crate::common::error_chain(&e));
            Ok(ExitCode::from(EXIT_TRANSIENT))
        }
        other => other,
    }
}

/// A full disk or quota, or a run folder whose grid copy changed under the worker.
fn is_transient(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        let io = match cause.downcast_ref::<ablate_store::StoreError>() {
            Some(ablate_store::StoreError::GridCopyDamaged { .. }) => return true,
            Some(ablate_store::StoreError::Io { source, .. }) => Some(source),
            _ => cause.downcast_ref::<std::io::Error>(),
        };
        io.is_some_and(ablate_store::is_disk_full)
    })
}

fn run_cells_of(args: CellArgs) -> Result<ExitCode> {
    if args.watch_stdin {
        std::thread::spawn(|| {
            let mut sink = Vec::new();
            let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
            // The runner is gone: stop now; the cell stays `running` and is rerun next time.
            std::process::exit(143);
        });
    }
    let started = Instant::now();
    let run = RunDir::open(&args.run_dir).with_context(|| format!("opening run folder {}", args.run_dir.display()))?;
    if std::env::var(CRASH_FOR_TESTS)
        .ok()
        .and_then(|v| v.strip_prefix("touch-grid:").map(str::to_owned))
        .is_some_and(|id| args.cell.contains(&id))
    {
        let grid = run.path().join(ablate_store::GRID);
        let mut text = std::fs::read(&grid)?;
        text.push(b'\n');
        std::fs::write(&grid, text)?;
    }
    run.check_grid_copy()?;
    let grid_path = run.path().join(ablate_store::GRID);
    let grid = crate::common::load_grid(&grid_path)?;
    let mut cells = Vec::new();
    let mut dirs = Vec::new();
    for id in &args.cell {
        let cell = grid
            .cells
            .iter()
            .find(|c| &c.id == id)
            .with_context(|| format!("cell {id} is not in {}", grid_path.display()))?;
        cells.push(cell);
        if args.discard.contains(id) {
            dirs.push(None);
            continue;
        }
        let dir = run.cell(&cell.id)?;
        dir.write_json(CONFIG, &cell.config)?;
        dir.write_json(LABELS, &cell.labels)?;
        dir.write_status(&CellStatus::running())?;
        match std::env::var(CRASH_FOR_TESTS) {
            Ok(v) if v == cell.id => std::process::abort(),
            Ok(v) if v.strip_prefix("panic:") == Some(cell.id.as_str()) => {
                panic!("test panic in the worker of cell {}", cell.id)
            }
            Ok(v) if v.strip_prefix("sleep:") == Some(cell.id.as_str()) => {
                std::thread::sleep(std::time::Duration::from_secs(60))
            }
            _ => {}
        }
        dirs.push(Some(dir));
    }
    let batch: Vec<String> = if cells.len() > 1 { cells.iter().map(|c| c.id.clone()).collect() } else { Vec::new() };
    let epochs = cells[0].config.sampler.epochs;
    emit(&Event::Start { cell: cells[0].id.clone(), epochs: epochs as u64, temperature: cells[0].config.temperature });
    let mut observer = Progress { dirs: &dirs, rows: vec![Vec::new(); dirs.len()], epochs };
    let configs: Vec<ablate_grid::CellConfig> = cells.iter().map(|c| c.config.clone()).collect();
    let outcome = catch_panic(|| {
        tch_panic_for_tests(&cells);
        execute(&args, &configs, &mut observer)
    });
    let wall = started.elapsed().as_secs_f64();
    match outcome {
        Ok((outcomes, provenance)) => {
            for (((cell, dir), outcome), provenance) in cells.iter().zip(&dirs).zip(outcomes).zip(provenance) {
                let Some(dir) = dir else { continue };
                dir.write_text(EPOCHS, &epochs_csv(&outcome.epochs))?;
                if let Some(p) = &outcome.predictions {
                    write_predictions(dir, p)?;
                }
                if let Some(m) = &outcome.metrics {
                    dir.write_json(METRICS, m)?;
                }
                let (status, message, step) = match &outcome.status {
                    EngineStatus::Done => (CellState::Done, None, None),
                    EngineStatus::Diverged { step, message } => {
                        (CellState::Diverged, Some(message.clone()), Some(*step))
                    }
                };
                dir.write_status(&CellStatus {
                    status,
                    message: message.clone(),
                    wall_seconds: wall,
                    diverged_at_step: step,
                    finished_at: Some(ablate_store::now_rfc3339()),
                    batch: batch.clone(),
                    provenance: Some(provenance),
                })?;
                let accuracy = outcome.metrics.as_ref().map(|m| m.ensemble.accuracy);
                let nll = outcome.metrics.as_ref().map(|m| m.ensemble.nll);
                emit(&Event::End { cell: cell.id.clone(), status, message, accuracy, nll, wall_seconds: wall });
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            record_failure(&cells, &dirs, &one_line(&crate::common::error_chain(&e)), wall, &batch)?;
            Ok(ExitCode::from(1))
        }
    }
}

/// Every cell of the batch failed with `message`: status (the message prefixed with the cell's
/// id and labels), end event, one stderr line each.
fn record_failure(
    cells: &[&ablate_grid::Cell],
    dirs: &[Option<CellDir>],
    message: &str,
    wall: f64,
    batch: &[String],
) -> Result<()> {
    let shared = if cells.len() > 1 {
        format!(" (the batch of {} chains it ran in failed as a whole)", cells.len())
    } else {
        String::new()
    };
    for (cell, dir) in cells.iter().zip(dirs) {
        let Some(dir) = dir else { continue };
        let id = cell.id.as_str();
        let message = format!("{}: {message}{shared}", crate::scheduler::cell_name(cell));
        dir.write_status(&CellStatus {
            status: CellState::Failed,
            message: Some(message.clone()),
            wall_seconds: wall,
            diverged_at_step: None,
            finished_at: Some(ablate_store::now_rfc3339()),
            batch: batch.to_vec(),
            provenance: None,
        })?;
        emit(&Event::End {
            cell: id.to_owned(),
            status: CellState::Failed,
            message: Some(message.clone()),
            accuracy: None,
            nll: None,
            wall_seconds: wall,
        });
        eprintln!("error: {message}");
    }
    Ok(())
}

/// Runs `f`; a panic in it becomes an error with the panic's message and location (the panic
/// hook still prints it, with a backtrace under `RUST_BACKTRACE`, to stderr).
fn catch_panic<T>(f: impl FnOnce() -> Result<T>) -> Result<T> {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if let (Some(at), Ok(mut slot)) = (info.location(), PANIC_LOCATION.lock()) {
            *slot = Some(panic_site(at.to_string()));
        }
        default_hook(info);
    }));
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    let _ = std::panic::take_hook();
    caught.unwrap_or_else(|payload| {
        let text = ablate_engine::host::panic_message(payload.as_ref());
        // A libtorch message may carry its C++ backtrace after the first (escaped) line break.
        let text = text.split("\\n").next().unwrap_or(&text).trim().to_owned();
        let at = PANIC_LOCATION.lock().ok().and_then(|mut slot| slot.take()).unwrap_or_else(|| "?".into());
        Err(anyhow!(
            "the worker panicked at {at}: {text} (a call the engine's checks did not guard; please report it \
             with the cell's config.json)"
        ))
    })
}

/// Where a panic happened as a maintainer needs it: its own location, or, when that is in a
/// dependency or the standard library (tch unwrapping a libtorch error), the first frame of
/// this workspace's code that called into it, from a backtrace taken in the panic hook:
/// `core/engine/src/cell.rs:120:5 (in .../tch-0.24.0/src/wrappers/tensor_generated.rs:15766:31)`.
fn panic_site(location: String) -> String {
    let foreign =
        |path: &str| path.contains("/.cargo/registry/") || path.contains("/.cargo/git/") || path.starts_with("/rustc/");
    if !foreign(&location) {
        return location;
    }
    let trace = std::backtrace::Backtrace::force_capture().to_string();
    // Frames run from the innermost (this hook) outwards: past the panic machinery
    // (`std::panicking`, `core::panicking`), the first frame that is not foreign.
    let mut past_hook = false;
    for line in trace.lines().map(str::trim) {
        match line.strip_prefix("at ") {
            None => past_hook |= line.contains("panicking"),
            Some(at) if past_hook && !foreign(at) => return format!("{at} (in {location})"),
            Some(_) => {}
        }
    }
    location
}

/// The `tch-panic:<id>` test hook (see [`CRASH_FOR_TESTS`]): a real `tch` panic (a reshape to
/// a size the tensor does not have) when the batch holds cell `<id>`.
fn tch_panic_for_tests(cells: &[&ablate_grid::Cell]) {
    let Ok(hook) = std::env::var(CRASH_FOR_TESTS) else { return };
    if let Some(id) = hook.strip_prefix("tch-panic:") {
        if cells.iter().any(|c| c.id == id) {
            let _ = tch::Tensor::zeros([2], (tch::Kind::Float, tch::Device::Cpu)).reshape([3]);
        }
    }
}

/// Runs the batch; each cell's outcome with its [`ablate_records::Provenance`].
fn execute(
    args: &CellArgs,
    cfgs: &[ablate_grid::CellConfig],
    observer: &mut dyn Observer,
) -> Result<(Vec<ablate_engine::CellOutcome>, Vec<ablate_records::Provenance>)> {
    // A plugin that crashes the process (a segfault, an abort, `exit`) is named on stderr,
    // which the runner keeps in the cell's status.
    ablate_engine::crash_site::install();
    tch::set_num_threads(args.threads.max(1) as i32);
    // The engine's fused CPU updates run on rayon: the same thread budget as libtorch.
    let _ = rayon::ThreadPoolBuilder::new().num_threads(args.threads.max(1)).build_global();
    let choice: DeviceChoice = args.device.parse()?;
    let device = ablate_engine::device::resolve(choice)?;
    let registry = crate::common::load_registry(&args.plugins.dirs)?;
    let data = ablate_engine::load_cell_data(&cfgs[0])?;
    let data_sha256 = data.sha256();
    let mut provenance =
        cfgs.iter().map(|cfg| crate::common::provenance(&registry, cfg, device)).collect::<Result<Vec<_>>>()?;
    for p in &mut provenance {
        p.data_sha256 = Some(data_sha256.clone());
    }
    Ok((ablate_engine::run_cells(cfgs, &data, &registry, device, observer)?, provenance))
}

struct Progress<'a> {
    /// `None`: a discarded chain (its cell is already finished).
    dirs: &'a [Option<CellDir>],
    rows: Vec<Vec<EpochRow>>,
    epochs: usize,
}

impl Observer for Progress<'_> {
    fn chain_epoch(&mut self, chain: usize, row: &EpochRow) {
        let (Some(dir), Some(rows)) = (self.dirs.get(chain), self.rows.get_mut(chain)) else {
            return;
        };
        if let Some(dir) = dir {
            rows.push(row.clone());
            if let Err(e) = dir.write_text(EPOCHS, &epochs_csv(rows.iter())) {
                tracing::warn!(error = %e, "could not write epochs.csv");
            }
        }
        if chain > 0 {
            return; // the progress bar follows the first chain
        }
        emit(&Event::Epoch {
            epoch: row.epoch,
            epochs: self.epochs as u64,
            temperature: row.temperature,
            train_nll: row.train_nll,
            train_accuracy: row.train_accuracy,
            members: row.members,
        });
    }
}

/// `eval.store_predictions`: the members' probabilities and the test labels, as `.npy` files
/// (written before `metrics.json`, so that a cell whose metrics exist has them too).
fn write_predictions(dir: &CellDir, p: &Predictions) -> Result<()> {
    use ablate_store::npy::{write_f32, write_i64, OOD_PREDICTIONS, PREDICTIONS, TEST_LABELS};
    let n = p.labels.len();
    write_f32(&dir.path().join(PREDICTIONS), &[p.test.len(), n, p.classes], &Predictions::flat(&p.test))?;
    write_i64(&dir.path().join(TEST_LABELS), &[n], &p.labels)?;
    if let Some(ood) = &p.ood {
        let rows = ood.first().map_or(0, |m| m.len() / p.classes.max(1));
        write_f32(&dir.path().join(OOD_PREDICTIONS), &[ood.len(), rows, p.classes], &Predictions::flat(ood))?;
    }
    Ok(())
}

/// One progress line on stdout for the parent (ignored when nobody reads it).
fn emit(event: &Event) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", event.to_line());
    let _ = out.flush();
}

fn one_line(s: &str) -> String {
    s.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" | ")
}
