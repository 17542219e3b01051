//! Pieces shared by several subcommands: versions, grid loading with plugin checks, the manifest.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use ablate_grid::{Grid, GridError, Problem};
use ablate_plugin_host::{Registry, SearchPath};
use ablate_sdk::FactorKind;
use anyhow::{Context, Result};

/// The version of this binary.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The libtorch library folder the binary was linked against (from build.rs).
pub fn libtorch_lib() -> Option<&'static str> {
    option_env!("ABLATE_LIBTORCH_LIB")
}

/// The libtorch version: the `build-version` file of the linked libtorch distribution when it has
/// one, else the version that tch =0.24.0 binds (tch does not expose it at run time).
pub fn libtorch_version() -> String {
    if let Some(lib) = libtorch_lib() {
        let lib = Path::new(lib);
        for candidate in [lib.join("../build-version"), lib.join("../version.txt")] {
            if let Ok(text) = std::fs::read_to_string(&candidate) {
                let v = text.trim();
                if !v.is_empty() {
                    return v.to_owned();
                }
            }
        }
    }
    "2.11.0".to_owned()
}

/// The repository this binary was built from (for `git rev-parse HEAD`).
pub fn source_root() -> PathBuf {
    // core/ablate -> repository root.
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn git_revision() -> Option<String> {
    ablate_store::git_revision(&source_root())
}

/// Read and expand a grid file; the error lists every problem with its JSON path.
pub fn load_grid(path: &Path) -> Result<Grid> {
    Grid::from_path(path).map_err(|e| anyhow::anyhow!("{e}\n  (`ablate grid schema` prints the grid file format)"))
}

/// Load every plugin on the standard search path plus `extra`.
pub fn load_registry(extra: &[PathBuf]) -> Result<Registry> {
    let search = SearchPath::standard(extra);
    let registry = Registry::load(&search).with_context(|| {
        let dirs: Vec<String> = search.dirs.iter().map(|(d, why)| format!("{} ({why})", d.display())).collect();
        format!("loading plugins from: {}", if dirs.is_empty() { "(no folder)".to_owned() } else { dirs.join(", ") })
    })?;
    if registry.libraries().is_empty() {
        tracing::warn!(
            "no plugin library found; build them with `cargo build -p ablate-plugin-priors -p ablate-plugin-likelihoods \
             -p ablate-plugin-integrators -p ablate-plugin-noise`, or pass --plugins DIR"
        );
    }
    Ok(registry)
}

/// Check every plugin name and parameter set of every cell against the loaded plugins, before
/// anything runs. Identical references are checked once; every failing cell is reported.
pub fn validate_plugins(grid: &Grid, registry: &Registry, source: &Path) -> Result<(), GridError> {
    let mut problems = Vec::new();
    let mut checked: std::collections::HashMap<(String, String, String), Option<String>> = Default::default();
    let mut reported: BTreeSet<(String, String)> = BTreeSet::new();
    for u in grid.plugin_refs() {
        let kind = FactorKind::parse(u.kind).unwrap_or(FactorKind::Prior);
        let key = (u.kind.to_owned(), u.name.clone(), ablate_grid::canonical_json(&u.params));
        let outcome = checked
            .entry(key.clone())
            .or_insert_with(|| registry.validate(kind, &u.name, &u.params).err().map(|e| e.to_string()))
            .clone();
        if let Some(message) = outcome {
            // Report each distinct (source place, problem) once, naming the first cell.
            // Where in the file: the plugin reference itself and any axis setting one of its
            // parameters.
            let mut sources = vec![u.source.clone()];
            if let Some(params) = u.params.as_object() {
                for key in params.keys() {
                    let s = grid.source_of(u.cell, &format!("{}.params.{key}", u.kind));
                    if !sources.contains(&s) {
                        sources.push(s);
                    }
                }
            }
            let sources = sources.join(", ");
            if reported.insert((sources.clone(), message.clone())) {
                let help = if registry.get(kind, &u.name).is_ok() {
                    format!("`ablate plugins show {}` lists its parameters", u.name)
                } else {
                    "`ablate plugins list` shows the plugins found".to_owned()
                };
                problems.push(Problem::new(
                    u.path.clone(),
                    message,
                    format!("set in {sources} of {}; {help}", source.display()),
                ));
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(GridError::new(problems).with_source(source.display().to_string()))
    }
}

/// Grid plus registry, all checked.
pub fn load_checked(grid_path: &Path, plugin_dirs: &[PathBuf]) -> Result<(Grid, Registry)> {
    let grid = load_grid(grid_path)?;
    let registry = load_registry(plugin_dirs)?;
    validate_plugins(&grid, &registry, grid_path).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok((grid, registry))
}

/// Plugin libraries as the manifest records them.
pub fn plugin_infos(registry: &Registry) -> Vec<ablate_store::PluginInfo> {
    registry
        .libraries()
        .iter()
        .map(|l| ablate_store::PluginInfo {
            name: l.build.clone(),
            path: l.path.display().to_string(),
            sha256: l.sha256.clone(),
        })
        .collect()
}

/// Human-readable list of strings, cut after `max`.
pub fn preview(items: &[String], max: usize) -> String {
    if items.len() <= max {
        items.join(", ")
    } else {
        format!("{}, ... ({} more)", items[..max].join(", "), items.len() - max)
    }
}

/// Number of CPUs this process may use.
pub fn cores() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}
