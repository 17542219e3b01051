//! Build script of the engine: the libtorch link set-up shared with the binary (so that the
//! engine's tests start without LD_LIBRARY_PATH), and the C++ shim `shim/compute.cpp` with the
//! libtorch settings tch does not expose (bf16 autocast, CUDA TF32, channels-last)
//! the operator counter `shim/dispatch_count.cpp` and the scaled in-place updates
//! `shim/scaled_update.cpp`.

#[path = "../ablate/link_libtorch.rs"]
mod link_libtorch;

fn main() {
    let Some(lib) = link_libtorch::emit() else {
        panic!(
            "torch-sys did not report its libtorch folder (DEP_TCH_LIBTORCH_LIB): the engine's C++ shim needs \
             libtorch's headers. Run scripts/bootstrap (it links .libtorch), or set LIBTORCH"
        );
    };
    // libtorch's headers sit beside its lib folder (the libtorch zip and the torch wheel alike).
    let root = lib.parent().map_or_else(|| lib.clone(), std::path::Path::to_path_buf);
    let include = root.join("include");
    println!("cargo:rerun-if-changed=shim/compute.cpp");
    println!("cargo:rerun-if-changed=shim/dispatch_count.cpp");
    println!("cargo:rerun-if-changed=shim/scaled_update.cpp");
    println!("cargo:rerun-if-changed=shim/shim_error.h");
    println!("cargo:rerun-if-env-changed=LIBTORCH_CXX11_ABI");
    let abi = std::env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".to_owned());
    cc::Build::new()
        .cpp(true)
        .pic(true)
        .warnings(false)
        .include(&include)
        .include(include.join("torch/csrc/api/include"))
        .flag("-std=c++17")
        .flag(format!("-D_GLIBCXX_USE_CXX11_ABI={abi}"))
        .flag("-DGLOG_USE_GLOG_EXPORT")
        .file("shim/compute.cpp")
        .file("shim/dispatch_count.cpp")
        .file("shim/scaled_update.cpp")
        .compile("ablate_compute_shim");
}
