//! `ablate`: run SG-MCMC grids across temperatures and test the cold posterior effect.
//!
//! The binary wires the workspace crates together: grid files ([`ablate_grid`]), plugins
//! ([`ablate_plugin_host`]), data ([`ablate_data`]), the sampler ([`ablate_engine`]), run folders
//! ([`ablate_store`]) and reports ([`ablate_reports`]). `ablate run` executes cells in worker
//! processes (the binary re-invoking itself as the hidden `__cell` subcommand), one cell or one
//! batch of chains per worker, so a crash costs that worker's cells, not the grid.

// A command-line program: stdout is its user interface.
#![allow(clippy::print_stdout)]

mod cmd_data;
mod cmd_doctor;
mod cmd_grid;
mod cmd_plugins;
mod cmd_report;
mod cmd_run;
mod cmd_slurm;
mod cmd_status;
mod common;
mod grid_check;
mod progress;
mod scheduler;
mod signals;
mod templates;
mod worker;
mod worker_protocol;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

/// Test, by experiment, why cold posteriors beat the Bayes posterior in deep networks.
///
/// A grid file crosses temperatures, seeds and factors (prior, likelihood, integrator, noise
/// model); `ablate run` runs every cell with SG-MCMC and writes `runs/<grid>/`, and `ablate
/// report` turns that folder into tables, plots and cold-posterior verdicts.
#[derive(Debug, Parser)]
#[command(name = "ablate", version, propagate_version = true, max_term_width = 100)]
#[command(after_help = "Start here:\n  ablate doctor\n  ablate run ablations/quickstart.json --device cpu\n  \
                        ablate report runs/quickstart")]
struct Cli {
    #[command(flatten)]
    verbosity: Verbosity,
    #[command(subcommand)]
    command: Command,
}

/// Logging flags shared by every subcommand (`RUST_LOG` overrides them).
#[derive(Debug, Clone, Copy, Args)]
struct Verbosity {
    /// More log output on stderr (-v info, -vv debug, -vvv trace); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    /// Only errors on stderr (no progress bars).
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    quiet: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run every cell of a grid (resumes: finished cells are skipped).
    #[command(after_help = "Examples:\n  ablate run ablations/quickstart.json --device cpu\n  \
                            ablate run grid.json --out runs/ --jobs 4 --threads 2\n  \
                            ablate run grid.json --batch-chains 1          # every cell alone, no batched chains\n  \
                            ablate run grid.json --shard 0/8 --no-report   # one shard of eight")]
    Run(cmd_run::RunArgs),
    /// Merge whatever cells of a run folder exist into report.md, CSV, Parquet and plots.
    #[command(
        after_help = "Examples:\n  ablate report runs/quickstart\n  ablate report runs/quickstart --out /tmp/quickstart-report"
    )]
    Report(cmd_report::ReportArgs),
    /// Inspect grid files: expand, check, print the JSON Schema.
    #[command(subcommand)]
    Grid(cmd_grid::GridCommand),
    /// Write (and with --submit, submit) a Slurm job array that runs a grid in N shards, and its
    /// merge job.
    #[command(
        after_help = "Examples:\n  ablate slurm grid.json --shards 16 --partition gpu --gpus 1 --time 04:00:00 --submit\n  \
                            ablate status runs/<grid name>"
    )]
    Slurm(cmd_slurm::SlurmArgs),
    /// Where a run stands, per shard and overall, and the command that finishes it.
    #[command(
        after_help = "Example:\n  ablate status runs/quickstart\n\nExit status: 0 when every cell is finished, 3 otherwise."
    )]
    Status(cmd_status::StatusArgs),
    /// List, inspect, check and create plugins.
    #[command(subcommand)]
    Plugins(cmd_plugins::PluginsCommand),
    /// Fetch and list datasets.
    #[command(subcommand)]
    Data(cmd_data::DataCommand),
    /// Print what this ablate is linked against and what it finds: the first thing to run.
    #[command(after_help = "Example:\n  ablate doctor")]
    Doctor(cmd_doctor::DoctorArgs),
    /// Internal: run one cell, or several as batched chains (started by `ablate run`; progress as
    /// JSON lines on stdout).
    #[command(name = "__cell", hide = true)]
    Cell(worker::CellArgs),
}

/// The folders passed with `--plugins` (shared by several subcommands).
#[derive(Debug, Clone, Default, Args)]
struct PluginDirs {
    /// Also load plugins from this folder (repeatable; after the built-in folder and
    /// $ABLATE_PLUGIN_PATH).
    #[arg(long = "plugins", value_name = "DIR")]
    dirs: Vec<PathBuf>,
}

fn init_logging(v: Verbosity, worker: bool) {
    use tracing_subscriber::EnvFilter;
    let level = if v.quiet {
        "error"
    } else {
        match v.verbose {
            0 => "warn",
            1 => "info",
            2 => "debug",
            _ => "trace",
        }
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(v.verbose >= 2)
        .with_ansi(!worker && std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

/// A panic is a bug in ablate, not a user mistake: say so in one paragraph, without a backtrace
/// unless RUST_BACKTRACE asks for one.
fn install_panic_hook() {
    if std::env::var_os("RUST_BACKTRACE").is_some() {
        return;
    }
    std::panic::set_hook(Box::new(|info| {
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".to_owned());
        let place = info.location().map(|l| format!(" at {}:{}", l.file(), l.line())).unwrap_or_default();
        eprintln!(
            "error: internal error in ablate{place}: {msg}\n  This is a bug; please report it with the command \
             line. Rerun with RUST_BACKTRACE=1 for a backtrace."
        );
    }));
}

fn main() -> ExitCode {
    install_panic_hook();
    signals::default_sigpipe();
    let cli = Cli::parse();
    let worker = matches!(cli.command, Command::Cell(_));
    init_logging(cli.verbosity, worker);
    let result = match cli.command {
        Command::Run(args) => cmd_run::run(args, cli.verbosity),
        Command::Report(args) => cmd_report::run(args),
        Command::Grid(c) => cmd_grid::run(c),
        Command::Slurm(args) => cmd_slurm::run(args),
        Command::Status(args) => cmd_status::run(args),
        Command::Plugins(c) => cmd_plugins::run(c),
        Command::Data(c) => cmd_data::run(c),
        Command::Doctor(args) => cmd_doctor::run(args),
        Command::Cell(args) => worker::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", common::error_chain(&e));
            ExitCode::from(1)
        }
    }
}
