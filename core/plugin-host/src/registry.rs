//! Loaded libraries and the factories they offer.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use abi_stable::library::{lib_header_from_path, LibraryError};
use abi_stable::std_types::{RResult, RStr};
use ablate_sdk::abi::{IntegratorBox, LikelihoodBox, NoiseBox, PluginModule_Ref, PriorBox};
use ablate_sdk::{FactorKind, SDK_VERSION};
use sha2::{Digest, Sha256};

use crate::discover::{check_permissions, plugin_files_in, SearchPath};
use crate::PluginError;

/// One plugin library, loaded and checked.
#[derive(Debug, Clone)]
pub struct LoadedLibrary {
    pub path: PathBuf,
    pub sha256: String,
    pub build: String,
    /// Which search folder it came from (built-in, $ABLATE_PLUGIN_PATH, --plugins).
    pub origin: &'static str,
}

/// One factory offered by a library.
#[derive(Debug, Clone)]
pub struct Factory {
    pub kind: FactorKind,
    pub name: String,
    pub description: String,
    /// Parameter specs as published: `[{"name","type","default","min","max","choices","doc"}]`.
    pub params: serde_json::Value,
    /// Index into [`Registry::libraries`].
    pub library: usize,
}

/// Every loaded library and factory. Libraries are never unloaded.
pub struct Registry {
    libraries: Vec<LoadedLibrary>,
    modules: Vec<PluginModule_Ref>,
    factories: BTreeMap<(FactorKind, String), Factory>,
    /// The folders searched, with why each was (for not-found errors).
    searched: Vec<(PathBuf, &'static str)>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry").field("libraries", &self.libraries).finish_non_exhaustive()
    }
}

impl Registry {
    /// Load every plugin on the search path. The first error stops the load: a grid must not run
    /// with a silently missing or suspicious plugin.
    pub fn load(search: &SearchPath) -> Result<Self, PluginError> {
        let mut registry = Registry {
            libraries: Vec::new(),
            modules: Vec::new(),
            factories: BTreeMap::new(),
            searched: search.dirs.clone(),
        };
        let mut seen = std::collections::HashSet::new();
        for (dir, origin) in &search.dirs {
            for file in plugin_files_in(dir, *origin == "built-in")? {
                let canonical = file.canonicalize().unwrap_or_else(|_| file.clone());
                if seen.insert(canonical) {
                    registry.add_library(&file, origin)?;
                }
            }
        }
        Ok(registry)
    }

    /// Load one library file (also used by `ablate plugins check FILE`).
    pub fn add_library(&mut self, path: &Path, origin: &'static str) -> Result<(), PluginError> {
        check_permissions(path)?;
        if let Some((have, need)) =
            crate::elf::truncated(path).map_err(|source| PluginError::Read { path: path.to_owned(), source })?
        {
            return Err(PluginError::Truncated { path: path.to_owned(), have, need });
        }
        probe_symbol(path)?;
        let module = lib_header_from_path(path)
            .and_then(|header| header.init_root_module::<PluginModule_Ref>())
            .map_err(|e| library_error(path, e))?;
        let plugin_sdk = (module.sdk_version())().as_str().to_owned();
        if plugin_sdk != SDK_VERSION {
            return Err(PluginError::SdkVersion {
                path: path.to_owned(),
                plugin_sdk,
                host_sdk: SDK_VERSION.to_owned(),
            });
        }
        let library = LoadedLibrary {
            path: path.to_owned(),
            sha256: sha256_file(path)?,
            build: (module.build())().into_string(),
            origin,
        };
        let index = self.libraries.len();
        let mut offered: Vec<((FactorKind, String), Factory)> = Vec::new();
        for info in (module.factories())() {
            let key = (info.kind, info.name.to_string());
            if offered.iter().any(|(k, _)| *k == key) {
                // `export_plugin!` would construct the first, `plugins list` describe the last.
                return Err(PluginError::DuplicateInLibrary {
                    kind: info.kind.as_str(),
                    name: info.name.into_string(),
                    path: path.to_owned(),
                });
            }
            if let Some(existing) = self.factories.get(&key) {
                return Err(PluginError::NameClash {
                    kind: info.kind.as_str(),
                    name: info.name.into_string(),
                    first: self.libraries[existing.library].path.clone(),
                    second: path.to_owned(),
                });
            }
            let params = serde_json::from_str(info.params_json.as_str()).unwrap_or(serde_json::Value::Null);
            offered.push((
                key,
                Factory {
                    kind: info.kind,
                    name: info.name.into_string(),
                    description: info.description.into_string(),
                    params,
                    library: index,
                },
            ));
        }
        if offered.is_empty() {
            tracing::warn!(path = %path.display(), "plugin library exports no factory (an empty `export_plugin!` list?)");
        }
        tracing::debug!(path = %path.display(), factories = offered.len(), "loaded plugin library");
        self.factories.extend(offered);
        self.libraries.push(library);
        self.modules.push(module);
        Ok(())
    }

    pub fn libraries(&self) -> &[LoadedLibrary] {
        &self.libraries
    }

    /// All factories, sorted by kind then name.
    pub fn factories(&self) -> impl Iterator<Item = &Factory> {
        self.factories.values()
    }

    pub fn get(&self, kind: FactorKind, name: &str) -> Result<&Factory, PluginError> {
        self.factories.get(&(kind, name.to_owned())).ok_or_else(|| {
            let known: Vec<_> = self.factories.keys().filter(|(k, _)| *k == kind).map(|(_, n)| n.as_str()).collect();
            let hint = ablate_sdk::params::did_you_mean(name, known.iter().copied())
                .map(|k| format!(" (did you mean `{k}`?)"))
                .unwrap_or_default();
            PluginError::Unknown {
                kind: kind.as_str(),
                name: name.to_owned(),
                known: if known.is_empty() { "none loaded".to_owned() } else { known.join(", ") },
                hint,
                searched: self.searched_text(),
            }
        })
    }

    /// The searched folders as one line: `DIR (why), ...` (also the files given directly).
    pub fn searched_text(&self) -> String {
        let mut parts: Vec<String> = self.searched.iter().map(|(d, why)| format!("{} ({why})", d.display())).collect();
        parts.extend(
            self.libraries
                .iter()
                .filter(|l| !self.searched.iter().any(|(d, _)| l.path.starts_with(d)))
                .map(|l| format!("{} ({})", l.path.display(), l.origin)),
        );
        if parts.is_empty() {
            "no folder (no built-in plugin folder next to the binary, no ABLATE_PLUGIN_PATH, no --plugins)".to_owned()
        } else {
            parts.join(", ")
        }
    }

    /// The library a factory comes from.
    pub fn library_of(&self, factory: &Factory) -> &LoadedLibrary {
        &self.libraries[factory.library]
    }

    fn create<T>(
        &self,
        kind: FactorKind,
        name: &str,
        params: &serde_json::Value,
        make: impl FnOnce(&PluginModule_Ref, RStr<'_>, RStr<'_>) -> RResult<T, abi_stable::std_types::RString>,
    ) -> Result<T, PluginError> {
        let factory = self.get(kind, name)?;
        let json = params.to_string();
        match make(&self.modules[factory.library], RStr::from_str(name), RStr::from_str(&json)) {
            RResult::ROk(obj) => Ok(obj),
            RResult::RErr(message) => Err(PluginError::Create {
                kind: kind.as_str(),
                name: name.to_owned(),
                path: self.libraries[factory.library].path.clone(),
                message: message.into_string(),
            }),
        }
    }

    pub fn prior(&self, name: &str, params: &serde_json::Value) -> Result<PriorBox, PluginError> {
        self.create(FactorKind::Prior, name, params, |m, n, p| (m.new_prior())(n, p))
    }
    pub fn integrator(&self, name: &str, params: &serde_json::Value) -> Result<IntegratorBox, PluginError> {
        self.create(FactorKind::Integrator, name, params, |m, n, p| (m.new_integrator())(n, p))
    }
    pub fn noise(&self, name: &str, params: &serde_json::Value) -> Result<NoiseBox, PluginError> {
        self.create(FactorKind::Noise, name, params, |m, n, p| (m.new_noise())(n, p))
    }
    pub fn likelihood(&self, name: &str, params: &serde_json::Value) -> Result<LikelihoodBox, PluginError> {
        self.create(FactorKind::Likelihood, name, params, |m, n, p| (m.new_likelihood())(n, p))
    }

    /// Check that `name` exists and accepts `params` (constructs and drops the object).
    pub fn validate(&self, kind: FactorKind, name: &str, params: &serde_json::Value) -> Result<(), PluginError> {
        match kind {
            FactorKind::Prior => self.prior(name, params).map(drop),
            FactorKind::Integrator => self.integrator(name, params).map(drop),
            FactorKind::Noise => self.noise(name, params).map(drop),
            FactorKind::Likelihood => self.likelihood(name, params).map(drop),
        }
    }
}

/// A cheap pre-check with libloading: is the root-module symbol there at all?
fn probe_symbol(path: &Path) -> Result<(), PluginError> {
    // SAFETY: loading a shared library runs its initialisers. The file passed the permission
    // check; plugins are trusted code by design (abi_stable's checks catch mistakes, not malice).
    let lib = unsafe { libloading::Library::new(path) }
        .map_err(|e| PluginError::NotAPlugin { path: path.to_owned(), detail: with_source(&e) })?;
    let symbol = ablate_sdk::ROOT_MODULE_SYMBOL.as_bytes();
    // SAFETY: only the symbol's presence is checked; it is not dereferenced.
    let found = unsafe { lib.get::<*const u8>(symbol) };
    match found {
        Ok(_) => Ok(()),
        Err(e) => Err(PluginError::NotAPlugin { path: path.to_owned(), detail: with_source(&e) }),
    }
}

/// An error with its cause: libloading's own message is "dlopen failed" and the loader's
/// reason (a missing dependency, a file too short) is only in its source.
fn with_source(e: &dyn std::error::Error) -> String {
    match e.source() {
        Some(cause) => format!("{e}: {cause}"),
        None => e.to_string(),
    }
}

fn library_error(path: &Path, e: LibraryError) -> PluginError {
    match e {
        LibraryError::AbiInstability(_) | LibraryError::IncompatibleVersionNumber { .. } => PluginError::AbiMismatch {
            path: path.to_owned(),
            host_sdk: SDK_VERSION.to_owned(),
            detail: first_lines(&e.to_string(), 12),
        },
        other => PluginError::NotAPlugin { path: path.to_owned(), detail: first_lines(&other.to_string(), 12) },
    }
}

fn first_lines(s: &str, n: usize) -> String {
    let lines: Vec<_> = s.lines().collect();
    if lines.len() <= n {
        s.to_owned()
    } else {
        format!("{}\n... ({} more lines)", lines[..n].join("\n"), lines.len() - n)
    }
}

fn sha256_file(path: &Path) -> Result<String, PluginError> {
    let mut file = std::fs::File::open(path).map_err(|source| PluginError::Hash { path: path.to_owned(), source })?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf).map_err(|source| PluginError::Hash { path: path.to_owned(), source })?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}
