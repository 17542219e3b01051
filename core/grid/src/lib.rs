//! Grid files of `ablate`: the configuration of one cell, and grids of cells.
//!
//! A grid file names a `base` [`CellConfig`] and axes that vary paths inside it (`temperature`,
//! `seed`, `prior.params.scale`, ...). This crate
//! - reads and checks a grid file, reporting **every** problem with its JSON path and a hint
//!   ([`Grid::from_path`], [`GridError`]);
//! - expands it into cells in a deterministic order, each with a resolved config, display
//!   labels and a stable id ([`Grid::cells`], [`cell_id`]); the format is described in
//!   [`grid`];
//! - prints the grid file's JSON Schema ([`schema()`]);
//! - splits the cells into shards for job arrays ([`Shard`], [`shard()`], [`shard_from_env`]).
//!
//! Plugin names and parameters are not checked here: the caller passes
//! [`Grid::plugin_refs`] to the plugin host and reports its findings with the paths given.
//!
//! ```
//! let grid = ablate_grid::Grid::from_json_str(r#"{
//!   "name": "demo",
//!   "base": {"data": {"dataset": "digits"}, "model": {"kind": "mlp", "hidden": [50]}},
//!   "axes": [{"path": "temperature", "values": [1.0, 0.1]}, {"path": "seed", "values": [1, 2]}]
//! }"#).unwrap();
//! assert_eq!(grid.cells.len(), 4);
//! assert_eq!(grid.cells[1].labels["seed"], 2);
//! ```

pub mod config;
mod dupkeys;
pub mod grid;
pub mod problem;
pub mod schema;
mod sha256;
mod shape;
pub mod shard;

pub use config::CellConfig;
pub use grid::{
    canonical_json, cell_id, check_run_name, Axis, Cell, Checked, Grid, PluginUse, MAX_CELLS, MAX_EXCLUDE,
    MAX_GRID_BYTES, MAX_NAME_LEN, PLUGIN_KINDS,
};
pub use problem::{GridError, Problem};
pub use schema::schema;
pub use shard::{shard, shard_from_env, shard_from_vars, Shard, ShardError};
