//! `ablate plugins list|show|check|new`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use ablate_plugin_host::{Registry, SearchPath};
use ablate_sdk::FactorKind;
use anyhow::{bail, Context, Result};
use clap::{Subcommand, ValueEnum};

use crate::templates as t;

#[derive(Debug, Subcommand)]
pub enum PluginsCommand {
    /// List every plugin factory found: kind, name, library build, file, description.
    #[command(after_help = "Examples:\n  ablate plugins list\n  ablate plugins list --plugins ~/ablate-plugins")]
    List {
        #[command(flatten)]
        plugins: crate::PluginDirs,
    },
    /// Show the parameters of a plugin: name, type, default, range or choices, doc.
    #[command(after_help = "Examples:\n  ablate plugins show gaussian\n  ablate plugins show minibatch --kind noise")]
    Show {
        /// The factory name (as used in grid files).
        name: String,
        /// Only this kind (when several kinds share the name).
        #[arg(long, value_enum)]
        kind: Option<Kind>,
        #[command(flatten)]
        plugins: crate::PluginDirs,
    },
    /// Load one plugin library alone and run the conformance suite on every factory it offers,
    /// on the real (libtorch, float32) host; exits non-zero if any check fails.
    #[command(after_help = "Example:\n  ablate plugins check target/release/libmy_prior.so")]
    Check {
        /// The shared library (.so).
        file: PathBuf,
    },
    /// Write a ready-to-build plugin crate (outside this workspace) with a working example.
    #[command(after_help = "Examples:\n  ablate plugins new my-prior --kind prior --dir ~/src\n  \
                            cd ~/src/my-prior && cargo test && cargo build --release")]
    New {
        /// Name of the plugin (factory name in grid files and crate name), e.g. my-prior.
        name: String,
        /// Which kind of factor the example implements.
        #[arg(long, value_enum)]
        kind: Kind,
        /// Parent folder; the crate goes to `<DIR>/<NAME>`.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// The `plugins/sdk` folder of the ablate checkout to build against (default: the one
        /// this binary was built from; needed for a binary copied to another machine).
        #[arg(long)]
        sdk: Option<PathBuf>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Kind {
    Prior,
    Likelihood,
    Integrator,
    Noise,
}

impl Kind {
    fn factor(self) -> FactorKind {
        match self {
            Kind::Prior => FactorKind::Prior,
            Kind::Likelihood => FactorKind::Likelihood,
            Kind::Integrator => FactorKind::Integrator,
            Kind::Noise => FactorKind::Noise,
        }
    }
}

pub fn run(cmd: PluginsCommand) -> Result<ExitCode> {
    match cmd {
        PluginsCommand::List { plugins } => list(&plugins.dirs),
        PluginsCommand::Show { name, kind, plugins } => show(&name, kind, &plugins.dirs),
        PluginsCommand::Check { file } => check(&file),
        PluginsCommand::New { name, kind, dir, sdk } => new(&name, kind, &dir, sdk.as_deref()),
    }
}

fn list(dirs: &[PathBuf]) -> Result<ExitCode> {
    let registry = crate::common::load_registry(dirs)?;
    let rows: Vec<[String; 5]> = registry
        .factories()
        .map(|f| {
            let lib = registry.library_of(f);
            [
                f.kind.as_str().to_owned(),
                f.name.clone(),
                lib.build.clone(),
                lib.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
                f.description.clone(),
            ]
        })
        .collect();
    if rows.is_empty() {
        let search = SearchPath::standard(dirs);
        let searched: Vec<String> = search.dirs.iter().map(|(d, w)| format!("{} ({w})", d.display())).collect();
        println!(
            "no plugins found; searched: {}",
            if searched.is_empty() { "(no folder)".into() } else { searched.join(", ") }
        );
        return Ok(ExitCode::SUCCESS);
    }
    let head = ["KIND", "NAME", "BUILD", "FILE", "DESCRIPTION"].map(String::from);
    let w: Vec<usize> =
        (0..4).map(|i| rows.iter().chain([&head]).map(|r| r[i].chars().count()).max().unwrap_or(0)).collect();
    for r in [&head].into_iter().chain(rows.iter()) {
        println!(
            "{:<w0$}  {:<w1$}  {:<w2$}  {:<w3$}  {}",
            r[0],
            r[1],
            r[2],
            r[3],
            r[4],
            w0 = w[0],
            w1 = w[1],
            w2 = w[2],
            w3 = w[3]
        );
    }
    println!("\n{} libraries:", registry.libraries().len());
    for l in registry.libraries() {
        println!("  {} ({})", l.path.display(), l.origin);
    }
    Ok(ExitCode::SUCCESS)
}

fn show(name: &str, kind: Option<Kind>, dirs: &[PathBuf]) -> Result<ExitCode> {
    let registry = crate::common::load_registry(dirs)?;
    let found: Vec<_> =
        registry.factories().filter(|f| f.name == name && kind.is_none_or(|k| k.factor() == f.kind)).collect();
    if found.is_empty() {
        let names: Vec<String> = registry.factories().map(|f| format!("{} {}", f.kind.as_str(), f.name)).collect();
        let hint = ablate_sdk::params::did_you_mean(
            name,
            registry.factories().filter(|f| kind.is_none_or(|k| k.factor() == f.kind)).map(|f| f.name.as_str()),
        )
        .map(|k| format!(" (did you mean `{k}`?)"))
        .unwrap_or_default();
        bail!(
            "no plugin named `{name}`{}{hint}; known: {}; searched {}; to add a folder, pass `--plugins DIR` or set \
             ABLATE_PLUGIN_PATH=DIR1:DIR2",
            kind.map(|k| format!(" of kind {}", k.factor().as_str())).unwrap_or_default(),
            if names.is_empty() { "(none loaded)".into() } else { names.join(", ") },
            registry.searched_text()
        );
    }
    for f in found {
        let lib = registry.library_of(f);
        println!("{} `{}`: {}", f.kind.as_str(), f.name, f.description);
        println!("  from {} [{}]", lib.path.display(), lib.build);
        if f.kind == FactorKind::Integrator {
            // With its default parameters (a parameter may change it, e.g. obabo's metropolis).
            match registry.integrator(&f.name, &serde_json::json!({})) {
                Ok(i) if i.batchable() => println!("  batched chains: yes (with default parameters)"),
                Ok(_) => println!("  batched chains: no (with default parameters); its cells run alone"),
                Err(e) => println!("  batched chains: unknown ({e})"),
            }
        }
        let params = f.params.as_array().cloned().unwrap_or_default();
        if params.is_empty() {
            println!("  no parameters");
            continue;
        }
        println!(
            "  parameters (grid file: \"{}\": {{\"name\": \"{}\", \"params\": {{...}}}}):",
            f.kind.as_str(),
            f.name
        );
        for p in params {
            let get = |k: &str| p.get(k).filter(|v| !v.is_null());
            let range = match (get("min"), get("max")) {
                (Some(a), Some(b)) => format!(" range [{a}, {b}]"),
                (Some(a), None) => format!(" >= {a}"),
                (None, Some(b)) => format!(" <= {b}"),
                _ => String::new(),
            };
            let choices = match get("choices").and_then(|c| c.as_array()) {
                Some(c) if !c.is_empty() => {
                    format!(
                        " choices {}",
                        c.iter().map(|v| v.as_str().unwrap_or("?").to_owned()).collect::<Vec<_>>().join("|")
                    )
                }
                _ => String::new(),
            };
            println!(
                "    {} ({}) default {}{range}{choices}\n        {}",
                get("name").and_then(|v| v.as_str()).unwrap_or("?"),
                get("type").and_then(|v| v.as_str()).unwrap_or("?"),
                get("default").map(|v| v.to_string()).unwrap_or_else(|| "none".into()),
                get("doc").and_then(|v| v.as_str()).unwrap_or("")
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn check(file: &Path) -> Result<ExitCode> {
    if !file.is_file() {
        bail!(
            "{} is not a file; pass the plugin's shared library, e.g. target/release/libmy_plugin.so",
            file.display()
        );
    }
    let mut registry = Registry::load(&SearchPath::default())?;
    registry.add_library(file, "plugins check").with_context(|| format!("loading {}", file.display()))?;
    let lib = &registry.libraries()[0];
    println!("{}: ablate plugin [{}], sha256 {}", file.display(), lib.build, lib.sha256);
    let factories: Vec<_> = registry.factories().cloned().collect();
    if factories.is_empty() {
        bail!(
            "{} offers no factories: its `export_plugin!` lists are all empty; list the plugin types there \
             (`priors: [MyPrior]`, ...)",
            file.display()
        );
    }
    let mut failed_checks = 0;
    let mut failed_factors = Vec::new();
    for f in &factories {
        println!("{} `{}`: {}", f.kind.as_str(), f.name, f.description);
        let checks = ablate_engine::suite_host::run_suite(&registry, f, tch::Device::Cpu);
        for c in &checks {
            println!("  {c}");
        }
        let failed = checks.iter().filter(|c| c.failed()).count();
        if failed > 0 {
            failed_checks += failed;
            failed_factors.push(format!("{} `{}`", f.kind.as_str(), f.name));
        }
    }
    if failed_checks > 0 {
        eprintln!(
            "error: {failed_checks} check(s) failed in {}: {}; fix them before running grids with this library \
             (each FAIL line says what was measured and what was expected)",
            file.display(),
            failed_factors.join(", ")
        );
        return Ok(ExitCode::FAILURE);
    }
    println!("all checks passed for {} factor(ies)", factories.len());
    Ok(ExitCode::SUCCESS)
}

fn new(name: &str, kind: Kind, dir: &Path, sdk: Option<&Path>) -> Result<ExitCode> {
    let valid = !name.is_empty()
        && name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !valid {
        bail!(
            "plugin name {name:?}: use lowercase letters, digits, '-' and '_', starting with a letter (e.g. my-prior)"
        );
    }
    // A name the built-in plugins already use would clash with them when loaded (a run refuses
    // two plugins of one name).
    if let Ok(builtin) = Registry::load(&SearchPath::standard(&[])) {
        if let Ok(f) = builtin.get(kind.factor(), name) {
            let library = &builtin.libraries()[f.library];
            bail!(
                "a {} named `{name}` is already built in ({}); a plugin of the same name could not be loaded beside \
                 it: choose another name (e.g. my-{name})",
                kind.factor().as_str(),
                library.path.display()
            );
        }
    }
    let root = std::path::absolute(dir.join(name)).unwrap_or_else(|_| dir.join(name));
    if root.exists() {
        bail!("{} already exists; choose another name or --dir", root.display());
    }
    let repo = match sdk {
        // <checkout>/plugins/sdk -> <checkout>
        Some(sdk) => sdk.join("../.."),
        None => crate::common::source_root(),
    };
    let repo = repo.canonicalize().unwrap_or(repo);
    if !repo.join("plugins/sdk/Cargo.toml").is_file() {
        bail!(
            "the ablate SDK sources are not at {} (this binary was built from a checkout that is not on this \
             machine); pass --sdk <ablate checkout>/plugins/sdk",
            repo.join("plugins/sdk").display()
        );
    }
    if root.starts_with(&repo) {
        tracing::warn!(
            "{} is inside the ablate workspace {}; the crate has its own [workspace] table so it builds standalone, \
             but out-of-tree plugins usually live elsewhere",
            root.display(),
            repo.display()
        );
    }
    let sdk = repo.join("plugins/sdk");
    let type_name: String = name
        .split(['-', '_'])
        .filter(|s| !s.is_empty())
        .map(|s| {
            let mut c = s.chars();
            c.next().map(|f| f.to_ascii_uppercase().to_string() + c.as_str()).unwrap_or_default()
        })
        .collect();
    let lib_name = name.replace('-', "_");
    let kind_str = kind.factor().as_str();
    let fill = |s: &str| {
        s.replace("__NAME__", name)
            .replace("__TYPE__", &type_name)
            .replace("__CRATE__", name)
            .replace("__LIBNAME__", &lib_name)
            .replace("__SDK_PATH__", &sdk.display().to_string())
            .replace("__SDK_VERSION__", crate::common::VERSION)
            .replace("__KIND__", kind_str)
    };
    let (lib, test) = match kind {
        Kind::Prior => (t::PRIOR_LIB, t::PRIOR_TEST),
        Kind::Integrator => (t::INTEGRATOR_LIB, t::INTEGRATOR_TEST),
        Kind::Noise => (t::NOISE_LIB, t::NOISE_TEST),
        Kind::Likelihood => (t::LIKELIHOOD_LIB, t::LIKELIHOOD_TEST),
    };
    let files = [
        ("Cargo.toml", fill(t::CARGO_TOML)),
        (".gitignore", t::GITIGNORE.to_owned()),
        ("README.md", fill(t::README)),
        ("src/lib.rs", fill(lib)),
        ("tests/conformance.rs", fill(test)),
    ];
    for (rel, text) in &files {
        let path = root.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    let lock = repo.join("Cargo.lock");
    if lock.is_file() {
        std::fs::copy(&lock, root.join("Cargo.lock")).with_context(|| format!("copying {}", lock.display()))?;
    }
    println!("created the {kind_str} plugin `{name}` in {}", root.display());
    println!("  cd {} && cargo test && cargo build --release", root.display());
    println!("  then: ablate plugins check {}/target/release/lib{lib_name}.so", root.display());
    Ok(ExitCode::SUCCESS)
}
