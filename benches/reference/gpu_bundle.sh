#!/usr/bin/env bash
# Bundle the GPU benchmark into one folder that a GPU machine can run without Rust:
# the epoch and step_ops bench binaries (built against the CPU libtorch cache; on the GPU machine the CUDA
# libtorch of the same 2.11.0 build replaces it through LD_LIBRARY_PATH), the built-in plugins,
# MNIST and Fashion-MNIST (gzip), the PyTorch reference scripts and gpu_run.sh as run.sh.
#
#   benches/reference/gpu_bundle.sh [DIR]        (default .devbench; ~46 MB)
#   # then, on a machine with a GPU and `pip install torch==2.11.0`:
#   OUT=results/ bash DIR/run.sh                 (≈ 3 minutes on an H200)
set -euo pipefail
cd "$(dirname "$0")/../.."
dir=${1:-.devbench}
cache=${ABLATE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ablate}
cargo build --release --quiet -p ablate-plugin-integrators -p ablate-plugin-priors -p ablate-plugin-likelihoods -p ablate-plugin-noise
bench=$(cargo bench --no-run -p ablate-engine --bench epoch 2>&1 | sed -n 's/.*Executable .*(\(.*\)).*/\1/p' | tail -1)
# Kernel launches per step (the step_ops bench), to count them on the GPU itself.
step_ops=$(cargo bench --no-run -p ablate-engine --bench step_ops 2>&1 | sed -n 's/.*Executable .*(\(.*\)).*/\1/p' | tail -1)
# The conjugate-regression posterior test, whose `cuda` case checks tf32 and bf16 on a GPU.
regression=$(cargo test --no-run -p ablate-engine --test regression 2>&1 | sed -n 's/.*Executable .*(\(.*\)).*/\1/p' | tail -1)
rm -rf "$dir" && mkdir -p "$dir/plugins" "$dir/mnist" "$dir/fashion"
cp "$bench" "$dir/epoch"
cp "$step_ops" "$dir/step_ops"
cp "$regression" "$dir/regression"
cp target/release/libablate_plugin_{integrators,priors,likelihoods,noise}.so "$dir/plugins/"
strip "$dir/epoch" "$dir/step_ops" "$dir/regression" "$dir"/plugins/*.so
for name in mnist:mnist fashion-mnist:fashion; do
  src=$cache/data/${name%%:*}
  [[ -d $src ]] || { echo "$src missing: run \`ablate data fetch ${name%%:*}\` first" >&2; exit 1; }
  for f in "$src"/*ubyte*; do
    case $f in *.gz) cp "$f" "$dir/${name##*:}/" ;; *) gzip -c "$f" > "$dir/${name##*:}/$(basename "$f").gz" ;; esac
  done
done
cp benches/reference/sgmcmc_reference.py benches/reference/cifar_shaped.py "$dir/"
cp benches/reference/gpu_run.sh "$dir/run.sh"
cp benches/reference/gpu_quick.sh "$dir/quick.sh"
cp benches/reference/gpu_pair.sh "$dir/pair.sh"
cp benches/reference/gpu_precision.sh "$dir/precision.sh"
du -sh "$dir"
