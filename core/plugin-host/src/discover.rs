//! Where plugin files are looked for.

use std::path::{Path, PathBuf};

use crate::PluginError;

/// The folders to search, in priority order, with why each is there (for `ablate doctor`).
#[derive(Debug, Clone, Default)]
pub struct SearchPath {
    pub dirs: Vec<(PathBuf, &'static str)>,
}

impl SearchPath {
    /// Built-in folder(s), then `$ABLATE_PLUGIN_PATH`, then the given `--plugins` folders.
    pub fn standard(extra: &[PathBuf]) -> Self {
        let mut dirs: Vec<(PathBuf, &'static str)> = Vec::new();
        dirs.extend(builtin_dirs().into_iter().map(|d| (d, "built-in")));
        dirs.extend(env_dirs().into_iter().map(|d| (d, "$ABLATE_PLUGIN_PATH")));
        dirs.extend(extra.iter().cloned().map(|d| (d, "--plugins")));
        Self { dirs }
    }

    /// Only the given folders (tests, `plugins check`).
    pub fn only(dirs: &[PathBuf]) -> Self {
        Self { dirs: dirs.iter().cloned().map(|d| (d, "--plugins")).collect() }
    }
}

/// `<exe dir>/plugins` and, for a cargo build tree, `<exe dir>` itself (restricted to
/// `libablate_plugin_*.so`, see [`plugin_files_in`]).
pub fn builtin_dirs() -> Vec<PathBuf> {
    let Some(exe_dir) = std::env::current_exe().ok().and_then(|e| e.parent().map(Path::to_path_buf)) else {
        return Vec::new();
    };
    let mut dirs = vec![exe_dir.join("plugins")];
    // Test binaries live in target/<profile>/deps; the workspace's plugins one level up.
    if exe_dir.file_name().is_some_and(|n| n == "deps") {
        if let Some(parent) = exe_dir.parent() {
            dirs.push(parent.to_path_buf());
        }
    } else {
        dirs.push(exe_dir);
    }
    dirs.into_iter().filter(|d| d.is_dir()).collect()
}

/// Folders of `$ABLATE_PLUGIN_PATH`.
pub fn env_dirs() -> Vec<PathBuf> {
    std::env::var_os("ABLATE_PLUGIN_PATH")
        .map(|v| std::env::split_paths(&v).filter(|p| !p.as_os_str().is_empty()).collect())
        .unwrap_or_default()
}

/// The plugin files of one folder, sorted. In a folder that holds the `ablate` binary itself
/// (a cargo target folder), or the built-in folder (`builtin`) named `debug` or `release`,
/// only `libablate_plugin_*.so` count; elsewhere every `*.so` is a plugin, and anything that is
/// not an ablate plugin is an error.
pub fn plugin_files_in(dir: &Path, builtin: bool) -> Result<Vec<PathBuf>, PluginError> {
    let entries = std::fs::read_dir(dir).map_err(|source| PluginError::ReadDir { path: dir.to_owned(), source })?;
    // A folder named debug/release counts as this workspace's build tree only as the built-in
    // folder (test binaries); given with --plugins, it is a plugin author's own build output.
    let build_tree =
        dir.join("ablate").is_file() || (builtin && dir.file_name().is_some_and(|n| n == "debug" || n == "release"));
    let mut files = Vec::new();
    for entry in entries {
        let path = entry.map_err(|source| PluginError::ReadDir { path: dir.to_owned(), source })?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else { continue };
        if !name.ends_with(".so") || !path.is_file() {
            continue;
        }
        if build_tree && !name.starts_with("libablate_plugin_") {
            continue;
        }
        files.push(path);
    }
    files.sort();
    Ok(files)
}

/// Refuse files or folders that other users can write.
pub(crate) fn check_permissions(path: &Path) -> Result<(), PluginError> {
    use std::os::unix::fs::PermissionsExt;
    // A symlink is judged by what it points to too: a link in a safe folder to a library in a
    // world-writable one loads code anyone can replace.
    let target = std::fs::canonicalize(path).ok().filter(|t| t != path);
    let target_dir = target.as_deref().and_then(Path::parent);
    for p in [Some(path), path.parent(), target.as_deref(), target_dir].into_iter().flatten() {
        let Ok(meta) = std::fs::metadata(p) else { continue };
        let mode = meta.permissions().mode();
        if mode & 0o022 != 0 {
            return Err(PluginError::InsecurePermissions { path: p.to_owned(), mode: mode & 0o7777 });
        }
    }
    Ok(())
}
