//! Pieces shared by several subcommands: versions, grid loading with plugin checks, the manifest.

use std::path::{Path, PathBuf};

use ablate_grid::Grid;
use ablate_plugin_host::{Registry, SearchPath};
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

/// The repository this binary was built from (its plugin templates and SDK).
pub fn source_root() -> PathBuf {
    // core/ablate -> repository root.
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The git revision this binary was built from (recorded by the build script; `None` when it
/// was built outside a git checkout).
pub fn git_revision() -> Option<String> {
    option_env!("ABLATE_GIT_REVISION").map(str::to_owned)
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

/// Grid plus registry, all checked (structure, plugins and run-time rules in one pass; see
/// [`crate::grid_check`]).
pub fn load_checked(grid_path: &Path, plugin_dirs: &[PathBuf]) -> Result<(Grid, Registry)> {
    let checked = crate::grid_check::check(grid_path, plugin_dirs)?;
    Ok((checked.grid, checked.registry))
}

/// Plugin libraries as the manifest records them.
pub fn plugin_infos(registry: &Registry) -> Vec<ablate_store::PluginInfo> {
    registry
        .libraries()
        .iter()
        .map(|l| ablate_store::PluginInfo {
            name: l.build.clone(),
            // Absolute: a relative path means nothing once the run folder is read elsewhere.
            path: absolute_path(&l.path),
            sha256: l.sha256.clone(),
        })
        .collect()
}

/// The sha256 and absolute path of the library that provides plugin `name` of kind `kind`
/// (`prior`, ...), when one is loaded.
pub fn loaded_library(registry: &Registry, kind: &str, name: &str) -> Option<(String, String)> {
    let kind = ablate_sdk::FactorKind::ALL.into_iter().find(|k| k.as_str() == kind)?;
    library_of(registry, kind, name).ok()
}

/// The sha256 and absolute path of the library of plugin `name` of kind `kind`.
fn library_of(
    registry: &Registry,
    kind: ablate_sdk::FactorKind,
    name: &str,
) -> Result<(String, String), ablate_plugin_host::PluginError> {
    let library = registry.library_of(registry.get(kind, name)?);
    Ok((library.sha256.clone(), absolute_path(&library.path)))
}

fn absolute_path(path: &Path) -> String {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf()).display().to_string()
}

/// What computes `cfg` here: this build, libtorch, `device` and the library (path, sha256) of each
/// of its four factors, as the cell's `status.json` records it.
pub fn provenance(
    registry: &Registry,
    cfg: &ablate_grid::CellConfig,
    device: tch::Device,
) -> Result<ablate_records::Provenance> {
    use ablate_sdk::FactorKind;
    let factors = [
        (FactorKind::Prior, &cfg.prior.name),
        (FactorKind::Likelihood, &cfg.likelihood.name),
        (FactorKind::Integrator, &cfg.integrator.name),
        (FactorKind::Noise, &cfg.noise.name),
    ];
    let mut plugins = Vec::with_capacity(factors.len());
    for (kind, name) in factors {
        let (sha256, path) = library_of(registry, kind, name)?;
        plugins.push(ablate_records::CellPlugin { kind: kind.as_str().to_owned(), name: name.clone(), path, sha256 });
    }
    Ok(ablate_records::Provenance {
        ablate_version: VERSION.to_owned(),
        git_revision: git_revision(),
        libtorch_version: Some(libtorch_version()),
        device: ablate_engine::device::name(device),
        plugins,
        data_sha256: None,
    })
}

/// The cells of `cells` whose folder in `run` holds results (done or diverged) but another cell's
/// `config.json` or `labels.json`, each with what differs (see
/// [`ablate_store::CellDir::other_cells_files`]).
pub fn foreign_cells(run: &ablate_store::RunDir, cells: &[ablate_grid::Cell]) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for cell in cells {
        // A linked cell folder is left out of the report by the loader (and refused by runs).
        let Ok(Some(dir)) = run.existing_cell(&cell.id) else { continue };
        if !dir.has_results().unwrap_or(false) {
            continue;
        }
        if let Some(why) = dir.other_cells_files(&cell.config, &cell.labels)? {
            out.push((cell.id.clone(), why));
        }
    }
    Ok(out)
}

/// Human-readable list of strings, cut after `max`.
pub fn preview(items: &[String], max: usize) -> String {
    if items.len() <= max {
        items.join(", ")
    } else {
        format!("{}, ... ({} more)", items[..max].join(", "), items.len() - max)
    }
}

/// Number of CPUs this process may use: the CPUs of its affinity mask and cgroup quota
/// (`available_parallelism` reads both on Linux; `taskset` and Slurm's task binding set them),
/// capped by `SLURM_CPUS_PER_TASK` when Slurm grants fewer.
pub fn cores() -> usize {
    let available = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    cores_from(available, std::env::var("SLURM_CPUS_PER_TASK").ok().as_deref())
}

/// [`cores`] from its inputs: `available` CPUs and the value of `SLURM_CPUS_PER_TASK` (ignored
/// when it is not a positive integer).
pub fn cores_from(available: usize, slurm_cpus_per_task: Option<&str>) -> usize {
    let granted = slurm_cpus_per_task.and_then(|v| v.trim().parse::<usize>().ok()).filter(|&n| n > 0);
    match granted {
        Some(n) => n.min(available.max(1)),
        None => available.max(1),
    }
}

#[cfg(test)]
mod tests {
    use super::cores_from;

    #[test]
    fn cores_follow_the_slurm_allocation() {
        assert_eq!(cores_from(16, None), 16);
        assert_eq!(cores_from(16, Some("4")), 4);
        assert_eq!(cores_from(2, Some("8")), 2, "the affinity mask wins when it is smaller");
        assert_eq!(cores_from(16, Some("0")), 16);
        assert_eq!(cores_from(16, Some("x")), 16);
        assert_eq!(cores_from(0, None), 1);
    }
}

/// The error and its causes joined by ": ", leaving out a cause whose text the message before
/// it already contains (library errors often show their source in their own message, which
/// `{:#}` then printed twice: "No such file (os error 2): No such file (os error 2)").
pub fn error_chain(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain() {
        let part = cause.to_string();
        if text.contains(&part) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&part);
    }
    text
}

#[cfg(test)]
mod error_chain_tests {
    #[test]
    fn a_cause_already_in_the_message_is_not_repeated() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file");
        let e = anyhow::Error::new(io).context("cannot read x.json: No such file").context("writing the report");
        assert_eq!(super::error_chain(&e), "writing the report: cannot read x.json: No such file");
        let e = anyhow::anyhow!("inner").context("outer");
        assert_eq!(super::error_chain(&e), "outer: inner");
    }
}
