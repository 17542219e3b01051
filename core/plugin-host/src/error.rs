use std::path::PathBuf;

/// Why a plugin could not be found, loaded or used. Messages name the file and say what to do.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("cannot read plugin folder {path}: {source}")]
    ReadDir { path: PathBuf, source: std::io::Error },

    #[error(
        "refusing plugin {path}: it is writable by other users (mode {mode:o}), so anyone on this \
         machine could replace the code ablate runs; fix with `chmod go-w {path}`"
    )]
    InsecurePermissions { path: PathBuf, mode: u32 },

    #[error(
        "{path} is not an ablate plugin: it does not export the ablate root module ({detail}); \
         plugins are built with `ablate_sdk::export_plugin!`"
    )]
    NotAPlugin { path: PathBuf, detail: String },

    #[error(
        "refusing plugin {path}: the file is cut short ({have} bytes, its ELF headers need {need}), \
         as after an interrupted copy or a rebuild in place; copy or rebuild it again"
    )]
    Truncated { path: PathBuf, have: u64, need: u64 },

    #[error("cannot read plugin {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },

    #[error(
        "refusing plugin {path}: it was built against a different plugin interface layout than \
         this ablate (rebuild it against {host_sdk}): {detail}"
    )]
    AbiMismatch { path: PathBuf, host_sdk: String, detail: String },

    #[error(
        "refusing plugin {path}: built with SDK version `{plugin_sdk}`, this ablate needs \
         `{host_sdk}`; rebuild the plugin against the matching ablate-sdk"
    )]
    SdkVersion { path: PathBuf, plugin_sdk: String, host_sdk: String },

    #[error(
        "the {kind} `{name}` is offered by two plugin files: {first} and {second}; remove or \
         rename one of them"
    )]
    NameClash { kind: &'static str, name: String, first: PathBuf, second: PathBuf },

    #[error(
        "plugin library {} exports two {kind} factories named `{name}` (grids would get the first, \
         `plugins list` would describe the last); give each factory its own NAME",
        path.display()
    )]
    DuplicateInLibrary { kind: &'static str, name: String, path: PathBuf },

    #[error(
        "no {kind} plugin named `{name}`{hint} (known {kind}s: {known}); searched {searched}; to add a folder, pass \
         `--plugins DIR` or set ABLATE_PLUGIN_PATH=DIR1:DIR2 (see `ablate plugins list`)"
    )]
    Unknown { kind: &'static str, name: String, known: String, hint: String, searched: String },

    #[error("{kind} `{name}` (from {path}) rejected its parameters: {message}")]
    Create { kind: &'static str, name: String, path: PathBuf, message: String },

    #[error("cannot hash plugin {path}: {source}")]
    Hash { path: PathBuf, source: std::io::Error },
}
