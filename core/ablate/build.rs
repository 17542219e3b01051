//! Make the `ablate` binary start without LD_LIBRARY_PATH and keep CUDA when libtorch has it
//! (see `link_libtorch.rs`, shared with the engine's build script).

mod link_libtorch;

fn main() {
    let _ = link_libtorch::emit();
}
