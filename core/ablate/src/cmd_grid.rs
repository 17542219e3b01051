//! `ablate grid expand|check|schema`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum GridCommand {
    /// List the cells of a grid: position, id and axis labels.
    #[command(
        after_help = "Examples:\n  ablate grid expand ablations/quickstart.json\n  ablate grid expand grid.json --json > cells.json"
    )]
    Expand {
        /// The grid file.
        grid: PathBuf,
        /// Print JSON (one object per cell with its resolved config) instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Check a grid file, including every plugin name and parameter, without running anything.
    #[command(after_help = "Example:\n  ablate grid check ablations/quickstart.json")]
    Check {
        /// The grid file.
        grid: PathBuf,
        #[command(flatten)]
        plugins: crate::PluginDirs,
    },
    /// Print the JSON Schema of grid files to stdout.
    #[command(after_help = "Example:\n  ablate grid schema > grid.schema.json")]
    Schema,
}

pub fn run(cmd: GridCommand) -> Result<ExitCode> {
    match cmd {
        GridCommand::Expand { grid, json } => expand(&grid, json),
        GridCommand::Check { grid, plugins } => {
            let crate::grid_check::CheckedGrid { grid: g, registry, plugins: uses } =
                crate::grid_check::check(&grid, &plugins.dirs)?;
            let mut used: Vec<String> = uses.into_iter().map(|u| format!("{} {}", u.kind, u.name)).collect();
            used.sort();
            used.dedup();
            println!(
                "{}: ok: grid `{}`, {} cells, {} axes; plugins used: {} (from {} libraries)",
                grid.display(),
                g.name,
                g.cells.len(),
                g.axes.len(),
                used.join(", "),
                registry.libraries().len()
            );
            Ok(ExitCode::SUCCESS)
        }
        GridCommand::Schema => {
            println!("{}", serde_json::to_string_pretty(&ablate_grid::schema())?);
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn expand(path: &std::path::Path, json: bool) -> Result<ExitCode> {
    let grid = crate::common::load_grid(path)?;
    if json {
        let cells: Vec<serde_json::Value> = grid
            .cells
            .iter()
            .map(|c| serde_json::json!({"index": c.index, "id": c.id, "labels": c.labels, "config": c.config}))
            .collect();
        println!("{}", serde_json::to_string_pretty(&cells)?);
        return Ok(ExitCode::SUCCESS);
    }
    // Columns: index, id, then every label key in first-seen order.
    let mut keys: Vec<String> = Vec::new();
    for c in &grid.cells {
        for k in c.labels.keys() {
            if !keys.contains(k) {
                keys.push(k.clone());
            }
        }
    }
    let mut rows: Vec<Vec<String>> =
        vec![["#", "id"].iter().map(|s| s.to_string()).chain(keys.iter().cloned()).collect()];
    for c in &grid.cells {
        let mut row = vec![c.index.to_string(), c.id.clone()];
        for k in &keys {
            row.push(match c.labels.get(k) {
                Some(serde_json::Value::String(s)) => s.clone(),
                Some(v) => v.to_string(),
                None => String::new(),
            });
        }
        rows.push(row);
    }
    let widths: Vec<usize> =
        (0..rows[0].len()).map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0)).collect();
    println!("grid `{}`: {} cells", grid.name, grid.cells.len());
    for r in rows {
        let line: Vec<String> = r.iter().zip(&widths).map(|(s, w)| format!("{s:<w$}")).collect();
        println!("{}", line.join("  ").trim_end());
    }
    Ok(ExitCode::SUCCESS)
}
