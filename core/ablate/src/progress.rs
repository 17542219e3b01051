//! The run's progress display: one bar for the grid and one per running worker on a terminal,
//! plain lines on stderr otherwise, nothing but errors with `--quiet`.

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::scheduler::Counts;

pub struct Progress {
    mp: MultiProgress,
    grid: ProgressBar,
    cell_style: ProgressStyle,
    quiet: bool,
    show_bars: bool,
    total: usize,
}

impl Progress {
    /// A display for `total` cells to run.
    pub fn new(quiet: bool, total: usize) -> Progress {
        let show_bars = !quiet && std::io::IsTerminal::is_terminal(&std::io::stderr());
        let mp = MultiProgress::with_draw_target(if show_bars {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        });
        let grid = mp.add(ProgressBar::new(total as u64));
        grid.set_style(
            ProgressStyle::with_template("{prefix:.bold} [{bar:30.cyan/blue}] {pos}/{len} cells  {msg}  ETA {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        grid.set_prefix("grid");
        let cell_style = ProgressStyle::with_template("  {prefix} {bar:20} {pos}/{len} epochs {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar());
        Progress { mp, grid, cell_style, quiet, show_bars, total }
    }

    /// A line above the bars (or on stderr without a terminal).
    pub fn say(&self, line: String) {
        if self.quiet {
            return;
        }
        if self.show_bars {
            let _ = self.mp.println(line);
        } else {
            eprintln!("{line}");
        }
    }

    /// A bar for a worker's epochs.
    pub fn cell_bar(&self, prefix: String, epochs: u64) -> ProgressBar {
        let bar = self.mp.insert_before(&self.grid, ProgressBar::new(epochs));
        bar.set_style(self.cell_style.clone());
        bar.set_prefix(prefix);
        bar
    }

    pub fn remove(&self, bar: &ProgressBar) {
        bar.finish_and_clear();
        self.mp.remove(bar);
    }

    pub fn counts(&self, c: &Counts, running: usize) {
        self.grid
            .set_message(format!("done {} failed {} diverged {} running {}", c.done, c.failed, c.diverged, running));
    }

    /// One cell finished: advance the grid bar and print its line.
    pub fn cell_done(&self, c: &Counts, running: usize, line: &str) {
        self.grid.inc(1);
        self.counts(c, running);
        self.say(format!("[{}/{}] {line}", self.grid.position(), self.total));
    }

    pub fn finish(&self) {
        self.grid.finish_and_clear();
    }
}
