//! Plugin discovery and loading for the `ablate` host.
//!
//! Plugins are found in three places, in this order:
//! 1. the built-in folder next to the binary: `<exe dir>/plugins/*.so`, and in a cargo build
//!    tree the workspace's own `<exe dir>/libablate_plugin_*.so`;
//! 2. every folder of `$ABLATE_PLUGIN_PATH` (colon-separated);
//! 3. folders passed with `--plugins DIR`.
//!
//! Each library is checked before any of its code runs: the file and its folder must not be
//! writable by other users, it must be as long as its ELF headers say (a cut file
//! would crash the loader), it must export the ablate root module, its abi_stable layout must
//! match this host's SDK, and its SDK version must equal ours. A factory name offered twice is
//! an error naming both files. Libraries stay loaded for the life of the process.

mod discover;
mod elf;
mod error;
mod registry;

pub use discover::{builtin_dirs, env_dirs, plugin_files_in, SearchPath};
pub use error::PluginError;
pub use registry::{Factory, LoadedLibrary, Registry};
