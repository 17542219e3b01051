//! Files of a new plugin crate (`ablate plugins new`), kept as real files under
//! `plugins/templates/` (one folder per kind, plus `common/`) and embedded at build time.
//! Placeholders: `__NAME__` (factory name), `__TYPE__` (Rust type), `__CRATE__` (package name),
//! `__LIBNAME__` (library file stem), `__SDK_PATH__` (absolute path of plugins/sdk),
//! `__SDK_VERSION__`, `__KIND__`. The CLI test `plugins_new_crates_build_test_and_pass_the_check`
//! scaffolds every kind, builds and tests it, and runs `ablate plugins check` on the library.

pub const CARGO_TOML: &str = include_str!("../../../plugins/templates/common/Cargo.toml.in");
pub const GITIGNORE: &str = include_str!("../../../plugins/templates/common/gitignore");
pub const README: &str = include_str!("../../../plugins/templates/common/README.md");
pub const PRIOR_LIB: &str = include_str!("../../../plugins/templates/prior/src/lib.rs");
pub const PRIOR_TEST: &str = include_str!("../../../plugins/templates/prior/tests/conformance.rs");
pub const INTEGRATOR_LIB: &str = include_str!("../../../plugins/templates/integrator/src/lib.rs");
pub const INTEGRATOR_TEST: &str = include_str!("../../../plugins/templates/integrator/tests/conformance.rs");
pub const NOISE_LIB: &str = include_str!("../../../plugins/templates/noise/src/lib.rs");
pub const NOISE_TEST: &str = include_str!("../../../plugins/templates/noise/tests/conformance.rs");
pub const LIKELIHOOD_LIB: &str = include_str!("../../../plugins/templates/likelihood/src/lib.rs");
pub const LIKELIHOOD_TEST: &str = include_str!("../../../plugins/templates/likelihood/tests/conformance.rs");
