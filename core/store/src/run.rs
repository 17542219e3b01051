//! Run folders and cell folders.

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::atomic::{is_temp_name, sync_dir, write_atomic};
use crate::error::{Result, StoreError};
use crate::lock::RunLock;

pub use ablate_records::{
    CellPlugin, CellState, CellStatus, Manifest, PluginInfo, Provenance, CELLS, CONFIG, EPOCHS, GRID, LABELS, LOCK,
    MANIFEST, METRICS, STATUS,
};

/// A run folder (`runs/<name>/`).
#[derive(Debug, Clone)]
pub struct RunDir {
    path: PathBuf,
}

impl RunDir {
    /// Creates the run folder with its manifest and a copy of the grid file, or opens it if it
    /// exists and was made for the same grid (same `grid_sha256`); the manifest of an existing
    /// run is kept. Refused, so that finished results never mix with others: a different grid
    /// ([`StoreError::GridChanged`]); a plugin library whose build changed
    /// ([`StoreError::PluginsChanged`]) while cells are finished; finished cells without a
    /// manifest ([`StoreError::Orphaned`]). Another git revision of ablate is a warning.
    pub fn create_or_open(path: impl AsRef<Path>, manifest: &Manifest, grid_text: &str) -> Result<RunDir> {
        let path = path.as_ref().to_owned();
        fs::create_dir_all(path.join(CELLS)).map_err(StoreError::io("create folder", path.join(CELLS)))?;
        let run = RunDir { path };
        match run.read_json::<Manifest>(MANIFEST)? {
            Some(existing) if existing.grid_sha256 != manifest.grid_sha256 => {
                return Err(StoreError::GridChanged {
                    dir: run.path.clone(),
                    existing: existing.grid_sha256,
                    new: manifest.grid_sha256.clone(),
                });
            }
            Some(existing) => run.reconcile_manifest(&existing, manifest)?,
            None => {
                let finished = run.finished_cells()?;
                if finished > 0 {
                    return Err(StoreError::Orphaned { dir: run.path.clone(), finished });
                }
                write_atomic(&run.path.join(GRID), grid_text.as_bytes())?;
                run.write_manifest(manifest)?;
            }
        }
        // The copy the workers read must be the grid of the manifest: restore a missing or
        // damaged one from the grid file (whose hash was just checked against the manifest).
        if run.grid_copy_problem(&manifest.grid_sha256)?.is_some() {
            if run.path.join(GRID).exists() {
                tracing::warn!(path = %run.path.join(GRID).display(), "grid.json did not match the manifest's sha256; restored it from the grid file");
            }
            write_atomic(&run.path.join(GRID), grid_text.as_bytes())?;
        }
        Ok(run)
    }

    /// A run folder opened again by a runner whose build (`manifest`) differs from the recorded
    /// one (`existing`): refused once cells finished with other plugin libraries. The manifest
    /// describes what computed the finished cells: with none finished yet, this build replaces
    /// the one recorded (else a rebuilt plugin accepted now would be refused at the next resume,
    /// against cells it computed itself), unless a live runner's cells are in progress with the
    /// recorded build; with some, a library new to this run is added beside the recorded ones.
    /// The same build (the usual resume) costs nothing: no cell is read.
    fn reconcile_manifest(&self, existing: &Manifest, manifest: &Manifest) -> Result<()> {
        if existing.plugins == manifest.plugins && existing.git_revision == manifest.git_revision {
            return Ok(());
        }
        let finished = self.finished_cells()?;
        let changed = changed_plugins(&existing.plugins, &manifest.plugins);
        if !changed.is_empty() && finished > 0 {
            return Err(StoreError::PluginsChanged { dir: self.path.clone(), finished, changed });
        }
        if finished == 0 {
            if !self.claims()?.iter().any(|c| !c.is_stale()) {
                self.write_manifest(manifest)?;
            }
            return Ok(());
        }
        let added: Vec<&PluginInfo> =
            manifest.plugins.iter().filter(|n| !existing.plugins.iter().any(|w| w.name == n.name)).collect();
        if !added.is_empty() {
            let mut merged = existing.clone();
            merged.plugins.extend(added.into_iter().cloned());
            self.write_manifest(&merged)?;
        }
        if let (Some(was), Some(now)) = (&existing.git_revision, &manifest.git_revision) {
            if was != now {
                tracing::warn!(
                    run = %self.path.display(),
                    "this run folder was started by ablate at git revision {was}, this binary is {now}: \
                     cells finished by each may differ beyond seed noise where the engine changed"
                );
            }
        }
        Ok(())
    }

    /// Refuses to resume when a finished cell's `status.json` records a plugin library that is
    /// not the one loaded now for the same factor: `loaded(kind, name)` gives the sha256 and
    /// path of the library that provides that plugin now (`None`: not loaded); only the cells
    /// for which `in_grid` holds are judged. This holds across renamed, moved or re-versioned
    /// libraries, which the manifest's list cannot tell apart.
    pub fn check_cell_builds(&self, loaded: &LoadedLibrary<'_>, in_grid: &dyn Fn(&str) -> bool) -> Result<()> {
        let mut finished = 0;
        let mut changed: Vec<String> = Vec::new();
        // Folders outside the grid are not resumed (nor reported), whatever built them.
        for cell in self.list_cells()?.into_iter().filter(|c| in_grid(&c.id)) {
            let Ok(Some(status)) = cell.read_status() else { continue };
            if !status.is_finished() {
                continue;
            }
            let Some(provenance) = status.provenance else { continue };
            let mut differs = false;
            for p in &provenance.plugins {
                let Some((sha, path)) = loaded(&p.kind, &p.name) else { continue };
                if sha != p.sha256 {
                    differs = true;
                    let what = format!(
                        "{} `{}`: cells computed by {} (sha256 {}), loaded now from {path} (sha256 {})",
                        p.kind,
                        p.name,
                        p.path,
                        short(&p.sha256),
                        short(&sha)
                    );
                    if !changed.contains(&what) {
                        changed.push(what);
                    }
                }
            }
            finished += usize::from(differs);
        }
        if changed.is_empty() {
            Ok(())
        } else {
            Err(StoreError::PluginsChanged { dir: self.path.clone(), finished, changed })
        }
    }

    /// The data fingerprint each finished cell records (`provenance.data_sha256`), by cell id.
    pub fn recorded_data(&self) -> Result<Vec<(String, String)>> {
        let mut out = Vec::new();
        for cell in self.list_cells()? {
            let Ok(Some(status)) = cell.read_status() else { continue };
            if !status.is_finished() {
                continue;
            }
            if let Some(sha) = status.provenance.and_then(|p| p.data_sha256) {
                out.push((cell.id.clone(), sha));
            }
        }
        Ok(out)
    }

    /// How many cell folders hold a finished status (done, failed, diverged).
    fn finished_cells(&self) -> Result<usize> {
        let mut n = 0;
        for cell in self.list_cells()? {
            n += usize::from(cell.is_finished().unwrap_or(false));
        }
        Ok(n)
    }

    /// A run folder's cells, whether or not its manifest is there (for `ablate status`, which
    /// must show the cells of a folder that lost its manifest).
    pub fn open_cells(path: impl AsRef<Path>) -> RunDir {
        RunDir { path: path.as_ref().to_owned() }
    }

    /// Opens an existing run folder (for reports and status).
    pub fn open(path: impl AsRef<Path>) -> Result<RunDir> {
        let path = path.as_ref().to_owned();
        if !path.join(MANIFEST).is_file() {
            return Err(StoreError::NotARun { dir: path });
        }
        Ok(RunDir { path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Checks `grid.json` against the manifest's `grid_sha256` ([`StoreError::GridCopyDamaged`]
    /// when it is missing or differs).
    pub fn check_grid_copy(&self) -> Result<()> {
        let expected = self.manifest()?.grid_sha256;
        match self.grid_copy_problem(&expected)? {
            None => Ok(()),
            Some(found) => Err(StoreError::GridCopyDamaged { path: self.path.join(GRID), expected, found }),
        }
    }

    /// `None` when `grid.json` has the sha256 `expected`; else what it has (`missing`).
    fn grid_copy_problem(&self, expected: &str) -> Result<Option<String>> {
        let path = self.path.join(GRID);
        match fs::read(&path) {
            Ok(bytes) => {
                let found = crate::machine::sha256_bytes(&bytes);
                Ok((found != expected).then_some(found))
            }
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(Some("missing".into())),
            Err(e) => Err(StoreError::io("read", &path)(e)),
        }
    }

    pub fn manifest(&self) -> Result<Manifest> {
        self.read_json(MANIFEST)?.ok_or_else(|| StoreError::NotARun { dir: self.path.clone() })
    }

    /// Replaces the manifest (atomically).
    pub fn write_manifest(&self, manifest: &Manifest) -> Result<()> {
        write_json_file(&self.path.join(MANIFEST), manifest)
    }

    /// Takes `run.lock` (see [`crate::lock`]): exclusive among runners of this folder. Runners
    /// hold it only while registering a claim ([`RunDir::claim`]); take a claim to run cells.
    pub fn lock(&self) -> Result<RunLock> {
        RunLock::acquire(&self.path, &self.path.join(LOCK))
    }

    /// The folder of cell `id`, created if missing.
    pub fn cell(&self, id: &str) -> Result<CellDir> {
        check_name("cell id", id)?;
        let cells = self.path.join(CELLS);
        let path = cells.join(id);
        refuse_link(&path)?;
        if !path.is_dir() {
            fs::create_dir_all(&path).map_err(StoreError::io("create folder", &path))?;
            sync_dir(&cells)?;
        }
        Ok(CellDir { id: id.to_owned(), path })
    }

    /// The folder of cell `id` if it exists.
    pub fn existing_cell(&self, id: &str) -> Result<Option<CellDir>> {
        check_name("cell id", id)?;
        let path = self.path.join(CELLS).join(id);
        refuse_link(&path)?;
        Ok(path.is_dir().then(|| CellDir { id: id.to_owned(), path }))
    }

    /// All cell folders, sorted by id (hidden and temporary entries are skipped).
    pub fn list_cells(&self) -> Result<Vec<CellDir>> {
        let cells = self.path.join(CELLS);
        let entries = match fs::read_dir(&cells) {
            Ok(e) => e,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(StoreError::io("list", &cells)(e)),
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(StoreError::io("list", &cells))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            // Not a symbolic link: what it points to is not this run's (see `refuse_link`).
            let linked = entry.file_type().is_ok_and(|t| t.is_symlink());
            if name.starts_with('.') || linked || !entry.path().is_dir() {
                continue;
            }
            out.push(CellDir { id: name, path: entry.path() });
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    fn read_json<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>> {
        read_json_file(&self.path.join(name))
    }
}

/// The folder of one cell (`cells/<cell_id>/`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CellDir {
    id: String,
    path: PathBuf,
}

impl CellDir {
    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `value` as pretty JSON to `name`, atomically.
    pub fn write_json<T: Serialize + ?Sized>(&self, name: &str, value: &T) -> Result<()> {
        check_name("file name", name)?;
        write_json_file(&self.path.join(name), value)
    }

    /// Writes `text` to `name`, atomically.
    pub fn write_text(&self, name: &str, text: &str) -> Result<()> {
        check_name("file name", name)?;
        write_atomic(&self.path.join(name), text.as_bytes())
    }

    /// Reads JSON file `name`; `None` if it does not exist.
    pub fn read_json<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>> {
        check_name("file name", name)?;
        read_json_file(&self.path.join(name))
    }

    /// Reads text file `name`; `None` if it does not exist.
    pub fn read_text(&self, name: &str) -> Result<Option<String>> {
        check_name("file name", name)?;
        let path = self.path.join(name);
        match fs::read_to_string(&path) {
            Ok(t) => Ok(Some(t)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::io("read", &path)(e)),
        }
    }

    pub fn write_status(&self, status: &CellStatus) -> Result<()> {
        self.write_json(STATUS, status)
    }

    /// `status.json`, or `None` for a cell that never started.
    pub fn read_status(&self) -> Result<Option<CellStatus>> {
        self.read_json(STATUS)
    }

    /// Is this cell finished with its results intact? Like [`CellDir::is_finished`], but a
    /// cell whose `status.json` cannot be parsed, or that says done without a readable
    /// `metrics.json` (deleted, damaged), is to be run again.
    pub fn is_complete(&self) -> Result<bool> {
        let status = match self.read_status() {
            Ok(Some(s)) => s,
            Ok(None) => return Ok(false),
            Err(StoreError::Json { path, source }) => {
                tracing::warn!(path = %path.display(), error = %source, "unreadable status.json: the cell runs again");
                return Ok(false);
            }
            Err(e) => return Err(e),
        };
        if !status.is_finished() {
            return Ok(false);
        }
        if status.status == CellState::Done {
            // Parsed as the record it is: a `{}` or another version's file is not results.
            match self.read_json::<ablate_records::FinalMetrics>(METRICS) {
                Ok(Some(_)) => {}
                Ok(None) | Err(StoreError::Json { .. }) => {
                    tracing::warn!(cell = %self.id, "marked done without a readable metrics.json: the cell runs again");
                    return Ok(false);
                }
                Err(e) => return Err(e),
            }
            if let Some(why) = self.epochs_problem()? {
                tracing::warn!(cell = %self.id, "marked done, but its epochs.csv {why}: the cell runs again");
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// What is wrong with a done cell's `epochs.csv`, if anything: it does not parse, or it
    /// does not hold one row per epoch its `config.json` plans (a file cut at a line boundary
    /// still parses). A missing file is not judged (the metrics hold the results).
    fn epochs_problem(&self) -> Result<Option<String>> {
        let text = match fs::read_to_string(self.path.join(EPOCHS)) {
            Ok(t) => t,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StoreError::io("read", self.path.join(EPOCHS))(e)),
        };
        let rows = match ablate_records::parse_epochs_csv(&text) {
            Ok(rows) => rows.len() as u64,
            Err(e) => return Ok(Some(format!("is damaged ({e})"))),
        };
        let planned = self
            .read_json::<serde_json::Value>(CONFIG)
            .ok()
            .flatten()
            .and_then(|c| c.get("sampler")?.get("epochs")?.as_u64());
        Ok(planned.filter(|&p| p != rows).map(|p| format!("has {rows} epoch row(s) of the {p} planned")))
    }

    /// Does this cell hold results of its own ([`CellStatus::has_results`])?
    pub fn has_results(&self) -> Result<bool> {
        Ok(self.read_status()?.is_some_and(|s| s.has_results()))
    }

    /// What differs between this folder's `config.json` and `labels.json` and the files a
    /// worker writes for the cell `config` with `labels` (byte for byte, so that no float is
    /// parsed again); `None` when both match. A folder copied from another cell, or whose labels
    /// were edited by hand, holds results that are not this cell's.
    pub fn other_cells_files<C: Serialize + ?Sized, L: Serialize + ?Sized>(
        &self,
        config: &C,
        labels: &L,
    ) -> Result<Option<String>> {
        let mut differs = Vec::new();
        for (name, expected) in [
            (CONFIG, json_text(&self.path.join(CONFIG), config)?),
            (LABELS, json_text(&self.path.join(LABELS), labels)?),
        ] {
            match fs::read(self.path.join(name)) {
                Ok(bytes) if bytes == expected.as_bytes() => {}
                Ok(_) => differs.push(format!("{name} is not this cell's")),
                Err(e) if e.kind() == ErrorKind::NotFound => differs.push(format!("{name} is missing")),
                Err(e) => return Err(StoreError::io("read", self.path.join(name))(e)),
            }
        }
        Ok((!differs.is_empty()).then(|| differs.join(", ")))
    }

    /// Has this cell finished (done, failed or diverged)? A cell without status, or still
    /// `running` (an interrupted run), is to be run.
    pub fn is_finished(&self) -> Result<bool> {
        Ok(self.read_status()?.is_some_and(|s| s.is_finished()))
    }
}

/// `(kind, name)` of a plugin → the sha256 and path of the library that provides it now.
pub type LoadedLibrary<'a> = dyn Fn(&str, &str) -> Option<(String, String)> + 'a;

/// The libraries whose sha256 differs between the run's manifest and now, as `name (path):
/// sha256 old → new`: matched by build name, or by file (a rebuild that bumped the crate's
/// version keeps the path); a library added or removed changes no finished result.
fn changed_plugins(was: &[PluginInfo], now: &[PluginInfo]) -> Vec<String> {
    was.iter()
        .filter_map(|w| {
            let n = now.iter().find(|n| n.name == w.name).or_else(|| now.iter().find(|n| n.path == w.path))?;
            (n.sha256 != w.sha256)
                .then(|| format!("{} ({}): sha256 {} → {}", w.name, n.path, short(&w.sha256), short(&n.sha256)))
        })
        .collect()
}

fn short(sha: &str) -> &str {
    sha.get(..12).unwrap_or(sha)
}

fn write_json_file<T: Serialize + ?Sized>(path: &Path, value: &T) -> Result<()> {
    write_atomic(path, json_text(path, value)?.as_bytes())
}

/// The text of a JSON file as the store writes it (pretty, with a final line break).
fn json_text<T: Serialize + ?Sized>(path: &Path, value: &T) -> Result<String> {
    let mut text =
        serde_json::to_string_pretty(value).map_err(|e| StoreError::Json { path: path.into(), source: e })?;
    text.push('\n');
    Ok(text)
}

fn read_json_file<T: DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StoreError::io("read", path)(e)),
    };
    serde_json::from_str(&text).map(Some).map_err(|e| StoreError::Json { path: path.into(), source: e })
}

/// A cell folder that is a symbolic link would have its results written outside the run
/// folder (and read from wherever it points).
fn refuse_link(path: &Path) -> Result<()> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => Err(StoreError::LinkedCell { path: path.to_owned() }),
        _ => Ok(()),
    }
}

/// File and folder names inside a run folder: no separators, no `..`, not hidden, not temporary.
fn check_name(what: &'static str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && !name.starts_with('.')
        && !is_temp_name(name)
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if ok {
        Ok(())
    } else {
        Err(StoreError::BadName { what, name: name.to_owned() })
    }
}
