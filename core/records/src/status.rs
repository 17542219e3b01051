//! `status.json` of a cell.

use serde::{Deserialize, Serialize};

/// The state of a cell (`status.json` → `status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CellState {
    /// Started and not finished; found at startup, it means the run was interrupted.
    Running,
    Done,
    /// Failed for good (an error in the config or a plugin); not retried automatically.
    Failed,
    /// The chain produced non-finite values; a result in itself (reported, not retried).
    Diverged,
    /// The worker was killed from outside (the out-of-memory killer, `kill -9`): not finished,
    /// run again by the next run of the grid.
    Interrupted,
}

impl CellState {
    /// As written in `status.json`.
    pub fn as_str(self) -> &'static str {
        match self {
            CellState::Running => "running",
            CellState::Done => "done",
            CellState::Failed => "failed",
            CellState::Diverged => "diverged",
            CellState::Interrupted => "interrupted",
        }
    }
}

/// `status.json` of a cell.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CellStatus {
    pub status: CellState,
    pub message: Option<String>,
    pub wall_seconds: f64,
    pub diverged_at_step: Option<u64>,
    /// RFC 3339 UTC; `null` while running.
    pub finished_at: Option<String>,
    /// Ids of the cells whose chains ran batched with this one (itself included), in chain
    /// order; empty when it ran alone. Batch-mates share the injected-noise stream, so this is
    /// part of what reproduces the numbers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub batch: Vec<String>,
    /// What computed the cell's numbers (the build, libtorch, the device and the plugin
    /// libraries of its four factors), written by the worker once the plugins are loaded;
    /// `None` in older run folders and for cells that failed before that.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provenance: Option<Provenance>,
}

/// The build and the plugin libraries that computed one cell (`status.json` → `provenance`),
/// so that every result names what made it, also when its folder is copied elsewhere.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Provenance {
    pub ablate_version: String,
    /// The source tree's git revision at build time, when known.
    pub git_revision: Option<String>,
    pub libtorch_version: Option<String>,
    /// `cpu`, `cuda:0`, ...
    pub device: String,
    /// One entry per factor of the cell: prior, likelihood, integrator, noise.
    pub plugins: Vec<CellPlugin>,
    /// Hex SHA-256 of the data the cell was computed on (both splits, after subsets and label
    /// noise; `ablate_data::Dataset::sha256`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_sha256: Option<String>,
}

/// The plugin library one factor of a cell came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CellPlugin {
    /// `prior`, `likelihood`, `integrator` or `noise`.
    pub kind: String,
    /// The plugin's name in the grid (`gaussian`, `sym-euler`, ...).
    pub name: String,
    /// The library's absolute path when the cell ran.
    pub path: String,
    /// Hex SHA-256 of the library file.
    pub sha256: String,
}

impl CellStatus {
    /// A cell that has just started.
    pub fn running() -> CellStatus {
        CellStatus {
            status: CellState::Running,
            message: None,
            wall_seconds: 0.0,
            diverged_at_step: None,
            finished_at: None,
            batch: Vec::new(),
            provenance: None,
        }
    }

    /// Done, failed and diverged cells are finished; running ones were interrupted, and
    /// interrupted ones run again.
    pub fn is_finished(&self) -> bool {
        !matches!(self.status, CellState::Running | CellState::Interrupted)
    }

    /// Done or diverged: the cell holds results of its own (a failed cell may have failed before
    /// its worker wrote `config.json` and `labels.json`).
    pub fn has_results(&self) -> bool {
        matches!(self.status, CellState::Done | CellState::Diverged)
    }
}

/// A failure message without the `cell <id> (labels): ` prefix the worker puts in front of it,
/// for displays that show the cell's id and labels in their own columns. Other messages (older
/// runs, another cell's prefix) come back unchanged.
pub fn message_without_cell<'a>(message: &'a str, id: &str) -> &'a str {
    message
        .strip_prefix("cell ")
        .and_then(|rest| rest.strip_prefix(id))
        .and_then(|rest| rest.strip_prefix(" ("))
        .and_then(|rest| rest.split_once("): ").map(|(_, m)| m))
        .unwrap_or(message)
}

#[cfg(test)]
mod tests {
    use super::message_without_cell;

    #[test]
    fn the_cell_prefix_goes_and_nothing_else() {
        let m = "cell 0123abcd (prior.name=gaussian, temperature=0.1, seed=1): likelihood plugin `x` failed";
        assert_eq!(message_without_cell(m, "0123abcd"), "likelihood plugin `x` failed");
        assert_eq!(message_without_cell(m, "ffff0000"), m, "another cell's prefix stays");
        assert_eq!(message_without_cell("plain message", "0123abcd"), "plain message");
        assert_eq!(message_without_cell("cell 0123abcd (no end", "0123abcd"), "cell 0123abcd (no end");
    }
}
