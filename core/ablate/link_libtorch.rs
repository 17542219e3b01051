//! The libtorch link set-up of the `ablate` binary and the engine's tests, included by both
//! build scripts: start without LD_LIBRARY_PATH and keep CUDA when libtorch has it.
//!
//! torch-sys links `torch_cpu`, `torch` and `c10` but puts no run path into dependents, and the
//! linker's default `--as-needed` drops `libtorch.so` (the library that pulls in
//! `libtorch_cuda.so`), which silently turns CUDA off on a GPU machine.

/// Emit the link arguments; returns libtorch's lib folder (None when torch-sys reported none).
pub fn emit() -> Option<std::path::PathBuf> {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    let lib = std::path::PathBuf::from(std::env::var_os("DEP_TCH_LIBTORCH_LIB")?);
    // For `ablate doctor`: where the linked libtorch lives.
    println!("cargo:rustc-env=ABLATE_LIBTORCH_LIB={}", lib.display());
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
    println!("cargo:rustc-link-arg=-ltorch");
    println!("cargo:rustc-link-arg=-Wl,--as-needed");
    Some(lib)
}
