//! Grid files: the cell configuration and the expansion of a grid into cells.
pub mod config;
