//! Reading a grid file, checking it, and expanding it into cells.
//!
//! A grid file is JSON:
//!
//! ```json
//! {
//!   "name": "cold-posterior-mlp",
//!   "description": "T x prior scale on digits",
//!   "base": { "data": { "dataset": "digits" }, "model": { "kind": "mlp", "hidden": [100] } },
//!   "axes": [
//!     { "path": "temperature", "values": [1.0, 0.1, 0.01] },
//!     { "path": "prior.params.scale", "name": "scale", "values": [1.0, 0.1] },
//!     { "path": "seed", "values": [1, 2] }
//!   ],
//!   "zip": [],
//!   "exclude": [ { "temperature": 0.01, "scale": 0.1 } ]
//! }
//! ```
//!
//! - Each axis sets a dot-separated `path` inside `base` (missing objects are created) to each of
//!   its `values` in turn. `name` is its display name (default: the path) and `labels` optional
//!   display labels, one per value.
//! - `zip` lists groups of axes (by name or path) that vary together: equal lengths, the i-th
//!   values go together, and the group counts as one axis placed where its first member is.
//! - `exclude` drops every cell that matches all the `axis: value` pairs of one entry (a value
//!   matches an axis value, or its label).
//! - `reference` (optional, one `{axis: value, ...}` object matched like an `exclude` entry)
//!   names the reference cells, e.g. `{"integrator": "hmc", "temperature": 1}`: they run like the
//!   others, and the report compares every other cell's predictive with the reference
//!   ensemble's. It needs `eval.store_predictions: true` in every cell (the grid does not turn it
//!   on by itself, so that cell ids never depend on the `reference` key).
//!
//! **Order.** Cells come in nested-loop order over the axes as written: the first axis is the
//! outermost loop, the last one varies fastest. Excluded cells are removed without renumbering
//! gaps, i.e. `cells[i]` is the i-th surviving cell. The order depends only on the file, so
//! `--shard i/N` picks the same cells on every machine.
//!
//! **Cell id.** The first 16 hex digits of the SHA-256 of the canonical JSON (sorted keys, no
//! whitespace) of the resolved config with every default filled in: key order in the file, and
//! whether a default is written out, do not change it.

use std::collections::HashMap;
use std::path::Path;

use serde_json::{Map, Value};

use crate::config::{CellConfig, PluginRef};
use crate::problem::{join_index, join_key, show, type_name, GridError, Problem};
use crate::shape::{self, Shape};

/// More cells than this is almost surely a mistake (and would not fit in memory anyway).
pub const MAX_CELLS: usize = 1_000_000;

/// Problems beyond this many are summarised in one line.
const MAX_PROBLEMS: usize = 200;

/// Grid files larger than this are refused before parsing (1e6 seeds take about 7 MB).
pub const MAX_GRID_BYTES: usize = 16 << 20;

/// `exclude` entries (each is matched against every cell).
pub const MAX_EXCLUDE: usize = 1_000;

/// Longest grid `name` (it names the run folder).
pub const MAX_NAME_LEN: usize = 100;

/// Duplicate JSON keys reported at most.
const MAX_DUPLICATES: usize = 50;

const TOP_KEYS: &[&str] = &["$schema", "name", "description", "base", "axes", "zip", "exclude", "reference"];
const AXIS_KEYS: &[&str] = &["path", "values", "name", "labels"];

/// The plugin slots of a config, in the order [`Grid::plugin_refs`] lists them.
pub const PLUGIN_KINDS: &[&str] = &["integrator", "prior", "likelihood", "noise"];

/// One axis of a grid.
#[derive(Debug, Clone, PartialEq)]
pub struct Axis {
    /// Display name (the `name` key, or the path).
    pub name: String,
    /// Dot-separated path into the config.
    pub path: String,
    pub values: Vec<Value>,
    /// Display labels, one per value, when the file gives them.
    pub labels: Option<Vec<String>>,
}

impl Axis {
    /// The label of value `i`: its display label, or the value itself.
    pub fn label(&self, i: usize) -> Value {
        match &self.labels {
            Some(l) => Value::String(l[i].clone()),
            None => self.values[i].clone(),
        }
    }
}

/// One cell of an expanded grid.
#[derive(Debug, Clone, PartialEq)]
pub struct Cell {
    /// Position in the deterministic order (what sharding uses).
    pub index: usize,
    /// Stable id: 16 hex digits of the SHA-256 of the canonical resolved config.
    pub id: String,
    pub config: CellConfig,
    /// Axis display name -> label (or value), in axis order; always has `temperature` and
    /// `seed`, which hold the resolved numbers (also when an axis of that name has labels).
    pub labels: Map<String, Value>,
    /// For each axis of the grid, the index of the value this cell takes.
    pub axis_values: Vec<usize>,
}

/// A plugin named by one cell, for the plugin host to check ([`Grid::plugin_refs`]).
#[derive(Debug, Clone, PartialEq)]
pub struct PluginUse {
    /// Index of the cell.
    pub cell: usize,
    /// `integrator`, `prior`, `likelihood` or `noise`.
    pub kind: &'static str,
    pub name: String,
    pub params: Value,
    /// Path in the expanded grid: `cells[3].prior`.
    pub path: String,
    /// Where in the grid file the reference comes from: `base.prior`, `axes[1].values[0]`.
    /// For a problem with one parameter, [`Grid::source_of`] gives a sharper place.
    pub source: String,
}

/// A checked and expanded grid.
#[derive(Debug, Clone, PartialEq)]
pub struct Grid {
    pub name: String,
    pub description: String,
    /// The `base` object as written.
    pub base: Value,
    pub axes: Vec<Axis>,
    /// Zipped groups, as axis indices.
    pub zip: Vec<Vec<usize>>,
    /// The cells in deterministic order.
    pub cells: Vec<Cell>,
    /// Positions in `cells` of the reference cells (`reference` key), empty without one.
    pub reference: Vec<usize>,
}

/// The outcome of checking a grid file ([`Grid::check_path`], [`Grid::check_str`]): every
/// problem found, and what could be expanded despite them, so that the caller can check plugins
/// and run-time rules in the same pass.
#[derive(Debug, Clone)]
pub struct Checked {
    /// The grid with the cells that resolved (all of them when `problems` is empty); `None` when
    /// the file is not JSON or its structure (axes, zip) cannot be expanded.
    pub grid: Option<Grid>,
    /// The plugin references to check: one per distinct (kind, name, parameters), from the
    /// resolved cells or, when there are none, from `base`.
    pub plugins: Vec<PluginUse>,
    /// Every problem found, with its JSON path (or line/column).
    pub problems: Vec<Problem>,
}

impl Checked {
    /// The grid when there is no problem, else every problem as one error.
    pub fn into_result(self) -> Result<Grid, GridError> {
        match self.grid {
            Some(g) if self.problems.is_empty() => Ok(g),
            _ => Err(GridError::new(self.problems)),
        }
    }
}

impl Grid {
    /// Reads, checks and expands a grid file. The error lists every problem found.
    pub fn from_path(path: &Path) -> Result<Grid, GridError> {
        let name = path.display().to_string();
        Grid::check_path(path).into_result().map_err(|e| e.with_source(name))
    }

    /// Parses, checks and expands grid-file text.
    pub fn from_json_str(text: &str) -> Result<Grid, GridError> {
        Grid::check_str(text).into_result()
    }

    /// Checks and expands a parsed grid file.
    pub fn from_value(value: &Value) -> Result<Grid, GridError> {
        Grid::check_value(value).into_result()
    }

    /// Reads and checks a grid file, keeping what could be expanded ([`Checked`]). Files over
    /// [`MAX_GRID_BYTES`] are refused unread.
    pub fn check_path(path: &Path) -> Checked {
        let name = path.display().to_string();
        let fail = |message: String, hint: &str| Checked {
            grid: None,
            plugins: Vec::new(),
            problems: vec![Problem::new("", message, hint)],
        };
        match std::fs::metadata(path) {
            Ok(m) if m.len() > MAX_GRID_BYTES as u64 => {
                return fail(
                    format!("{name} is {} bytes; grid files are limited to {MAX_GRID_BYTES} bytes", m.len()),
                    "a grid this large is almost surely generated by mistake; split it into several files",
                )
            }
            Ok(m) if !m.is_file() => return fail(format!("{name} is not a file"), "pass the grid file's path"),
            _ => {}
        }
        match std::fs::read_to_string(path) {
            Ok(text) => Grid::check_str(&text),
            Err(e) => fail(format!("cannot read {name}: {e}"), "check the path and its permissions"),
        }
    }

    /// Parses and checks grid-file text: syntax, duplicate keys, then [`Grid::check_value`].
    pub fn check_str(text: &str) -> Checked {
        // A UTF-8 byte order mark (some Windows editors write one) is not JSON; it carries nothing.
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let fail = |problems: Vec<Problem>| Checked { grid: None, plugins: Vec::new(), problems };
        if text.len() > MAX_GRID_BYTES {
            return fail(vec![Problem::new(
                "",
                format!("the grid file is {} bytes; grid files are limited to {MAX_GRID_BYTES} bytes", text.len()),
                "a grid this large is almost surely generated by mistake; split it into several files",
            )]);
        }
        let value: Value = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(e) => {
                return fail(vec![Problem::new(
                    format!("line {}, column {}", e.line(), e.column()),
                    format!("not valid JSON: {e}"),
                    "a grid file is one JSON object; `ablate grid schema` prints its schema",
                )])
            }
        };
        let dups: Vec<Problem> = crate::dupkeys::duplicates(text, MAX_DUPLICATES)
            .into_iter()
            .map(|d| {
                Problem::new(
                    d.path,
                    format!(
                        "duplicate key `{}` at line {}, column {} (first at line {}, column {}); JSON keeps only the last",
                        d.key, d.at.0, d.at.1, d.first.0, d.first.1
                    ),
                    "remove one of the two, or merge them",
                )
            })
            .collect();
        let mut checked = Grid::check_value(&value);
        if !dups.is_empty() {
            checked.problems.splice(0..0, dups);
        }
        checked
    }

    /// Checks and expands a parsed grid file, keeping what could be expanded ([`Checked`]).
    pub fn check_value(value: &Value) -> Checked {
        let mut p = Problems::default();
        let grid = parse(value, &mut p);
        if p.plugins.is_empty() {
            // Nothing resolved: check what `base` names, so that plugin problems come with the
            // structural ones rather than after them.
            if let Some(base) = value.get("base").and_then(Value::as_object) {
                for kind in PLUGIN_KINDS {
                    let r = match base.get(*kind) {
                        None => serde_json::from_value::<CellConfig>(serde_json::json!({
                            "data": {"dataset": "digits"}, "model": {"kind": "mlp", "hidden": []}
                        }))
                        .ok()
                        .map(|c| match *kind {
                            "integrator" => c.integrator,
                            "prior" => c.prior,
                            "likelihood" => c.likelihood,
                            _ => c.noise,
                        }),
                        Some(v) => serde_json::from_value::<PluginRef>(v.clone()).ok(),
                    };
                    if let Some(r) = r {
                        let at = join_key("base", kind);
                        p.note_plugin(PluginUse {
                            cell: 0,
                            kind,
                            name: r.name,
                            params: r.params,
                            path: at.clone(),
                            source: at,
                        });
                    }
                }
            }
        }
        let plugins = std::mem::take(&mut p.plugins);
        Checked { grid, plugins, problems: p.into_error().problems }
    }

    pub fn len(&self) -> usize {
        self.cells.len()
    }

    pub fn is_empty(&self) -> bool {
        self.cells.is_empty()
    }

    /// Every plugin reference of every cell (four per cell), for the plugin host to check names
    /// and parameters and report problems with paths.
    pub fn plugin_refs(&self) -> Vec<PluginUse> {
        let mut out = Vec::with_capacity(self.cells.len() * PLUGIN_KINDS.len());
        for cell in &self.cells {
            let c = &cell.config;
            let refs: [&PluginRef; 4] = [&c.integrator, &c.prior, &c.likelihood, &c.noise];
            for (kind, r) in PLUGIN_KINDS.iter().zip(refs) {
                out.push(PluginUse {
                    cell: cell.index,
                    kind,
                    name: r.name.clone(),
                    params: r.params.clone(),
                    path: join_key(&join_index("cells", cell.index), kind),
                    source: self.source_of(cell.index, kind),
                });
            }
        }
        out
    }

    /// Where in the grid file the value at `config_path` (`prior.params.scale`, `model.hidden[0]`)
    /// of cell `cell` comes from: `axes[k].values[j]...` when an axis sets it (or a key above
    /// it), otherwise `base.<config_path>`.
    pub fn source_of(&self, cell: usize, config_path: &str) -> String {
        let Some(c) = self.cells.get(cell) else {
            return join_key(&join_index("cells", cell), config_path);
        };
        let paths: Vec<String> = self.axes.iter().map(|a| json_path(&a.path)).collect();
        source_of(&paths, &c.axis_values, config_path)
    }
}

/// Whether `name` is usable as the run folder's name: one path component that stays under
/// `--out` (ASCII letters, digits, `-`, `_`, `.`; starts with a letter or digit, so never `.`,
/// `..` or hidden; at most [`MAX_NAME_LEN`] characters). The error says what is wrong.
pub fn check_run_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("it is empty".into());
    }
    if name.len() > MAX_NAME_LEN {
        return Err(format!("it has {} characters; at most {MAX_NAME_LEN}", name.len()));
    }
    if let Some(c) = name.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))) {
        let what = match c {
            '/' | '\\' => "a path separator".to_owned(),
            '\0' => "a NUL byte".to_owned(),
            c if c.is_whitespace() || c.is_control() => format!("the character {c:?}"),
            c => format!("the character `{c}`"),
        };
        return Err(format!("it contains {what}"));
    }
    if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err("it must start with a letter or digit (not `.`, `-` or `_`)".into());
    }
    Ok(())
}

/// The first 16 hex digits of the SHA-256 of the canonical JSON of `config`.
pub fn cell_id(config: &CellConfig) -> String {
    let value = serde_json::to_value(config).unwrap_or(Value::Null);
    let digest = crate::sha256::sha256(canonical_json(&value).as_bytes());
    hex::encode(&digest[..8])
}

/// JSON with object keys sorted (recursively) and no whitespace.
pub fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json_str(k, out);
                out.push(':');
                write_canonical(v, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(v, out);
            }
            out.push(']');
        }
        Value::String(s) => write_json_str(s, out),
        other => out.push_str(&other.to_string()),
    }
}

/// A JSON string literal, as `serde_json` writes it (plain ASCII is copied directly).
fn write_json_str(s: &str, out: &mut String) {
    if s.bytes().all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\') {
        out.push('"');
        out.push_str(s);
        out.push('"');
    } else {
        out.push_str(&Value::from(s).to_string());
    }
}

// ---------------------------------------------------------------------------------------------
// Collecting problems

/// Problems found so far; those found in expanded cells are merged by (path, message) and
/// remember which cells they occur in.
#[derive(Default)]
struct Problems {
    /// Each problem with the cells it occurs in (`None`: not tied to cells).
    list: Vec<(Problem, Option<Vec<usize>>)>,
    seen: HashMap<(String, String), usize>,
    /// Number of cells after expansion (0 before).
    total_cells: usize,
    /// Distinct plugin references met so far (see [`Checked::plugins`]).
    plugins: Vec<PluginUse>,
    plugin_keys: std::collections::HashSet<(&'static str, String, String)>,
}

impl Problems {
    /// A repeated value is fine in a zipped axis: its cells differ through the other axes of
    /// the group (cells that would really be equal are still caught after expansion).
    fn forgive_zipped_duplicates(&mut self, zip: &[Vec<usize>]) {
        let zipped: Vec<String> =
            zip.iter().filter(|g| g.len() >= 2).flatten().map(|k| format!("axes[{k}].values[")).collect();
        self.list.retain(|(p, _)| {
            !(p.message.starts_with("duplicate value") && zipped.iter().any(|z| p.path.starts_with(z)))
        });
        self.seen = self.list.iter().enumerate().map(|(i, (p, _))| ((p.path.clone(), p.message.clone()), i)).collect();
    }

    fn push(&mut self, p: Problem) {
        self.push_in(p, None);
    }

    /// Records a plugin reference unless an equal one (kind, name, parameters) is known.
    fn note_plugin(&mut self, use_: PluginUse) {
        let key = (use_.kind, use_.name.clone(), canonical_json(&use_.params));
        if self.plugin_keys.insert(key) {
            self.plugins.push(use_);
        }
    }

    fn push_in(&mut self, p: Problem, cell: Option<usize>) {
        let key = (p.path.clone(), p.message.clone());
        match self.seen.get(&key) {
            Some(&i) => {
                if let (Some(cells), Some(c)) = (&mut self.list[i].1, cell) {
                    cells.push(c);
                }
            }
            None => {
                self.seen.insert(key, self.list.len());
                self.list.push((p, cell.map(|c| vec![c])));
            }
        }
    }

    /// Problems in the structure of axes or zip groups make expansion meaningless (a problem
    /// with one axis value does not: the cells using it are reported, the others checked).
    fn blocks_expansion(&self) -> bool {
        self.list
            .iter()
            .any(|(p, _)| (p.path.starts_with("axes") && !p.path.contains(".values[")) || p.path.starts_with("zip"))
    }

    fn into_error(self) -> GridError {
        let total = self.total_cells;
        let mut out: Vec<Problem> = self
            .list
            .into_iter()
            .map(|(mut p, cells)| {
                let cells = cells.unwrap_or_default();
                if !cells.is_empty() && cells.len() < total {
                    let shown: Vec<String> = cells.iter().take(4).map(|c| format!("cells[{c}]")).collect();
                    let more = if cells.len() > 4 { format!(" and {} more", cells.len() - 4) } else { String::new() };
                    p.message = format!("{} (in {}{more})", p.message, shown.join(", "));
                }
                p
            })
            .collect();
        if out.len() > MAX_PROBLEMS {
            let n = out.len() - MAX_PROBLEMS;
            out.truncate(MAX_PROBLEMS);
            out.push(Problem::new("", format!("... and {n} more problems"), "fix the ones above first"));
        }
        GridError::new(out)
    }
}

// ---------------------------------------------------------------------------------------------
// Parsing the file

fn parse(value: &Value, p: &mut Problems) -> Option<Grid> {
    let Some(root) = value.as_object() else {
        p.push(Problem::new(
            "$",
            format!("the whole file: a grid file is a JSON object, got {}", type_name(value)),
            "`ablate grid schema` prints the schema",
        ));
        return None;
    };
    for key in root.keys().filter(|k| !TOP_KEYS.contains(&k.as_str())) {
        p.push(shape::unknown_key(&join_key("", key), key, TOP_KEYS.iter().copied()));
    }

    let name = match root.get("name") {
        Some(Value::String(s)) if !s.trim().is_empty() => {
            if let Err(why) = check_run_name(s) {
                p.push(Problem::new(
                    "name",
                    format!("the grid name {} cannot name a run folder: {why}", show(&Value::from(s.as_str()))),
                    "the name becomes one folder under --out: use letters, digits, `-`, `_` and `.`, \
                     starting with a letter or digit (e.g. \"cold-mlp\")",
                ));
            }
            s.clone()
        }
        Some(Value::String(_)) => {
            p.push(Problem::new("name", "the grid name is empty", "name the run, e.g. \"cold-mlp\""));
            String::new()
        }
        Some(other) => {
            p.push(shape::wrong_type("name", "a string", other));
            String::new()
        }
        None => {
            p.push(Problem::new("name", "missing required key `name`", "name the run, e.g. \"cold-mlp\""));
            String::new()
        }
    };
    let description = match root.get("description") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => {
            p.push(shape::wrong_type("description", "a string", other));
            String::new()
        }
    };

    let config_shape = shape::cell_config();
    let base = match root.get("base") {
        Some(b @ Value::Object(_)) => {
            let mut found = Vec::new();
            shape::check(b, &config_shape, "base", true, &mut found);
            found.into_iter().for_each(|x| p.push(x));
            // Each value written in `base` is checked, also where an axis overrides it.
            base_field_problems(b, &config_shape).into_iter().for_each(|x| p.push(x));
            b.clone()
        }
        Some(other) => {
            p.push(shape::wrong_type("base", "an object (a partial cell config)", other));
            return None;
        }
        None => {
            p.push(Problem::new(
                "base",
                "missing required key `base`",
                "give the config shared by all cells, e.g. {\"data\": {...}, \"model\": {...}}",
            ));
            return None;
        }
    };

    let axes = parse_axes(root.get("axes"), &config_shape, p)?;
    let lookup = AxisLookup::new(&axes);
    let zip = parse_zip(root.get("zip"), &axes, &lookup, p)?;
    p.forgive_zipped_duplicates(&zip);
    let exclude = parse_exclude(root.get("exclude"), &axes, &lookup, p)?;
    let reference = match root.get("reference") {
        None | Some(Value::Null) => None,
        Some(entry) => parse_pairs("reference", entry, &axes, &lookup, p),
    };
    if p.blocks_expansion() {
        // Expanding would only repeat these problems once per cell; still check the ranges
        // of `base` on its own when it is a complete config.
        // On what is left once the reported keys and values are set aside, so that a range
        // problem is not hidden behind an unknown key elsewhere.
        let usable = shape::prune(&base, &config_shape).and_then(|b| serde_json::from_value::<CellConfig>(b).ok());
        if let Some(config) = usable {
            for mut prob in config.validate() {
                prob.path = format!("base.{}", prob.path);
                p.push(prob);
            }
        }
        return None;
    }

    let cells = expand(&base, &axes, &zip, &exclude, &config_shape, p)?;
    let reference = reference.map_or_else(Vec::new, |pairs| reference_cells(&pairs, &axes, &cells, p));
    Some(Grid { name, description, base, axes, zip, cells, reference })
}

fn parse_axes(value: Option<&Value>, config_shape: &Shape, p: &mut Problems) -> Option<Vec<Axis>> {
    let items = match value {
        None | Some(Value::Null) => return Some(Vec::new()),
        Some(Value::Array(items)) => items,
        Some(other) => {
            p.push(shape::wrong_type("axes", "an array of axes", other));
            return None;
        }
    };
    let mut axes = Vec::new();
    for (k, item) in items.iter().enumerate() {
        let at = join_index("axes", k);
        let Some(obj) = item.as_object() else {
            p.push(shape::wrong_type(&at, "an object {\"path\": ..., \"values\": [...]}", item));
            continue;
        };
        for key in obj.keys().filter(|k| !AXIS_KEYS.contains(&k.as_str())) {
            p.push(shape::unknown_key(&join_key(&at, key), key, AXIS_KEYS.iter().copied()));
        }
        let (path, value_shape) = axis_path(obj.get("path"), &at, config_shape, p);
        let values = axis_values(obj.get("values"), &at, value_shape, p);
        let name = match obj.get("name") {
            None | Some(Value::Null) => path.clone(),
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            Some(other) => {
                p.push(shape::wrong_type(&join_key(&at, "name"), "a non-empty string", other));
                path.clone()
            }
        };
        let labels = axis_labels(obj.get("labels"), &at, values.len(), p);
        axes.push(Axis { name, path, values, labels });
    }
    check_axis_collisions(&axes, p);
    Some(axes)
}

/// An axis's `path` and the shape of the config value it sets (`None` when the path is
/// missing, malformed or not a key of the cell config; each reported).
fn axis_path<'s>(
    value: Option<&Value>,
    at: &str,
    config_shape: &'s Shape,
    p: &mut Problems,
) -> (String, Option<&'s Shape>) {
    let mut value_shape = None;
    let path = match value {
        Some(Value::String(s)) => {
            let segments: Vec<&str> = s.split('.').collect();
            if segments.iter().any(|seg| seg.is_empty()) {
                p.push(Problem::new(
                    join_key(at, "path"),
                    format!("malformed path {s:?}"),
                    "a path is dot-separated keys, e.g. \"sampler.lr\"",
                ));
            } else {
                match shape::shape_at(config_shape, &segments) {
                    Ok(sub) => value_shape = Some(sub),
                    Err((i, hint)) => p.push(Problem::new(
                        join_key(at, "path"),
                        format!("path {s:?}: `{}` is not a key of the cell config", segments[i]),
                        hint,
                    )),
                }
            }
            s.clone()
        }
        Some(other) => {
            p.push(shape::wrong_type(&join_key(at, "path"), "a string like \"sampler.lr\"", other));
            String::new()
        }
        None => {
            p.push(Problem::new(
                join_key(at, "path"),
                "missing required key `path`",
                "the config key this axis sets, e.g. \"temperature\" or \"prior.params.scale\"",
            ));
            String::new()
        }
    };
    (path, value_shape)
}

/// An axis's `values`: a non-empty array within the cell limit, each value of the shape its
/// path takes (when known), no value twice.
fn axis_values(value: Option<&Value>, at: &str, value_shape: Option<&Shape>, p: &mut Problems) -> Vec<Value> {
    match value {
        Some(Value::Array(v)) if v.is_empty() => {
            p.push(Problem::new(
                join_key(at, "values"),
                "axis has no values, so the grid has no cells",
                "give at least one value, or remove the axis",
            ));
            Vec::new()
        }
        Some(Value::Array(v)) if v.len() > MAX_CELLS => {
            // Over the cell limit on its own: refused before looking at each value.
            p.push(Problem::new(
                join_key(at, "values"),
                format!("{} values; a grid has at most {MAX_CELLS} cells", v.len()),
                "split it into several grid files, or use fewer values",
            ));
            Vec::new()
        }
        Some(Value::Array(v)) => {
            let mut first: HashMap<String, usize> = HashMap::with_capacity(v.len());
            for (j, x) in v.iter().enumerate() {
                if let Some(sub) = value_shape {
                    let mut found = Vec::new();
                    shape::check(x, sub, &join_index(&join_key(at, "values"), j), false, &mut found);
                    found.into_iter().for_each(|x| p.push(x));
                }
                if let Some(&i) = first.get(&value_key(x)) {
                    p.push(Problem::new(
                        join_index(&join_key(at, "values"), j),
                        format!("duplicate value {} (same as values[{i}])", show(x)),
                        "two cells would be the same; remove one",
                    ));
                } else {
                    first.insert(value_key(x), j);
                }
            }
            v.clone()
        }
        Some(other) => {
            p.push(shape::wrong_type(&join_key(at, "values"), "an array", other));
            Vec::new()
        }
        None => {
            p.push(Problem::new(join_key(at, "values"), "missing required key `values`", "list the values"));
            Vec::new()
        }
    }
}

/// An axis's optional `labels`: one unique string per value.
fn axis_labels(value: Option<&Value>, at: &str, values: usize, p: &mut Problems) -> Option<Vec<String>> {
    match value {
        None | Some(Value::Null) => None,
        Some(Value::Array(l)) => {
            let lat = join_key(at, "labels");
            if l.len() != values {
                p.push(Problem::new(
                    &lat,
                    format!("{} labels for {values} values", l.len()),
                    "give one label per value",
                ));
            }
            let mut out = Vec::new();
            for (j, x) in l.iter().enumerate() {
                match x.as_str() {
                    Some(s) => {
                        if out.contains(&s.to_owned()) {
                            p.push(Problem::new(
                                join_index(&lat, j),
                                format!("duplicate label {s:?}"),
                                "labels tell values apart; make them unique",
                            ));
                        }
                        out.push(s.to_owned())
                    }
                    None => p.push(shape::wrong_type(&join_index(&lat, j), "a string", x)),
                }
            }
            Some(out)
        }
        Some(other) => {
            p.push(shape::wrong_type(&join_key(at, "labels"), "an array of strings", other));
            None
        }
    }
}

/// Axes must not collide: the same path twice, one path inside another, or a name that is
/// also another axis's path (names and paths are both used to refer to axes). Hash maps of
/// the paths, their prefixes and the names keep this linear in the number of axes.
fn check_axis_collisions(axes: &[Axis], p: &mut Problems) {
    let mut paths: HashMap<&str, usize> = HashMap::new();
    let mut prefixes: HashMap<&str, usize> = HashMap::new();
    let mut names: HashMap<&str, usize> = HashMap::new();
    for (k, a) in axes.iter().enumerate() {
        if a.path.is_empty() {
            continue;
        }
        let at = join_key(&join_index("axes", k), "path");
        let proper_prefixes: Vec<&str> = a.path.match_indices('.').map(|(i, _)| &a.path[..i]).collect();
        if matches!(a.name.as_str(), "temperature" | "seed") && a.name != a.path {
            // Every cell's labels hold its resolved temperature and seed under these names: an
            // axis shown as one of them would vanish from the labels, and its cells would be
            // averaged as seeds of one temperature.
            p.push(Problem::new(
                join_key(&join_index("axes", k), "name"),
                format!("axis name {:?} is reserved for the cell's {} (this axis varies {:?})", a.name, a.name, a.path),
                format!("name the axis after what it varies, e.g. {:?}", a.path.rsplit('.').next().unwrap_or(&a.path)),
            ));
        } else if let Some(&i) = paths.get(a.path.as_str()) {
            p.push(Problem::new(
                at,
                format!("duplicate axis path {:?} (also axes[{i}])", a.path),
                "merge the two value lists, or zip them if they vary together",
            ));
        } else if let Some(&i) =
            proper_prefixes.iter().find_map(|q| paths.get(q)).or_else(|| prefixes.get(a.path.as_str()))
        {
            p.push(Problem::new(
                at,
                format!("axis path {:?} overlaps axes[{i}] ({:?})", a.path, axes[i].path),
                "one axis would overwrite the other; use disjoint paths",
            ));
        } else if let Some(&i) =
            names.get(a.name.as_str()).or_else(|| paths.get(a.name.as_str())).or_else(|| names.get(a.path.as_str()))
        {
            p.push(Problem::new(
                join_key(&join_index("axes", k), "name"),
                format!("axis name {:?} is ambiguous (clashes with axes[{i}])", a.name),
                "give each axis a distinct name",
            ));
        }
        paths.entry(a.path.as_str()).or_insert(k);
        names.entry(a.name.as_str()).or_insert(k);
        for q in proper_prefixes {
            prefixes.entry(q).or_insert(k);
        }
    }
}

/// Finds axes by display name or by path.
struct AxisLookup(HashMap<String, usize>);

impl AxisLookup {
    fn new(axes: &[Axis]) -> Self {
        let mut m = HashMap::new();
        for (k, a) in axes.iter().enumerate().rev() {
            m.insert(a.path.clone(), k);
        }
        for (k, a) in axes.iter().enumerate().rev() {
            m.insert(a.name.clone(), k);
        }
        AxisLookup(m)
    }

    fn find(&self, name: &str) -> Option<usize> {
        self.0.get(name).copied()
    }

    fn unknown(&self, at: String, name: &str, axes: &[Axis]) -> Problem {
        let names: Vec<&str> = axes.iter().map(|a| a.name.as_str()).collect();
        Problem::new(
            at,
            format!("no axis named {name:?}"),
            format!("axes: {}{}", names.join(", "), shape::suggest(name, names.iter().copied())),
        )
    }
}

fn parse_zip(value: Option<&Value>, axes: &[Axis], lookup: &AxisLookup, p: &mut Problems) -> Option<Vec<Vec<usize>>> {
    let groups = match value {
        None | Some(Value::Null) => return Some(Vec::new()),
        Some(Value::Array(g)) => g,
        Some(other) => {
            p.push(shape::wrong_type("zip", "an array of groups of axis names", other));
            return None;
        }
    };
    let mut out: Vec<Vec<usize>> = Vec::new();
    let mut owner: HashMap<usize, usize> = HashMap::new();
    for (g, group) in groups.iter().enumerate() {
        let at = join_index("zip", g);
        let Some(names) = group.as_array() else {
            p.push(shape::wrong_type(&at, "an array of axis names", group));
            continue;
        };
        if names.len() < 2 {
            p.push(Problem::new(&at, "a zip group needs at least two axes", "list the axes that vary together"));
        }
        let mut members = Vec::new();
        for (m, n) in names.iter().enumerate() {
            let mat = join_index(&at, m);
            let Some(name) = n.as_str() else {
                p.push(shape::wrong_type(&mat, "an axis name", n));
                continue;
            };
            let Some(k) = lookup.find(name) else {
                p.push(lookup.unknown(mat, name, axes));
                continue;
            };
            if let Some(other) = owner.insert(k, g) {
                p.push(Problem::new(
                    mat,
                    format!("axis {name:?} is already zipped in zip[{other}]"),
                    "an axis can be in one zip group only; merge the groups",
                ));
                continue;
            }
            members.push(k);
        }
        let lens: Vec<usize> = members.iter().map(|&k| axes[k].values.len()).collect();
        if lens.windows(2).any(|w| w[0] != w[1]) {
            let desc: Vec<String> =
                members.iter().map(|&k| format!("{} has {}", axes[k].name, axes[k].values.len())).collect();
            p.push(Problem::new(
                &at,
                format!("zipped axes have different lengths ({})", desc.join(", ")),
                "zipped axes take their i-th values together, so they need equally many values",
            ));
        }
        members.sort_unstable();
        out.push(members);
    }
    Some(out)
}

/// One `exclude` entry: (axis index, value) pairs that must all match.
type Exclude = Vec<(usize, Value)>;

fn parse_exclude(value: Option<&Value>, axes: &[Axis], lookup: &AxisLookup, p: &mut Problems) -> Option<Vec<Exclude>> {
    let entries = match value {
        None | Some(Value::Null) => return Some(Vec::new()),
        Some(Value::Array(e)) => e,
        Some(other) => {
            p.push(shape::wrong_type("exclude", "an array of {axis: value} objects", other));
            return None;
        }
    };
    if entries.len() > MAX_EXCLUDE {
        p.push(Problem::new(
            "exclude",
            format!("{} exclude entries; at most {MAX_EXCLUDE}", entries.len()),
            "list the cells you want as axes (or several grid files) instead",
        ));
        return None;
    }
    let mut out = Vec::new();
    for (e, entry) in entries.iter().enumerate() {
        if let Some(parsed) = parse_pairs(&join_index("exclude", e), entry, axes, lookup, p) {
            out.push(parsed);
        }
    }
    Some(out)
}

/// One `{axis: value, ...}` object at `at` (an `exclude` entry or `reference`): `None` when it
/// is not an object or is empty; pairs naming an unknown axis or value are reported and left out.
fn parse_pairs(at: &str, entry: &Value, axes: &[Axis], lookup: &AxisLookup, p: &mut Problems) -> Option<Exclude> {
    let what = if at == "reference" { "names no cell" } else { "excludes nothing" };
    let Some(pairs) = entry.as_object() else {
        p.push(shape::wrong_type(at, "an object {axis: value, ...}", entry));
        return None;
    };
    if pairs.is_empty() {
        let message = if at == "reference" {
            "an empty reference would make every cell a reference"
        } else {
            "an empty exclude entry would drop every cell"
        };
        p.push(Problem::new(at, message, "name at least one axis"));
        return None;
    }
    let mut parsed = Vec::new();
    for (name, v) in pairs {
        let kat = join_key(at, name);
        let Some(k) = lookup.find(name) else {
            p.push(lookup.unknown(kat, name, axes));
            continue;
        };
        if !(0..axes[k].values.len()).any(|j| value_matches(&axes[k], j, v)) {
            let shown: Vec<String> = axes[k].values.iter().map(show).collect();
            p.push(Problem::new(
                kat,
                format!("{} is not a value of axis {:?}, so this entry {what}", show(v), axes[k].name),
                format!("its values: {}", shown.join(", ")),
            ));
            continue;
        }
        parsed.push((k, v.clone()));
    }
    Some(parsed)
}

/// The positions of the cells that match every pair of `reference`; a reference must leave
/// other cells to compare, and every cell must store its predictions.
fn reference_cells(pairs: &[(usize, Value)], axes: &[Axis], cells: &[Cell], p: &mut Problems) -> Vec<usize> {
    let is_ref = |c: &Cell| pairs.iter().all(|(k, v)| value_matches(&axes[*k], c.axis_values[*k], v));
    let found: Vec<usize> = cells.iter().enumerate().filter(|(_, c)| is_ref(c)).map(|(i, _)| i).collect();
    if found.is_empty() {
        p.push(Problem::new("reference", "no cell matches every pair of the reference", "check the exclude entries"));
    } else if found.len() == cells.len() {
        p.push(Problem::new(
            "reference",
            "every cell is a reference cell, so nothing is compared with it",
            "name the axis values of the reference only (e.g. {\"integrator\": \"hmc\", \"temperature\": 1})",
        ));
    }
    if let Some(c) = cells.iter().find(|c| !c.config.eval.store_predictions) {
        p.push(Problem::new(
            "reference",
            format!(
                "the report compares predictions with the reference cells, but cells[{}] does not store them",
                c.index
            ),
            "set \"eval\": {\"store_predictions\": true} in `base` (every cell needs it)",
        ));
    }
    found
}

// ---------------------------------------------------------------------------------------------
// Expansion

fn expand(
    base: &Value,
    axes: &[Axis],
    zip: &[Vec<usize>],
    exclude: &[Exclude],
    config_shape: &Shape,
    p: &mut Problems,
) -> Option<Vec<Cell>> {
    // Units of the cross product: a zip group counts once, placed at its first member.
    let mut units: Vec<Vec<usize>> = Vec::new();
    for k in 0..axes.len() {
        match zip.iter().find(|g| g.contains(&k)) {
            Some(g) if g[0] == k => units.push(g.clone()),
            Some(_) => {}
            None => units.push(vec![k]),
        }
    }
    let lens: Vec<usize> = units.iter().map(|u| axes[u[0]].values.len()).collect();
    let total = lens.iter().try_fold(1usize, |acc, &n| acc.checked_mul(n));
    match total {
        Some(n) if n <= MAX_CELLS => {}
        _ => {
            p.push(Problem::new(
                "axes",
                format!("the grid has more than {MAX_CELLS} cells"),
                "split it into several grid files, or use fewer values",
            ));
            return None;
        }
    }

    let axis_paths: Vec<String> = axes.iter().map(|a| json_path(&a.path)).collect();
    // For each exclude entry and axis value: does the value match? (Computed once, not per cell.)
    let masks: Vec<Vec<(usize, Vec<bool>)>> = exclude
        .iter()
        .filter(|pairs| !pairs.is_empty())
        .map(|pairs| {
            pairs
                .iter()
                .map(|(k, v)| (*k, (0..axes[*k].values.len()).map(|j| value_matches(&axes[*k], j, v)).collect()))
                .collect()
        })
        .collect();
    let plugin_axes = axes.iter().any(|a| {
        PLUGIN_KINDS.iter().any(|k| a.path == *k || a.path.strip_prefix(k).is_some_and(|r| r.starts_with('.')))
    });
    let mut cells = Vec::new();
    let mut index = 0usize;
    let mut by_id: HashMap<String, usize> = HashMap::new();
    let mut counter = vec![0usize; units.len()];
    'outer: loop {
        let mut choice = vec![0usize; axes.len()];
        for (u, unit) in units.iter().enumerate() {
            for &k in unit {
                choice[k] = counter[u];
            }
        }
        let excluded = masks.iter().any(|pairs| pairs.iter().all(|(k, hit)| hit[choice[*k]]));
        if !excluded {
            if let Some(cell) = resolve(base, axes, &axis_paths, &choice, index, config_shape, p) {
                if let Some(&first) = by_id.get(&cell.id) {
                    p.push(Problem::new(
                        join_index("cells", index),
                        format!("resolves to the same config as cells[{first}] (id {})", cell.id),
                        "an axis value equals the default or another value; remove the duplicate",
                    ));
                } else {
                    by_id.insert(cell.id.clone(), index);
                }
                let c = &cell.config;
                let refs = [&c.integrator, &c.prior, &c.likelihood, &c.noise];
                // Without an axis on a plugin, every cell names the plugins of the first one.
                let kinds = if plugin_axes || p.plugins.is_empty() { PLUGIN_KINDS } else { &[] };
                for (kind, r) in kinds.iter().zip(refs) {
                    if !p.plugin_keys.contains(&(*kind, r.name.clone(), canonical_json(&r.params))) {
                        let source = source_of(&axis_paths, &cell.axis_values, kind);
                        p.note_plugin(PluginUse {
                            cell: index,
                            kind,
                            name: r.name.clone(),
                            params: r.params.clone(),
                            path: join_key(&join_index("cells", index), kind),
                            source,
                        });
                    }
                }
                cells.push(cell);
            }
            index += 1;
        }
        // Advance the odometer: the last unit varies fastest.
        for u in (0..units.len()).rev() {
            counter[u] += 1;
            if counter[u] < lens[u] {
                continue 'outer;
            }
            counter[u] = 0;
        }
        break;
    }
    p.total_cells = index;
    if index == 0 {
        p.push(Problem::new(
            "exclude",
            "every cell is excluded; the grid is empty",
            "remove or narrow an exclude entry",
        ));
    }
    Some(cells)
}

/// Builds, checks and labels one cell. Problems are attributed to the place in the file the
/// offending value comes from.
fn resolve(
    base: &Value,
    axes: &[Axis],
    axis_paths: &[String],
    choice: &[usize],
    index: usize,
    config_shape: &Shape,
    p: &mut Problems,
) -> Option<Cell> {
    let mut value = base.clone();
    for (k, axis) in axes.iter().enumerate() {
        if let Err(msg) = set_path(&mut value, &axis.path, axis.values[choice[k]].clone()) {
            p.push(Problem::new(join_key(&join_index("axes", k), "path"), msg, "fix `base` or the path"));
            return None;
        }
    }
    let mut found = Vec::new();
    shape::check(&value, config_shape, "", false, &mut found);
    if !found.is_empty() {
        for mut prob in found {
            prob.path = source_of(axis_paths, choice, &prob.path);
            p.push_in(prob, Some(index));
        }
        // Range checks on what is left, so that they are reported in the same pass.
        if let Some(config) =
            shape::prune(&value, config_shape).and_then(|v| serde_json::from_value::<CellConfig>(v).ok())
        {
            for mut prob in config.validate() {
                prob.path = source_of(axis_paths, choice, &prob.path);
                p.push_in(prob, Some(index));
            }
        }
        return None;
    }
    let config: CellConfig = match serde_json::from_value(value) {
        Ok(c) => c,
        Err(e) => {
            // The shape check should have caught this; report serde's words rather than panic.
            p.push_in(Problem::new(join_index("cells", index), format!("invalid config: {e}"), ""), Some(index));
            return None;
        }
    };
    for mut prob in config.validate() {
        prob.path = source_of(axis_paths, choice, &prob.path);
        p.push_in(prob, Some(index));
    }
    let mut labels = Map::new();
    for (k, axis) in axes.iter().enumerate() {
        labels.insert(axis.name.clone(), axis.label(choice[k]));
    }
    labels.insert("temperature".into(), Value::from(config.temperature));
    labels.insert("seed".into(), Value::from(config.seed));
    Some(Cell { index, id: cell_id(&config), config, labels, axis_values: choice.to_vec() })
}

/// Range problems of the values written in `base` (a partial config): the missing required
/// parts get stand-ins, and only problems at paths that `base` itself sets are kept.
fn base_field_problems(base: &Value, config_shape: &Shape) -> Vec<Problem> {
    let Some(Value::Object(mut map)) = shape::prune(base, config_shape) else {
        return Vec::new();
    };
    let data = map.entry("data").or_insert_with(|| Value::Object(Map::new()));
    if let Value::Object(d) = data {
        d.entry("dataset").or_insert_with(|| Value::from("digits"));
    }
    let model = map.entry("model").or_insert_with(|| serde_json::json!({"kind": "mlp"}));
    if let Value::Object(m) = model {
        match m.get("kind").and_then(Value::as_str) {
            Some("mlp") => {
                m.entry("hidden").or_insert_with(|| serde_json::json!([]));
            }
            Some("cnn") => {
                m.entry("channels").or_insert_with(|| serde_json::json!([1]));
            }
            _ => {}
        }
    }
    let Ok(config) = serde_json::from_value::<CellConfig>(Value::Object(map)) else {
        return Vec::new();
    };
    config
        .validate_fields()
        .into_iter()
        .filter(|prob| value_at(base, &prob.path).is_some())
        .map(|mut prob| {
            prob.path = format!("base.{}", prob.path);
            prob
        })
        .collect()
}

/// The value at a problem path relative to a config (`sampler.lr`, `model.hidden[2]`).
fn value_at<'a>(root: &'a Value, path: &str) -> Option<&'a Value> {
    let mut cur = root;
    for seg in path.split('.') {
        let (key, indices) = match seg.find('[') {
            Some(i) => (&seg[..i], &seg[i..]),
            None => (seg, ""),
        };
        cur = cur.get(key)?;
        for idx in indices.split('[').filter(|x| !x.is_empty()) {
            cur = cur.get(idx.trim_end_matches(']').parse::<usize>().ok()?)?;
        }
    }
    Some(cur)
}

/// Maps a config path of a cell to the place in the grid file it comes from.
fn source_of(axis_paths: &[String], choice: &[usize], config_path: &str) -> String {
    for (k, ap) in axis_paths.iter().enumerate() {
        let rest = if config_path == ap {
            Some("")
        } else {
            config_path.strip_prefix(ap.as_str()).filter(|r| r.starts_with('.') || r.starts_with('['))
        };
        if let (Some(rest), Some(j)) = (rest, choice.get(k)) {
            return format!("axes[{k}].values[{j}]{rest}");
        }
    }
    if config_path.is_empty() {
        "base".to_owned()
    } else {
        format!("base.{config_path}")
    }
}

/// A dot-separated axis path in the notation of problem paths (`prior.params["a-b c"]`).
fn json_path(dotted: &str) -> String {
    dotted.split('.').fold(String::new(), |acc, seg| join_key(&acc, seg))
}

/// Sets `path` (dot-separated) in `root`, creating missing objects on the way.
fn set_path(root: &mut Value, path: &str, new: Value) -> Result<(), String> {
    let segments: Vec<&str> = path.split('.').collect();
    let mut cur = root;
    for (i, seg) in segments.iter().enumerate() {
        if cur.is_null() {
            *cur = Value::Object(Map::new());
        }
        let Value::Object(map) = cur else {
            return Err(format!(
                "cannot set {path:?}: `{}` in base is {}, not an object",
                segments[..i].join("."),
                type_name(cur)
            ));
        };
        if i + 1 == segments.len() {
            map.insert((*seg).to_owned(), new);
            return Ok(());
        }
        cur = map.entry((*seg).to_owned()).or_insert_with(|| Value::Object(Map::new()));
    }
    Ok(())
}

/// Does `v` (from an exclude entry) match value `j` of `axis`: equal to it, or to its label?
fn value_matches(axis: &Axis, j: usize, v: &Value) -> bool {
    json_eq(&axis.values[j], v) || matches!((&axis.labels, v), (Some(l), Value::String(s)) if l.get(j) == Some(s))
}

/// A string that is equal for two values exactly when [`json_eq`] holds (numbers by value, object
/// keys in any order), for finding duplicates in one pass.
fn value_key(v: &Value) -> String {
    let mut out = String::new();
    write_value_key(v, &mut out);
    out
}

fn write_value_key(v: &Value, out: &mut String) {
    match v {
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                out.push_str(&u.to_string());
            } else if let Some(i) = n.as_i64() {
                out.push_str(&i.to_string());
            } else {
                let f = n.as_f64().unwrap_or(f64::NAN);
                if f.fract() == 0.0 && f.abs() < 1.8e19 {
                    out.push_str(&(f as i128).to_string());
                } else {
                    out.push_str(&format!("{f:?}"));
                }
            }
        }
        Value::Array(items) => {
            out.push('[');
            for x in items {
                write_value_key(x, out);
                out.push(',');
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for k in keys {
                out.push_str(&Value::from(k.as_str()).to_string());
                out.push(':');
                write_value_key(&map[k], out);
                out.push(',');
            }
            out.push('}');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// JSON equality where numbers compare by value (`1` equals `1.0`).
fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_u64(), y.as_u64(), x.as_i64(), y.as_i64()) {
            (Some(x), Some(y), _, _) => x == y,
            (_, _, Some(x), Some(y)) => x == y,
            _ => x.as_f64() == y.as_f64(),
        },
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_eq(a, b)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, a)| y.get(k).is_some_and(|b| json_eq(a, b)))
        }
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn canonical_json_sorts_keys_recursively() {
        let v = json!({"b": 1, "a": {"d": [1, {"z": 0, "y": 1}], "c": "x y"}});
        assert_eq!(canonical_json(&v), r#"{"a":{"c":"x y","d":[1,{"y":1,"z":0}]},"b":1}"#);
    }

    #[test]
    fn set_path_creates_objects() {
        let mut v = json!({"prior": {"name": "gaussian"}});
        set_path(&mut v, "prior.params.scale", json!(0.1)).unwrap();
        assert_eq!(v, json!({"prior": {"name": "gaussian", "params": {"scale": 0.1}}}));
        let mut v = json!({"sampler": 3});
        assert!(set_path(&mut v, "sampler.lr", json!(0.1)).is_err());
    }

    #[test]
    fn sources() {
        let paths = vec!["temperature".to_owned(), "prior.params".to_owned()];
        assert_eq!(source_of(&paths, &[2, 1], "temperature"), "axes[0].values[2]");
        assert_eq!(source_of(&paths, &[2, 1], "prior.params.scale"), "axes[1].values[1].scale");
        assert_eq!(source_of(&paths, &[2, 1], "prior.paramsx"), "base.prior.paramsx");
        assert_eq!(source_of(&paths, &[2, 1], "sampler.lr"), "base.sampler.lr");
    }

    #[test]
    fn numbers_compare_by_value() {
        assert!(json_eq(&json!(1), &json!(1.0)));
        assert!(!json_eq(&json!(1), &json!(2)));
        assert!(json_eq(&json!({"a": [1]}), &json!({"a": [1.0]})));
    }
}
