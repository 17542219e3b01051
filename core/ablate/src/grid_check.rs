//! The full check of a grid file before anything runs, shared by `ablate grid check` and
//! `ablate run`: structure and values ([`ablate_grid::Grid::check_path`]), every plugin name
//! and parameter set, and the run-time rules of [`ablate_engine::compat`] (a likelihood that
//! needs another model, a dataset that is not cached), all reported in one pass.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};

use ablate_grid::{Grid, GridError, PluginUse, Problem};
use ablate_plugin_host::Registry;
use ablate_sdk::FactorKind;
use anyhow::Result;

/// A grid with no problem, the plugins it was checked against, and the distinct plugin
/// references it uses.
pub struct CheckedGrid {
    pub grid: Grid,
    pub registry: Registry,
    pub plugins: Vec<PluginUse>,
}

/// Reads and checks `path` completely; the error lists every problem found, each with its JSON
/// path (or line and column) in the file.
pub fn check(path: &Path, plugin_dirs: &[PathBuf]) -> Result<CheckedGrid> {
    let checked = Grid::check_path(path);
    let mut problems = checked.problems;
    let registry = match crate::common::load_registry(plugin_dirs) {
        Ok(r) => Some(r),
        Err(e) => {
            problems.push(Problem::new(
                "",
                crate::common::error_chain(&e),
                "plugins could not be loaded, so they were not checked",
            ));
            None
        }
    };
    if let Some(registry) = &registry {
        problems.extend(plugin_problems(&checked.plugins, checked.grid.as_ref(), registry, path));
        if let Some(grid) = &checked.grid {
            problems.extend(equivalent_plugin_values(grid, registry));
            problems.extend(compat_problems(grid, registry));
        }
    }
    match (checked.grid, registry) {
        (Some(grid), Some(registry)) if problems.is_empty() => {
            Ok(CheckedGrid { grid, registry, plugins: checked.plugins })
        }
        _ => Err(anyhow::anyhow!(
            "{}\n  (`ablate grid schema` prints the grid file format)",
            GridError::new(problems).with_source(path.display().to_string())
        )),
    }
}

/// Each distinct plugin reference checked once against the loaded plugins.
fn plugin_problems(uses: &[PluginUse], grid: Option<&Grid>, registry: &Registry, source: &Path) -> Vec<Problem> {
    let mut out = Vec::new();
    let mut reported: BTreeSet<(String, String)> = BTreeSet::new();
    for u in uses {
        let kind = FactorKind::parse(u.kind).unwrap_or(FactorKind::Prior);
        let Err(e) = registry.validate(kind, &u.name, &u.params) else {
            continue;
        };
        let message = e.to_string();
        // Where in the file: the plugin reference itself and any axis setting one of its
        // parameters.
        let mut sources = vec![u.source.clone()];
        if let (Some(grid), Some(params)) = (grid, u.params.as_object()) {
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
            out.push(Problem::new(
                u.path.clone(),
                message,
                format!("set in {sources} of {}; {help}", source.display()),
            ));
        }
    }
    out
}

/// Two values of one plugin axis that are the same plugin configuration once the defaults of
/// its parameters are filled in (`{"name": "gaussian"}` and `{"name": "gaussian", "params":
/// {"scale": 1.0}}`): they would run the same cells twice, as two levels. Refused like two
/// equal values (and, like them, allowed on zipped axes).
fn equivalent_plugin_values(grid: &Grid, registry: &Registry) -> Vec<Problem> {
    let mut out = Vec::new();
    for (k, axis) in grid.axes.iter().enumerate() {
        // A zipped axis repeats values on purpose (each pairs with another axis's value).
        if grid.zip.iter().any(|group| group.contains(&k)) {
            continue;
        }
        let Some(kind) = FactorKind::parse(&axis.path) else { continue };
        let mut first: HashMap<String, usize> = HashMap::new();
        for (j, value) in axis.values.iter().enumerate() {
            let Some(filled) = with_defaults(registry, kind, value) else { continue };
            let canonical = ablate_grid::canonical_json(&filled);
            match first.get(&canonical) {
                Some(&i) => out.push(Problem::new(
                    format!("axes[{k}].values[{j}]"),
                    format!(
                        "the same {} as axes[{k}].values[{i}] once its parameters' defaults are filled in ({canonical}); \
                         the two would run the same cells twice, as separate levels",
                        axis.path
                    ),
                    "remove one of them",
                )),
                None => {
                    first.insert(canonical, j);
                }
            }
        }
    }
    out
}

/// `{"name", "params"}` of a plugin reference with every published parameter default filled
/// in, numbers as f64 (1 and 1.0 are one setting); `None` for a value that is not a known plugin.
fn with_defaults(registry: &Registry, kind: FactorKind, value: &serde_json::Value) -> Option<serde_json::Value> {
    let name = value.get("name")?.as_str()?;
    let factory = registry.get(kind, name).ok()?;
    let defaults = factory
        .params
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|spec| Some((spec.get("name")?.as_str()?.to_owned(), spec.get("default")?.clone())));
    let given = value.get("params").and_then(serde_json::Value::as_object).into_iter().flatten();
    let mut params = serde_json::Map::new();
    for (p, v) in defaults.chain(given.map(|(p, v)| (p.clone(), v.clone()))) {
        let v = v.as_f64().map_or(v, |x| serde_json::json!(x));
        params.insert(p, v);
    }
    Some(serde_json::json!({"name": name, "params": params}))
}

/// [`ablate_engine::compat`] on every cell, placed at the value in the file that causes it.
/// Cells that agree on every axis that can matter (data, model, plugins, sampler) are checked
/// once, so a million cells that differ in temperature and seed cost a million small look-ups.
fn compat_problems(grid: &Grid, registry: &Registry) -> Vec<Problem> {
    let relevant: Vec<usize> = grid
        .axes
        .iter()
        .enumerate()
        .filter(|(_, a)| !matches!(a.path.as_str(), "temperature" | "seed"))
        .map(|(k, _)| k)
        .collect();
    let mut compat = ablate_engine::compat::Compat::new(registry);
    let mut seen: HashSet<Vec<usize>> = HashSet::new();
    let mut found: Vec<(Problem, Vec<usize>)> = Vec::new();
    let mut index: HashMap<(String, String), usize> = HashMap::new();
    for cell in &grid.cells {
        let key: Vec<usize> = relevant.iter().map(|&k| cell.axis_values[k]).collect();
        if !seen.insert(key) {
            continue;
        }
        for mut p in compat.cell_problems(&cell.config) {
            p.path = grid.source_of(cell.index, &p.path);
            match index.get(&(p.path.clone(), p.message.clone())) {
                Some(&i) => found[i].1.push(cell.index),
                None => {
                    index.insert((p.path.clone(), p.message.clone()), found.len());
                    found.push((p, vec![cell.index]));
                }
            }
        }
    }
    found
        .into_iter()
        .map(|(mut p, cells)| {
            let shown: Vec<String> = cells.iter().take(4).map(|c| format!("cells[{c}]")).collect();
            let more = if cells.len() > 4 { " and more" } else { "" };
            p.message = format!("{} (in {}{more})", p.message, shown.join(", "));
            p
        })
        .collect()
}
